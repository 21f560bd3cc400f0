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
	// Event selects the connections, with Addr:
	//   - EventConnectTCP: the client's TCP connections to Addr;
	//   - EventAcceptedConnection: TCP connections accepted on the bound
	//     address Addr;
	//   - EventBindUDP: UDP ports bound at Addr (BindForClient): the
	//     filter sees the datagrams of every peer of the port;
	//   - EventUDPDestination: the client's UDP flows with the peer Addr,
	//     whichever side started them.
	Event EventType
	// Addr selects the connections; an unspecified address or port 0
	// matches any.
	Addr netip.AddrPort
	// Factory makes the data filter of each matching TCP connection;
	// DatagramFactory that of each matching UDP one. Exactly the one the
	// event's transport needs is set.
	Factory         DataFilterFactory
	DatagramFactory DatagramFilterFactory
	// Priority places the filter in the chain.
	Priority Priority
}

// DatagramFilterFactory makes a datagram filter for a new UDP connection.
type DatagramFilterFactory func(c *Connection) (DatagramFilter, error)

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
	var ok bool
	switch req.Event {
	case EventConnectTCP, EventAcceptedConnection:
		ok = req.Factory != nil && req.DatagramFactory == nil
	case EventBindUDP, EventUDPDestination:
		ok = req.DatagramFactory != nil && req.Factory == nil
	}
	if !ok || req.Priority > PriorityEmulation {
		return nil, fmt.Errorf("session: SetDataFilterFactory: %v: %w", req.Event, ErrInvalidArgument)
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
		af := attachedFilter{prio: f.Priority}
		var err error
		if f.DatagramFactory != nil {
			af.dg, err = f.DatagramFactory(c)
		} else {
			af.df, err = f.Factory(c)
		}
		if err == nil && af.df == nil && af.dg == nil {
			err = fmt.Errorf("made no filter: %w", ErrInvalidArgument)
		}
		if err != nil {
			return fmt.Errorf("session: data filter factory: %w", err)
		}
		c.mu.Lock()
		c.mu.filters = append(c.mu.filters, af)
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

// WantsUserMode reports whether a flow of transport p from client to dst
// must take the user-mode path because the client's session registered a
// data filter factory for it. fwx asks it when a flow is created.
func (m *Manager) WantsUserMode(p Transport, client netip.Addr, dst netip.AddrPort) bool {
	m.mu.Lock()
	s := m.sessions[client.Unmap()]
	m.mu.Unlock()
	return s != nil && s.wantsFilter(ConnectEvent(p), dst)
}
