package session

import (
	"github.com/fwx-dev/fwx/nat"
	"github.com/fwx-dev/fwx/session/policy"
)

// What a reload of the policy does to sessions: grants are checked against
// the new policy from then on, and, when it asks for it, what the sessions
// hold that the new policy does not permit ends.

// SetPolicy makes p the policy that grants are checked against from now on.
// What sessions already hold is not touched; see [Manager.Revoke].
func (m *Manager) SetPolicy(p *policy.Policy) { m.policy.Store(p) }

// Revoke ends what the sessions hold that the current policy does not
// permit their clients: bound ports (with the connections through them)
// and permissions of a protocol the client may no longer use, and live
// user-mode connections of such a protocol or whose NAT flow ended
// reports as ended by the caller. It returns how many it ended.
func (m *Manager) Revoke(ended func(*nat.Flow) bool) int {
	pol := m.policy.Load()
	n := 0
	for _, s := range m.Sessions() {
		s.mu.Lock()
		conns := append(keys(s.mu.conns), keys(s.mu.live)...)
		actions := keys(s.mu.actions)
		s.mu.Unlock()
		permitted := func(protocol string) bool { return pol.Permits(s.client, protocol).Allow }
		for _, c := range conns {
			if !permitted(c.protocol) || (c.flow != nil && ended(c.flow)) {
				c.Kill()
				n++
			}
		}
		for _, a := range actions {
			if a.expect != nil && !permitted(a.expect.Protocol) && a.Cancel() == nil {
				n++
			}
		}
	}
	return n
}
