package session

import (
	"fmt"
	"net/netip"
	"slices"
)

// FactoryRequest asks fwx to attach a data filter to future connections of
// the session that match an event and an address (ISA's
// IFWXSession::SetDataFilterFactory), without hooking the event.
type FactoryRequest struct {
	// Event is EventConnectTCP (Addr is the destination the client
	// connects to) or EventAcceptedConnection (Addr is the bound address a
	// connection arrives on).
	Event EventType
	// Addr selects the connections; an unspecified address or port 0
	// matches any.
	Addr netip.AddrPort
	// Factory makes the data filter for each matching connection.
	Factory DataFilterFactory
	// Priority places the filter in the chain.
	Priority Priority
}

// factory is a registered FactoryRequest.
type factory struct{ FactoryRequest }

func (f *factory) matches(ev EventType, a netip.AddrPort) bool {
	want := f.Addr
	return f.Event == ev &&
		(!want.Addr().IsValid() || want.Addr().IsUnspecified() || want.Addr() == a.Addr()) &&
		(want.Port() == 0 || want.Port() == a.Port())
}

// SetDataFilterFactory registers req: every later connection of the session
// that matches it gets a data filter from req.Factory, and so takes the
// user-mode path; no NoKernelMode flag is needed on grants it covers. The
// returned action cancels the registration; it is also cancelled when the
// session ends.
func (s *Session) SetDataFilterFactory(req FactoryRequest) (*FirewallAction, error) {
	if req.Factory == nil || req.Priority > PriorityEmulation ||
		(req.Event != EventConnectTCP && req.Event != EventAcceptedConnection) {
		return nil, fmt.Errorf("session: SetDataFilterFactory: %w", ErrInvalidArgument)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.admitLocked(1); err != nil {
		return nil, err
	}
	f := &factory{req}
	s.mu.factories = append(s.mu.factories, f)
	a := &FirewallAction{s: s, factory: f, addr: req.Addr}
	s.mu.actions[a] = struct{}{}
	return a, nil
}

// wantsFilter reports whether a factory of the session matches ev at a.
func (s *Session) wantsFilter(ev EventType, a netip.AddrPort) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.ContainsFunc(s.mu.factories, func(f *factory) bool { return f.matches(ev, a) })
}

// applyFactories attaches the data filters of the factories matching ev at
// a to c.
func (s *Session) applyFactories(c *Connection, ev EventType, a netip.AddrPort) error {
	s.mu.Lock()
	var fs []*factory
	for _, f := range s.mu.factories {
		if f.matches(ev, a) {
			fs = append(fs, f)
		}
	}
	s.mu.Unlock()
	for _, f := range fs {
		df, err := f.Factory(c)
		if err != nil {
			return fmt.Errorf("session: data filter factory: %w", err)
		}
		c.mu.Lock()
		c.mu.filters = append(c.mu.filters, attachedFilter{df, f.Priority})
		c.mu.Unlock()
	}
	return nil
}

// removeFactory unregisters f, reporting whether it was registered.
func (s *Session) removeFactory(f *factory) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	i := slices.Index(s.mu.factories, f)
	if i < 0 {
		return false
	}
	s.mu.factories = slices.Delete(s.mu.factories, i, i+1)
	return true
}

// WantsUserMode reports whether a connection from client to dst must take
// the user-mode path because the client's session registered a data filter
// factory for it. fwx asks it when a flow is created.
func (m *Manager) WantsUserMode(client netip.Addr, dst netip.AddrPort) bool {
	m.mu.Lock()
	s := m.sessions[client.Unmap()]
	m.mu.Unlock()
	return s != nil && s.wantsFilter(EventConnectTCP, dst)
}
