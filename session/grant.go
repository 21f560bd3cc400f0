package session

import (
	"fmt"
	"net/netip"
	"time"

	"github.com/fwx-dev/fwx/nat"
	"github.com/fwx-dev/fwx/session/policy"
)

// What BindForClient, AllowFutureConnect and RedirectConnections share:
// checking a request against the firewall and turning it into pinholes.

// checkFlags rejects flags a call does not take.
func checkFlags(call string, f, allowed Flags) error {
	if extra := f &^ allowed; extra != 0 {
		return fmt.Errorf("session: %s: flags %v not allowed here: %w", call, extra, ErrInvalidArgument)
	}
	return nil
}

// checkGrantFlags is checkFlags for a grant of transport p: the flags for
// UDP only are refused for TCP.
func checkGrantFlags(call string, p Transport, f, allowed Flags) error {
	if udpOnly := f & (Bidirectional | IncreaseReceiveBuffer); udpOnly != 0 && p != UDP {
		return fmt.Errorf("session: %s: %v is for UDP only: %w", call, udpOnly, ErrInvalidArgument)
	}
	return checkFlags(call, f, allowed)
}

// newGrantConnection makes the connection object of a grant: what its
// flows' filters, events and log records come from. primary is the
// connection the grant was negotiated on, or nil.
func newGrantConnection(s *Session, p Transport, d policy.Decision, addr netip.AddrPort, f Flags, ctx any, primary *Connection) *Connection {
	c := newConnection(s, p, d.Protocol, d.Filter, addr, netip.AddrPort{})
	c.context, c.settings, c.rule = ctx, d.Settings, ruleOf(primary, d)
	c.timeout = f&Timeout != 0
	if f&IncreaseReceiveBuffer != 0 {
		c.rcvbuf = rcvbufIncreased
	}
	return c
}

// pinPort reserves the external port a grant's outbound flow must leave
// from (ProxyExternal with a port), or does nothing for port 0.
func (s *Session) pinPort(call string, p nat.Proto, ext netip.Addr, port uint16) (uint16, error) {
	if port == 0 {
		return 0, nil
	}
	if err := s.mgr.cfg.Table.ReservePort(p, netip.AddrPortFrom(ext, port)); err != nil {
		return 0, fmt.Errorf("session: %s: %w: %w", call, ErrAddressInUse, err)
	}
	return port, nil
}

// unpinPort frees a port pinPort reserved for a grant that failed.
func (s *Session) unpinPort(p nat.Proto, ext netip.Addr, port uint16) {
	if port != 0 {
		s.mgr.cfg.Table.ReleasePort(p, netip.AddrPortFrom(ext, port))
	}
}

// checkTransport accepts the transports of grants, TCP and UDP.
func checkTransport(call string, t Transport) error {
	if t != TCP && t != UDP {
		return fmt.Errorf("session: %s: transport %v: %w", call, t, ErrInvalidArgument)
	}
	return nil
}

// externalAddr resolves a requested external address: unset or
// unspecified means the one the client is paired with (every mapping of a
// client leaves from one, RFC 4787 REQ-2: see nat.Table.ExternalFor);
// anything else must be one of fwx's, of the client's family.
func (s *Session) externalAddr(call string, a netip.Addr) (netip.Addr, error) {
	t := s.mgr.cfg.Table
	if !a.IsValid() || a.IsUnspecified() {
		ext, ok := t.ExternalFor(s.client)
		if !ok {
			return netip.Addr{}, fmt.Errorf("session: %s: fwx has no outside address of %v's family: %w", call, s.client, ErrAddressNotAvailable)
		}
		return ext, nil
	}
	if a = a.Unmap(); !t.IsExternal(a) || a.Is6() != s.client.Is6() {
		return netip.Addr{}, fmt.Errorf("session: %s: %v is not an address of this firewall for %v: %w", call, a, s.client, ErrAddressNotAvailable)
	}
	return a, nil
}

// admitGrant makes the checks every grant shares: the external address is
// fwx's, the policy lets the client use the protocol, and the session may
// hold n more pinholes. It returns the external address and the policy's
// decision (which names the protocol's filter).
func (s *Session) admitGrant(call string, ext netip.Addr, protocol string, n int) (netip.Addr, policy.Decision, error) {
	ext, err := s.externalAddr(call, ext)
	if err != nil {
		return ext, policy.Decision{}, err
	}
	d, err := s.mgr.permits(s.client, protocol)
	if err != nil {
		return ext, d, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return ext, d, s.admitLocked(n)
}

// deadline returns when a permission granted with flags lapses if unused:
// never (the zero time) without Timeout.
func (s *Session) deadline(f Flags) time.Time {
	if f&Timeout == 0 {
		return time.Time{}
	}
	return s.mgr.cfg.Clock.Now().Add(s.mgr.cfg.PinholeTimeout)
}

// ruleOf is the policy rule flows through a grant are logged with: that of
// the connection the grant was negotiated on, or else the rule that lets
// the client use the protocol.
func ruleOf(primary *Connection, d policy.Decision) string {
	if primary != nil && primary.rule != "" {
		return primary.rule
	}
	return d.Rule
}

// onLapse adapts a grant's OnLapse to the table's.
func onLapse(e *nat.Expectation, f func(time.Time)) func() {
	if f == nil {
		return nil
	}
	return func() { f(e.Deadline) }
}

// remoteFilter converts an IPFilter to the table's interface, keeping nil
// (no restriction) distinct from an empty filter (blocks all).
func remoteFilter(f *IPFilter) nat.RemoteFilter {
	if f == nil {
		return nil
	}
	return f.Clone()
}

// established returns the OnFlow callback that raises the
// established-connection event for a grant: its flow's first packet made
// the connection.
func (s *Session) established(c *Connection, protocol string, notify SessionFilter, ctx any) func(*nat.Flow) {
	made := s.made(c, protocol, notify, ctx)
	if made == nil {
		return nil
	}
	return func(f *nat.Flow) {
		local := f.External()
		if f.Origin() == nat.Outbound {
			local = f.Inside()
		}
		made(f.Target(), local, f.Remote())
	}
}

// made returns what raises the established-connection event of a grant's
// connection to target, between local and remote; nil without notify.
func (s *Session) made(c *Connection, protocol string, notify SessionFilter, ctx any) func(target, local, remote netip.AddrPort) {
	if notify == nil {
		return nil
	}
	return func(target, local, remote netip.AddrPort) {
		s.notifyEstablished(notify, &Event{
			Type: EventEstablishedConnection, Conn: c, Addr: target,
			Local: local, Remote: remote, Protocol: protocol, Secondary: true, Context: ctx,
		})
	}
}
