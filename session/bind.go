package session

import (
	"errors"
	"fmt"
	"net/netip"
	"time"

	"github.com/fwx-dev/fwx/nat"
)

// BindRequest asks fwx to bind external ports on behalf of the session's
// client, so it can receive inbound secondary connections (ISA's
// IFWXSession::BindForClient parameters).
type BindRequest struct {
	// ClientAddrs are the client's addresses, one per port to bind; their
	// number is the number of consecutive ports. A zero AddrPort means
	// "not known yet": set it later with Connection.SetClientAddress.
	// Every known address must be the session's client's.
	ClientAddrs []netip.AddrPort
	// Proxy is the address to bind: the zero value (or an unspecified
	// address, port 0) means fwx's external address and any port. A port
	// may be forced only when binding one port.
	Proxy netip.AddrPort
	// Transport is TCP or UDP.
	Transport Transport
	// Flags: AllowMultiple, Timeout, NoKernelMode; for UDP also
	// Bidirectional and IncreaseReceiveBuffer. Timeout cannot be combined
	// with AllowMultiple.
	Flags Flags
	// Backlog is the listen backlog of a user-mode TCP bind; 0 means a
	// default.
	Backlog int
	// Protocol is the policy protocol the binding belongs to (ISA's
	// ProtocolGuid); the policy must let the client use it.
	Protocol string
	// Notify, if set, receives EventEstablishedConnection with Context when
	// a connection arrives: on the fast path at its first packet, on the
	// user-mode path (host mode, NoKernelMode, a data filter) once fwx
	// has connected it to the client too.
	Notify  SessionFilter
	Context any
	// IPFilter restricts who may connect: nil allows every address, an
	// empty filter none.
	IPFilter *IPFilter
	// Primary, if set, is the connection the grant was negotiated on (an
	// FTP control connection): flows through the pinhole are logged with
	// its policy rule. Unset, they are logged with the rule that lets the
	// client use Protocol.
	Primary *Connection
	// OnLapse, if set, is called once, from fwx's periodic sweep (or from
	// Arm or Kill after the fact), when a Timeout pinhole lapsed unused;
	// at is when it lapsed.
	OnLapse func(at time.Time)
}

// BindResult is what BindForClient bound.
type BindResult struct {
	// Proxy is the bound address: the lowest port when several.
	Proxy netip.AddrPort
	// Conns holds one connection object per port, in port order: Conns[i]
	// forwards to ClientAddrs[i].
	Conns []*Connection
}

// maxBind bounds the ports one call may bind.
const maxBind = 1024

