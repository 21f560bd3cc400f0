package session

import (
	"errors"
	"fmt"
	"net/netip"

	"github.com/fwx-dev/fwx/nat"
)

// Redirect asks fwx for addresses on its client-facing side that lead to
// other destinations (ISA's IFWXSession::RedirectConnections parameters).
type Redirect struct {
	// ConnectAddrs are the destinations, one per internal address.
	ConnectAddrs []netip.AddrPort
	// ProxyExternal pins the external address the redirected connections
	// leave from, so a secondary connection uses the primary's address on
	// a firewall with several; the zero value means any (fwx's). With a
	// port (one connect address only) it pins their source port too: fwx
	// reserves it now, and the first inside endpoint that uses the
	// redirect leaves from it; another endpoint, or one that already
	// leaves from another port, is refused.
	ProxyExternal netip.AddrPort
	// Transport is TCP or UDP.
	Transport Transport
	// Flags: AllowMultiple, Timeout, NoKernelMode; for UDP also
	// IncreaseReceiveBuffer (a 64 KiB receive buffer on the user-mode
	// path).
	Flags Flags
	// Protocol is the policy protocol the connections belong to.
	Protocol string
	// Notify, if set, receives EventEstablishedConnection with Context when
	// the client connects.
	Notify  SessionFilter
	Context any
	// Primary is as in BindRequest: the redirected connections are logged
	// with its policy rule.
	Primary *Connection
}

// RedirectResult is what RedirectConnections set up.
type RedirectResult struct {
	// Internal is the address on fwx's inside where the client connects
	// for ConnectAddrs[0]; the others follow on consecutive ports.
	Internal netip.AddrPort
	// Actions holds one permission per address, each cancellable.
	Actions []*FirewallAction
}

// RedirectConnections allocates N consecutive ports on fwx's inside
// address; a connection the client makes to the i-th is redirected to
// ConnectAddrs[i], leaving from the proxy external address (ISA's
// IFWXSession::RedirectConnections). Filters hooked to connect events for
// the protocol are told now, and may deny a redirect or attach a data
// filter to it.
//
// Errors: ErrInvalidArgument, ErrProtocolDenied, ErrAddressNotAvailable,
// ErrDenied, ErrBusy, ErrTerminating.
func (s *Session) RedirectConnections(req Redirect) (*RedirectResult, error) {
	const call = "RedirectConnections"
	n := len(req.ConnectAddrs)
	err := checkTransport(call, req.Transport)
	internal, _ := s.mgr.cfg.Table.InternalFor(s.client)
	switch {
	case err != nil:
		return nil, err
	case n < 1 || n > maxBind:
		return nil, fmt.Errorf("session: %s: %d addresses: %w", call, n, ErrInvalidArgument)
	case !internal.IsValid():
		return nil, fmt.Errorf("session: %s: fwx has no inside address of %v's family: %w", call, s.client, ErrAddressNotAvailable)
	case req.ProxyExternal.Port() != 0 && n > 1:
		return nil, fmt.Errorf("session: %s: a port can be pinned only for one address: %w", call, ErrInvalidArgument)
	}
	for _, a := range req.ConnectAddrs {
		if !a.IsValid() || a.Addr().IsUnspecified() || a.Port() == 0 {
			return nil, fmt.Errorf("session: %s: connect address %v: %w", call, a, ErrInvalidArgument)
		}
	}
	if err := checkGrantFlags(call, req.Transport, req.Flags, AllowMultiple|Timeout|NoKernelMode|IncreaseReceiveBuffer); err != nil {
		return nil, err
	}
	ext, d, err := s.admitGrant(call, req.ProxyExternal.Addr(), req.Protocol, n)
	if err != nil {
		return nil, err
	}
	table := s.mgr.cfg.Table
	pinned, err := s.pinPort(call, req.Transport, ext, req.ProxyExternal.Port())
	if err != nil {
		return nil, err
	}
	base, err := table.ReserveBlock(req.Transport, internal, n)
	if err != nil {
		s.unpinPort(req.Transport, ext, pinned)
		return nil, fmt.Errorf("session: %s: %w: %w", call, ErrAddressInUse, err)
	}
	ev := ConnectEvent(req.Transport)
	res := &RedirectResult{Internal: base}
	fail := func(i int, err error) (*RedirectResult, error) {
		if len(res.Actions) == 0 {
			s.unpinPort(req.Transport, ext, pinned) // else the cancelled expectation frees it
		}
		for _, a := range res.Actions {
			a.Cancel()
		}
		for j := i; j < n; j++ {
			table.ReleasePort(req.Transport, portAt(base, j))
		}
		return nil, fmt.Errorf("session: %s: %w", call, err)
	}
	for i, dst := range req.ConnectAddrs {
		dst = netip.AddrPortFrom(dst.Addr().Unmap(), dst.Port())
		// The redirect raises the connect event of the connection now; the
		// connection, when it comes, does not raise it again.
		c := newGrantConnection(s, req.Transport, d, dst, req.Flags, req.Context, req.Primary)
		c.redirect = true
		err := s.applyFactories(c, ev, dst)
		if err == nil {
			err = s.dispatch(&Event{Type: ev, Conn: c, Addr: dst, Protocol: req.Protocol, Secondary: true, Context: req.Context}, d.Filter)
		}
		if err != nil {
			return fail(i, err)
		}
		userMode := req.Flags&NoKernelMode != 0 || c.userMode() || (req.Transport == TCP && table.UserModeTCP())
		e := &nat.Expectation{
			Proto:        req.Transport,
			Client:       s.client,
			Dst:          portAt(base, i),
			Redirect:     dst,
			ReleaseDst:   true,
			ExternalAddr: ext,
			ExternalPort: pinned,
			Multiple:     req.Flags&AllowMultiple != 0,
			Deadline:     s.deadline(req.Flags),
			UserMode:     userMode,
			Rule:         c.rule,
			Protocol:     req.Protocol,
			Filter:       d.Filter,
			Owner:        c,
			OnFlow:       s.established(c, req.Protocol, req.Notify, req.Context),
		}
		if err := table.ExpectOutbound(e, s.mgr.cfg.Clock.Now()); err != nil {
			if errors.Is(err, nat.ErrPortInUse) {
				err = fmt.Errorf("%w: %w", ErrAddressInUse, err)
			}
			return fail(i, err)
		}
		a := &FirewallAction{s: s, expect: e, addr: e.Dst}
		s.mu.Lock()
		s.mu.actions[a] = struct{}{}
		s.mu.Unlock()
		res.Actions = append(res.Actions, a)
	}
	return res, nil
}
