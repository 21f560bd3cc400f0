package session

import (
	"errors"
	"fmt"
	"net/netip"
	"time"

	"github.com/fwx-dev/fwx/nat"
)

// FutureConnect asks fwx to let the session's client make an outbound
// connection the policy alone would not allow (ISA's
// IFWXSession::AllowFutureConnect parameters), such as the data connection
// of a passive FTP transfer.
type FutureConnect struct {
	// Addr is where the client will connect.
	Addr netip.AddrPort
	// ProxyExternal pins the external address the connection leaves from
	// and, with a port, its source port too (see [Redirect]); the zero
	// value means fwx's address and any port.
	ProxyExternal netip.AddrPort
	// Transport is TCP or UDP.
	Transport Transport
	// Flags: AllowMultiple, Timeout, NoKernelMode; for UDP also
	// IncreaseReceiveBuffer.
	Flags Flags
	// Protocol is the policy protocol the connection belongs to; the
	// policy must let the client use it.
	Protocol string
	// Notify, if set, receives EventEstablishedConnection with Context when
	// the connection is made.
	Notify  SessionFilter
	Context any
	// Primary and OnLapse are as in BindRequest.
	Primary *Connection
	OnLapse func(at time.Time)
}

// AllowFutureConnect lets the client connect once to req.Addr (or several
// times with AllowMultiple; within the pinhole timeout with Timeout). The
// connection takes the fast path unless NoKernelMode is set or a filter
// hooked its connect event. With Unarmed it admits nothing until
// FirewallAction.Arm.
//
// Errors: ErrInvalidArgument, ErrProtocolDenied, ErrAddressNotAvailable,
// ErrAddressInUse (a permission for the same destination is live), ErrBusy,
// ErrTerminating.
func (s *Session) AllowFutureConnect(req FutureConnect) (*FirewallAction, error) {
	const call = "AllowFutureConnect"
	err := checkTransport(call, req.Transport)
	if err != nil {
		return nil, err
	}
	if !req.Addr.IsValid() || req.Addr.Addr().IsUnspecified() || req.Addr.Port() == 0 {
		return nil, fmt.Errorf("session: %s: destination %v: %w", call, req.Addr, ErrInvalidArgument)
	}
	if err := checkGrantFlags(call, req.Transport, req.Flags, AllowMultiple|Timeout|NoKernelMode|IncreaseReceiveBuffer|Unarmed); err != nil {
		return nil, err
	}
	ext, d, err := s.admitGrant(call, req.ProxyExternal.Addr(), req.Protocol, 1)
	if err != nil {
		return nil, err
	}
	dst := netip.AddrPortFrom(req.Addr.Addr().Unmap(), req.Addr.Port())
	ev := ConnectEvent(req.Transport)
	userMode := req.Flags&NoKernelMode != 0 || len(s.mgr.hooked(ev, d.Filter, true)) > 0 || s.wantsFilter(ev, dst)
	pinned, err := s.pinPort(call, req.Transport, ext, req.ProxyExternal.Port())
	if err != nil {
		return nil, err
	}
	e := &nat.Expectation{
		Proto:        req.Transport,
		Client:       s.client,
		Dst:          dst,
		ExternalAddr: ext,
		ExternalPort: pinned,
		Multiple:     req.Flags&AllowMultiple != 0,
		Unarmed:      req.Flags&Unarmed != 0,
		Deadline:     s.deadline(req.Flags),
		UserMode:     userMode,
		Protocol:     req.Protocol,
		Filter:       d.Filter,
	}
	e.OnLapse = onLapse(e, req.OnLapse)
	c := newGrantConnection(s, req.Transport, d, dst, req.Flags, req.Context, req.Primary)
	e.Rule, e.Owner = c.rule, c
	e.OnFlow = s.established(c, req.Protocol, req.Notify, req.Context)
	if err := s.mgr.cfg.Table.ExpectOutbound(e, s.mgr.cfg.Clock.Now()); err != nil {
		s.unpinPort(req.Transport, ext, pinned)
		if errors.Is(err, nat.ErrPortInUse) {
			return nil, fmt.Errorf("session: %s: %w: %w", call, ErrAddressInUse, err)
		}
		return nil, fmt.Errorf("session: %s: %w", call, err)
	}
	a := &FirewallAction{s: s, expect: e, addr: dst}
	s.mu.Lock()
	s.mu.actions[a] = struct{}{}
	s.mu.Unlock()
	return a, nil
}
