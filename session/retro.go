package session

import (
	"fmt"
	"net/netip"

	"github.com/fwx-dev/fwx/nat"
)

// RetroactiveBind asks fwx to let outside peers reach an external UDP
// endpoint the client already holds: the NAT mapping its own flows leave
// from (ISA's IFWXSession::RetroactiveAllowBind, which approves a bind a
// client already made, so that it can receive secondary inbound flows).
// TFTP is the case: the server answers a request from a port of its own,
// to the port the request left from.
type RetroactiveBind struct {
	// External is the endpoint: [Connection.External] of one of the
	// client's UDP connections.
	External netip.AddrPort
	// Transport is UDP: a SecureNAT client's TCP mapping takes no
	// connections.
	Transport Transport
	// Flags: AllowMultiple, Timeout, NoKernelMode, Bidirectional,
	// IncreaseReceiveBuffer, as for BindForClient. Without AllowMultiple
	// one source is admitted: the first peer the permission lets in.
	Flags Flags
	// Protocol is the policy protocol the inbound flows belong to;
	// the policy must let the client use it.
	Protocol string
	// IPFilter restricts who may send: nil allows every address, an empty
	// filter none.
	IPFilter *IPFilter
	// Notify, if set, receives EventEstablishedConnection with Context
	// when a peer's first datagram arrives.
	Notify  SessionFilter
	Context any
	// Primary is as in BindRequest: the flows the permission lets in are
	// logged with its policy rule (a TFTP transfer with the rule that let
	// the client send its request).
	Primary *Connection
}

// RetroactiveAllowBind lets the peers req admits send to an external
// endpoint the client's flows already hold, whatever fwx's filtering
// behaviour, and returns the permission's connection object: Kill
// withdraws it and ends the flows it let in. Filters hooked to
// EventBindUDP are told first and may deny it or attach datagram
// filters, as for BindForClient. A flow it lets in takes precedence over
// the mapping's filtering, so it gets the permission's data filters and
// events even when the filtering alone would have let it in. The
// permission lives until killed (or, with Timeout, until unused for the
// pinhole timeout or, once used, until its flows end), and no longer than
// the mapping.
//
// Errors: ErrInvalidArgument, ErrProtocolDenied, ErrNotFound (no mapping
// of the client's holds External), ErrAddressInUse (a filter denied it,
// with ErrDenied), ErrBusy, ErrTerminating.
func (s *Session) RetroactiveAllowBind(req RetroactiveBind) (*Connection, error) {
	const call = "RetroactiveAllowBind"
	switch {
	case req.Transport != UDP:
		return nil, fmt.Errorf("session: %s: protocol %v: only UDP: %w", call, req.Transport, ErrInvalidArgument)
	case !req.External.IsValid() || req.External.Port() == 0:
		return nil, fmt.Errorf("session: %s: external endpoint %v: %w", call, req.External, ErrInvalidArgument)
	case req.Flags&Timeout != 0 && req.Flags&AllowMultiple != 0:
		return nil, fmt.Errorf("session: %s: Timeout with AllowMultiple: %w", call, ErrInvalidArgument)
	}
	if err := checkFlags(call, req.Flags, AllowMultiple|Timeout|NoKernelMode|Bidirectional|IncreaseReceiveBuffer); err != nil {
		return nil, err
	}
	ext, d, err := s.admitGrant(call, req.External.Addr(), req.Protocol, 1)
	if err != nil {
		return nil, err
	}
	external := netip.AddrPortFrom(ext, req.External.Port())
	if inside, ok := s.mgr.cfg.Table.DynamicMapping(nat.UDP, external); !ok || inside.Addr() != s.client {
		return nil, fmt.Errorf("session: %s: %v holds no mapping of %v: %w", call, external, s.client, ErrNotFound)
	}
	c := newGrantConnection(s, UDP, d, external, req.Flags, req.Context, req.Primary)
	err = s.applyFactories(c, EventBindUDP, external)
	if err == nil {
		err = s.dispatch(&Event{Type: EventBindUDP, Conn: c, Addr: external, Protocol: req.Protocol, Secondary: true, Context: req.Context}, d.Filter)
	}
	if err != nil {
		return nil, fmt.Errorf("session: %s: %w: %w", call, ErrAddressInUse, err)
	}
	watched := len(s.mgr.hooked(EventUDPDestination, d.Filter, true)) > 0
	e := &nat.Expectation{
		Proto:         nat.UDP,
		External:      external,
		Remotes:       remoteFilter(req.IPFilter),
		Bidirectional: req.Flags&Bidirectional != 0,
		Multiple:      req.Flags&AllowMultiple != 0,
		Deadline:      s.deadline(req.Flags),
		CloseIdle:     req.Flags&Timeout != 0,
		UserMode:      req.Flags&NoKernelMode != 0 || watched || c.userMode(),
		Rule:          c.rule,
		Protocol:      req.Protocol,
		Filter:        d.Filter,
		Owner:         c,
		OnFlow:        s.established(c, req.Protocol, req.Notify, req.Context),
	}
	if err := s.mgr.cfg.Table.ExpectOnMapping(e, s.client); err != nil {
		return nil, fmt.Errorf("session: %s: %w: %w", call, ErrNotFound, err)
	}
	c.mu.Lock()
	c.mu.expect, c.mu.client = e, e.Inside
	c.mu.Unlock()
	s.addConn(c)
	return c, nil
}