// BindForClient binds external ports on behalf of the client (ISA's
// IFWXSession::BindForClient). With N client addresses it reserves N
// consecutive ports, the lowest a multiple of N, all or nothing; the first
// address maps to the lowest port. Filters hooked to the bind events are
// told first and may deny the bind, attach a data filter or emulate it.
// Without Timeout the connection objects live until killed or until the
// session ends. A UDP port whose client address is known is that inside
// endpoint's mapping while it lives (unless the endpoint had one): what the
// client sends from it, where the policy or a grant lets it, leaves from
// the bound port, so an RTP peer sees the ports it was told; killing the
// port ends those flows too.
//
// With Unarmed the ports are bound but admit nothing until
// Connection.Arm.
//
// Errors: ErrInvalidArgument, ErrProtocolDenied, ErrAddressInUse (also for
// a denied bind, with ErrDenied), ErrAddressNotAvailable, ErrBusy,
// ErrTerminating.
func (s *Session) BindForClient(req BindRequest) (*BindResult, error) {
	const call = "BindForClient"
	n := len(req.ClientAddrs)
	err := checkTransport(call, req.Transport)
	switch {
	case err != nil:
		return nil, err
	case n < 1 || n > maxBind:
		return nil, fmt.Errorf("session: %s: %d ports: %w", call, n, ErrInvalidArgument)
	case req.Backlog < 0:
		return nil, fmt.Errorf("session: %s: backlog %d: %w", call, req.Backlog, ErrInvalidArgument)
	case req.Flags&Timeout != 0 && req.Flags&AllowMultiple != 0:
		return nil, fmt.Errorf("session: %s: Timeout with AllowMultiple: %w", call, ErrInvalidArgument)
	case req.Proxy.Port() != 0 && n > 1:
		return nil, fmt.Errorf("session: %s: a port can be forced only for one address: %w", call, ErrInvalidArgument)
	}
	if err := checkGrantFlags(call, req.Transport, req.Flags, AllowMultiple|Timeout|NoKernelMode|Bidirectional|IncreaseReceiveBuffer|Unarmed); err != nil {
		return nil, err
	}
	for _, c := range req.ClientAddrs {
		if known(c) && (c.Addr().Unmap() != s.client || c.Port() == 0) {
			return nil, fmt.Errorf("session: %s: client address %v is not the session's client %v: %w", call, c, s.client, ErrInvalidArgument)
		}
	}
	ext, d, err := s.admitGrant(call, req.Proxy.Addr(), req.Protocol, n)
	if err != nil {
		return nil, err
	}

	table := s.mgr.cfg.Table
	var base netip.AddrPort
	if req.Proxy.Port() != 0 {
		base = netip.AddrPortFrom(ext, req.Proxy.Port())
		err = table.ReservePort(req.Transport, base)
	} else {
		base, err = table.ReserveBlock(req.Transport, ext, n)
	}
	if err != nil {
		return nil, fmt.Errorf("session: %s: %w: %w", call, ErrAddressInUse, err)
	}
	conns := make([]*Connection, n)
	for i := range conns {
		c := newGrantConnection(s, req.Transport, d, portAt(base, i), req.Flags, req.Context, req.Primary)
		c.mu.client = req.ClientAddrs[i]
		conns[i] = c
	}
	release := func(from int) {
		for i := from; i < n; i++ {
			table.ReleasePort(req.Transport, portAt(base, i))
		}
	}

	// Other filters hear of the bind first and may deny it. A UDP port
	// gets the data filters of the session's factories for binds now,
	// since its datagrams pass them all.
	ev, result := EventBindTCP, EventAcceptedConnection
	if req.Transport == UDP {
		ev, result = EventBindUDP, EventUDPDestination
	}
	for i, c := range conns {
		var err error
		if req.Transport == UDP {
			err = s.applyFactories(c, EventBindUDP, c.addr)
		}
		if err == nil {
			err = s.dispatch(&Event{Type: ev, Conn: c, Addr: req.Proxy, Protocol: req.Protocol, Secondary: true}, d.Filter)
		}
		if err != nil {
			release(0)
			if errors.Is(err, ErrDenied) {
				return nil, fmt.Errorf("session: %s: port %d: %w: %w", call, portAt(base, i).Port(), ErrAddressInUse, err)
			}
			return nil, fmt.Errorf("session: %s: %w", call, err)
		}
	}

	// A connection with a data filter, or a filter waiting for the
	// connection the bind brings (an accepted TCP connection, a UDP peer),
	// cannot take the fast path; the choice is made now, once.
	watched := len(s.mgr.hooked(result, d.Filter, true)) > 0
	for i, c := range conns {
		userMode := req.Flags&NoKernelMode != 0 || (req.Transport == TCP && table.UserModeTCP()) || watched || c.userMode() || s.wantsFilter(result, c.addr)
		onFlow := s.established(c, req.Protocol, req.Notify, req.Context)
		if userMode && req.Transport == TCP {
			// A connection accepted in user mode is made once fwx
			// has connected it to the client too (serveAccepted), not
			// at its first packet: a filter told so may count on both
			// ends (the FTP filter holds the server's 226 until then).
			c.made, onFlow = s.made(c, req.Protocol, req.Notify, req.Context), nil
		}
		e := &nat.Expectation{
			Proto:         req.Transport,
			External:      c.addr,
			Remotes:       remoteFilter(req.IPFilter),
			Bidirectional: req.Flags&Bidirectional != 0,
			Multiple:      req.Flags&AllowMultiple != 0,
			Unarmed:       req.Flags&Unarmed != 0,
			Deadline:      s.deadline(req.Flags),
			CloseIdle:     req.Transport == UDP && req.Flags&Timeout != 0,
			UserMode:      userMode,
			Rule:          c.rule,
			Protocol:      req.Protocol,
			Filter:        d.Filter,
			Owner:         c,
			OnFlow:        onFlow,
		}
		e.OnLapse = onLapse(e, req.OnLapse)
		if known(c.mu.client) {
			e.Inside = c.mu.client
		}
		if userMode && req.Transport == TCP {
			if err := s.mgr.listenUserMode(c, req.Backlog); err != nil {
				release(i)
				for _, done := range conns[:i] {
					done.Kill()
				}
				return nil, fmt.Errorf("session: %s: %w", call, err)
			}
		}
		if err := table.ExpectInbound(e); err != nil {
			release(i)
			for _, done := range conns[:i] {
				done.Kill()
			}
			return nil, fmt.Errorf("session: %s: %w: %w", call, ErrAddressInUse, err)
		}
		c.mu.Lock()
		c.mu.expect = e
		c.mu.Unlock()
		s.addConn(c)
		if req.Transport == TCP {
			// A listen cannot be failed: its handlers' verdicts are ignored.
			s.dispatch(&Event{Type: EventListen, Conn: c, Addr: c.addr, Protocol: req.Protocol, Secondary: true}, d.Filter)
		}
	}
	return &BindResult{Proxy: base, Conns: conns}, nil
}

// known reports whether a client address was given (not "all zeros").
func known(a netip.AddrPort) bool { return a.IsValid() && !a.Addr().IsUnspecified() }

func portAt(base netip.AddrPort, i int) netip.AddrPort {
	return netip.AddrPortFrom(base.Addr(), base.Port()+uint16(i))
}
