package session

import (
	"maps"
	"net/netip"
	"slices"
	"time"
)

// What sessions hold and what filters refused, for an operator's status
// display and metrics.

// Grant describes one of a session's grants: a port bound for the client
// (BindForClient) or a permission (AllowFutureConnect,
// RedirectConnections).
type Grant struct {
	// Kind is "bind", "connect" (a future connect) or "redirect".
	Kind string
	// Transport is "tcp" or "udp"; Protocol the policy protocol it was
	// granted for.
	Transport, Protocol string
	// Addr is the bound external endpoint, the destination the client
	// may connect to, or the internal address of a redirect; Client is
	// where a bound port's connections go (unset until known).
	Addr, Client netip.AddrPort
	// Live reports whether it can still admit a connection; Used counts
	// the connections it admitted.
	Live bool
	Used int
	// Deadline is when it lapses unused (the zero time: never).
	Deadline time.Time
}

// SessionStatus describes what one session holds.
type SessionStatus struct {
	Client netip.Addr
	// Grants are the session's bound ports and permissions.
	Grants []Grant
	// Connections counts its live user-mode connections.
	Connections int
	// Filters names the filters attached to it.
	Filters []string
}

// Status describes every session, ordered by client address.
func (m *Manager) Status() []SessionStatus {
	table, now := m.cfg.Table, m.cfg.Clock.Now()
	var out []SessionStatus
	for _, s := range m.Sessions() {
		st := SessionStatus{Client: s.client}
		s.mu.Lock()
		conns, actions := keys(s.mu.conns), keys(s.mu.actions)
		st.Connections = len(s.mu.live)
		for e := range s.mu.filters {
			st.Filters = append(st.Filters, e.name)
		}
		s.mu.Unlock()
		for _, c := range conns {
			g := Grant{Kind: "bind", Transport: c.proto.String(), Protocol: c.protocol, Addr: c.addr, Client: c.ClientAddr(), Live: c.Live()}
			c.mu.Lock()
			e := c.mu.expect
			c.mu.Unlock()
			if e != nil {
				g.Used, g.Deadline = table.ExpectationUsed(e), e.Deadline
			}
			st.Grants = append(st.Grants, g)
		}
		for _, a := range actions {
			e := a.expect
			if e == nil {
				continue // a data filter factory: no pinhole
			}
			g := Grant{Kind: "connect", Transport: e.Proto.String(), Protocol: e.Protocol, Addr: a.addr,
				Live: table.ExpectationLive(e, now), Used: table.ExpectationUsed(e), Deadline: e.Deadline}
			if e.Redirect.IsValid() {
				g.Kind = "redirect"
			}
			st.Grants = append(st.Grants, g)
		}
		slices.SortFunc(st.Grants, func(a, b Grant) int { return a.Addr.Compare(b.Addr) })
		slices.Sort(st.Filters)
		out = append(out, st)
	}
	slices.SortFunc(out, func(a, b SessionStatus) int { return a.Client.Compare(b.Client) })
	return out
}

// Refusals returns how many connections filters refused (a connect or
// accept event denied), by the filter of the connection's protocol; ""
// counts those of protocols without one (refused by a filter hooked to
// every protocol).
func (m *Manager) Refusals() map[string]uint64 {
	m.mu.Lock()
	defer m.mu.Unlock()
	return maps.Clone(m.refusals)
}
