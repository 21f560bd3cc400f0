package session

import (
	"errors"
	"fmt"

	"github.com/fwx-dev/fwx/nat"
)

// Decisions hears what the user-mode path decided about each of its
// flows, once the flow's event (connect, accepted connection, UDP
// destination) has been handled. fwx's firewall log is one: it writes a
// user-mode flow's record only then, so that no record says "allowed" of
// a flow a filter refused.
type Decisions interface {
	// FlowAdmitted reports that f passed its event's handlers.
	FlowAdmitted(f *nat.Flow)
	// FlowRefused reports that the filter named filter refused f (Deny,
	// or an error from its handler or data filter factory). With filter
	// "", fwx refused it itself over a limit, and the NAT table records
	// that refusal (Table.RefuseFlow).
	FlowRefused(f *nat.Flow, filter string)
}

// refusal is the error of a filter that refused an event.
type refusal struct {
	filter string
	ev     EventType
	err    error
}

func (r *refusal) Error() string {
	return fmt.Sprintf("session: filter %q: %v event: %v", r.filter, r.ev, r.err)
}

func (r *refusal) Unwrap() error { return r.err }

// admit tells the decisions' hearer that c's flow passed its event.
func (m *Manager) admit(c *Connection) {
	if c.flow != nil && m.cfg.Decisions != nil {
		m.cfg.Decisions.FlowAdmitted(c.flow)
	}
}

// refuse counts a connection the filters refused (err says which) and
// tells the decisions' hearer.
func (m *Manager) refuse(c *Connection, err error) {
	m.mu.Lock()
	if m.refusals == nil {
		m.refusals = make(map[string]uint64)
	}
	m.refusals[c.filter]++
	m.mu.Unlock()
	if c.flow == nil || m.cfg.Decisions == nil {
		return
	}
	by := c.filter // a failed data filter factory: the protocol's filter
	if r := (*refusal)(nil); errors.As(err, &r) {
		by = r.filter
	}
	if by == "" {
		by = "?"
	}
	m.cfg.Decisions.FlowRefused(c.flow, by)
}
