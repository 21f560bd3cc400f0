package session

import (
	"context"
	"fmt"
	"net/netip"
	"slices"
	"sync"
	"time"

	"github.com/fwx-dev/fwx/nat"
	"github.com/fwx-dev/fwx/session/policy"
)

// Connection is a connection object (ISA's IFWXConnection): a port fwx
// bound for a client with BindForClient, or a connection passing through
// fwx that an event is about. Kill ends it.
//
// A Connection is safe for concurrent use.
type Connection struct {
	s        *Session
	proto    Transport
	protocol string          // the policy protocol
	filter   string          // the filter the policy binds to the protocol
	rule     string          // the policy rule that allowed it, when known
	addr     netip.AddrPort  // the bound external endpoint, or the destination
	inbound  bool            // started from the outside: a bind's or a publication's
	peer     netip.AddrPort  // the far end: the server, or the outside client
	external netip.AddrPort  // fwx's outside endpoint of a flow through fwx
	timeout  bool            // a grant made with Timeout: a bind is forgotten once spent
	redirect bool            // a redirect's: its event was raised when it was made
	rcvbuf   int             // a UDP grant's receive buffer; 0: the default
	context  any             // a grant's context, for its connections' events
	settings policy.Settings // the deciding rule's filter_settings
	flow     *nat.Flow       // a user-mode connection's NAT flow (TCP, UDP); for UDP also
	dg       *udpConn        // its datagram queue and chain
	ctx      context.Context
	cancel   context.CancelFunc

	// made raises the established-connection event of a user-mode TCP
	// bind's connection once it reached the client; nil otherwise.
	made func(target, local, remote netip.AddrPort)

	mu struct {
		sync.Mutex
		client   netip.AddrPort
		expect   *nat.Expectation
		killed   bool
		event    EventType // the event being handled, 0 outside handlers
		denied   bool
		filters  []attachedFilter
		emulated DataFilter
		onKill   []func()
		peers    map[netip.AddrPort]*udpConn // a UDP grant's live user-mode flows
	}
}

// attachedFilter is a data filter on a connection: a stream one (df) on a
// TCP connection, a datagram one (dg) on a UDP connection, for every peer
// or for one.
type attachedFilter struct {
	df   DataFilter
	dg   DatagramFilter
	prio Priority
	peer netip.AddrPort
}

func newConnection(s *Session, proto Transport, protocol, filter string, addr, client netip.AddrPort) *Connection {
	c := &Connection{s: s, proto: proto, protocol: protocol, filter: filter, addr: addr}
	c.ctx, c.cancel = context.WithCancel(s.ctx)
	c.mu.client = client
	return c
}

// Session returns the connection's session.
func (c *Connection) Session() *Session { return c.s }

// Transport returns the connection's transport: TCP or UDP.
func (c *Connection) Transport() Transport { return c.proto }

// Protocol returns the policy protocol the connection belongs to.
func (c *Connection) Protocol() string { return c.protocol }

// Rule returns the policy rule that allowed the connection: for a client's
// connection or one to a published server the rule (or publication) that
// admitted it, for a grant the rule its flows are logged with; "" when not
// known.
func (c *Connection) Rule() string { return c.rule }

// FilterName returns the name of the application filter the policy binds
// to the connection's protocol ("" if none).
func (c *Connection) FilterName() string { return c.filter }

// Inbound reports whether the connection was started from the outside: a
// connection accepted on a bound port or to a published server. A data
// filter's internal side is then the inside host that receives it.
func (c *Connection) Inbound() bool { return c.inbound }

// Peer returns the far end of a user-mode connection: the server a client
// connects to, or the outside client of an inbound connection. It is the
// zero value for bound ports and grants.
func (c *Connection) Peer() netip.AddrPort { return c.peer }

// Addr returns the address the connection is about: for BindForClient the
// bound external address and port, for a client's connection the
// destination it dialed, for a connection to a published server the
// published address.
func (c *Connection) Addr() netip.AddrPort { return c.addr }

// External returns fwx's outside endpoint of the connection: the
// endpoint a client's connection leaves from (its NAT mapping) or a
// connection from the outside arrives at, or the bound port of a bind.
// It is the zero value for a future connect or redirect not yet used.
func (c *Connection) External() netip.AddrPort {
	if c.external.IsValid() {
		return c.external
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if e := c.mu.expect; e != nil {
		return e.External // a bind's: the bound port; zero for others
	}
	return netip.AddrPort{}
}

// Settings returns the filter_settings of the policy rule that decided the
// connection (ISA's per-rule data, PerRuleProcessedData): the access rule
// of a client's connection, the publish rule of a published server's, and
// for a secondary connection the rule that let the client use the
// grant's protocol. A filter reads there the settings it declared when it
// registered; the policy was checked against them when fwx started.
func (c *Connection) Settings() policy.Settings { return c.settings }

// ClientAddr returns the client address the connection forwards to; the
// zero value when not known yet.
func (c *Connection) ClientAddr() netip.AddrPort {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.mu.client
}

// Context returns a context done when the connection is killed or its
// session ends.
func (c *Connection) Context() context.Context { return c.ctx }

// SetClientAddress supplies the client address a BindForClient call left
// unspecified (ISA's IFWXConnection::SetClientAddress). Inbound connections
// that arrive before it is set are refused. It fails with ErrAlreadyExists
// (and ErrInvalidArgument) if the address was already set.
func (c *Connection) SetClientAddress(client netip.AddrPort) error {
	if !client.IsValid() || client.Addr().IsUnspecified() || client.Port() == 0 {
		return fmt.Errorf("session: SetClientAddress(%v): %w", client, ErrInvalidArgument)
	}
	if client.Addr().Unmap() != c.s.client {
		return fmt.Errorf("session: SetClientAddress(%v): not the session's client %v: %w", client, c.s.client, ErrInvalidArgument)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	switch {
	case c.mu.killed:
		return fmt.Errorf("session: SetClientAddress: %w", ErrTerminating)
	case c.mu.client.IsValid() && !c.mu.client.Addr().IsUnspecified():
		return fmt.Errorf("session: SetClientAddress: already %v: %w: %w", c.mu.client, ErrAlreadyExists, ErrInvalidArgument)
	case c.mu.expect == nil:
		return fmt.Errorf("session: SetClientAddress: not a bound connection: %w", ErrNotSupported)
	}
	if err := c.s.mgr.cfg.Table.SetExpectationInside(c.mu.expect, client); err != nil {
		return fmt.Errorf("session: SetClientAddress: %w: %w", ErrTerminating, err)
	}
	c.mu.client = client
	return nil
}

// Kill ends the connection (ISA's IFWXConnection::Kill): a bound port stops
// accepting and is freed, and the flows through it end. Filters that saw
// the connection get EventConnectionTerminating. Kill is idempotent.
func (c *Connection) Kill() {
	c.mu.Lock()
	if c.mu.killed {
		c.mu.Unlock()
		return
	}
	c.mu.killed = true
	e := c.mu.expect
	onKill := c.mu.onKill
	c.mu.onKill = nil
	c.mu.Unlock()
	if e != nil {
		c.s.mgr.cfg.Table.Kill(e, c.s.mgr.cfg.Clock.Now())
	}
	c.cancel()
	for _, f := range slices.Backward(onKill) {
		f()
	}
	c.s.dispatch(&Event{Type: EventConnectionTerminating, Conn: c, Addr: c.addr, Protocol: c.protocol}, c.filter)
	c.s.removeConn(c)
}

// Live reports whether the connection is still of use: not killed, and,
// for a bind made with Timeout, its pinhole not lapsed or a connection
// through it still open. fwx forgets a Timeout bind that is no longer
// live, as ISA deletes such connection objects by itself.
func (c *Connection) Live() bool {
	c.mu.Lock()
	killed, e, timeout := c.mu.killed, c.mu.expect, c.timeout
	c.mu.Unlock()
	if killed {
		return false
	}
	if e == nil || !timeout {
		return true
	}
	return c.s.mgr.cfg.Table.ExpectationInUse(e, c.s.mgr.cfg.Clock.Now())
}

// Arm lets a port bound Unarmed accept connections from now on. It
// returns ErrTerminating if the connection was killed or its pinhole
// lapsed, and ErrNotSupported if it is not a bound port.
func (c *Connection) Arm() error {
	c.mu.Lock()
	killed, e := c.mu.killed, c.mu.expect
	c.mu.Unlock()
	switch {
	case killed:
		return fmt.Errorf("session: arm %v: %w", c.addr, ErrTerminating)
	case e == nil:
		return fmt.Errorf("session: arm %v: not a bound connection: %w", c.addr, ErrNotSupported)
	}
	if err := c.s.mgr.cfg.Table.Arm(e, c.s.mgr.cfg.Clock.Now()); err != nil {
		return fmt.Errorf("session: arm %v: %w: %w", c.addr, ErrTerminating, err)
	}
	return nil
}

// SetIPFilter replaces the addresses that may use a bound port from now
// on (ISA's IFWXConnection::SetIpFilter): nil allows every address, an
// empty filter none. Connections already accepted live on. A filter that
// learns the peer only after it bound the port (SIP, whose answer names
// the media peer) narrows the port with it before arming it. It returns
// ErrTerminating if the connection was killed, and ErrNotSupported if it
// is not a bound port.
func (c *Connection) SetIPFilter(f *IPFilter) error {
	c.mu.Lock()
	killed, e := c.mu.killed, c.mu.expect
	c.mu.Unlock()
	switch {
	case killed:
		return fmt.Errorf("session: SetIPFilter %v: %w", c.addr, ErrTerminating)
	case e == nil || e.External != c.addr:
		return fmt.Errorf("session: SetIPFilter %v: not a bound port: %w", c.addr, ErrNotSupported)
	}
	c.s.mgr.cfg.Table.SetRemotes(e, remoteFilter(f))
	return nil
}

// LastActive returns when a packet last crossed a live flow on a bound
// port (from a peer, or from the client through the port), or the zero
// time when no flow lives there: a filter that must end a grant its
// protocol forgot to close (a call whose BYE never came) tells an idle
// one from a busy one.
func (c *Connection) LastActive() time.Time {
	c.mu.Lock()
	e := c.mu.expect
	c.mu.Unlock()
	if e == nil {
		return time.Time{}
	}
	return c.s.mgr.cfg.Table.ExpectationLastSeen(e)
}

// Used returns how many connections a bound port accepted (0 for other
// connections).
func (c *Connection) Used() int {
	c.mu.Lock()
	e := c.mu.expect
	c.mu.Unlock()
	if e == nil {
		return 0
	}
	return c.s.mgr.cfg.Table.ExpectationUsed(e)
}

// admits reports whether a bound port may still accept a connection.
func (c *Connection) admits(now time.Time) bool {
	c.mu.Lock()
	e := c.mu.expect
	c.mu.Unlock()
	return e != nil && c.s.mgr.cfg.Table.ExpectationLive(e, now)
}

// Killed reports whether the connection has been killed.
func (c *Connection) Killed() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.mu.killed
}

// onKilled registers f to run when the connection is killed.
func (c *Connection) onKilled(f func()) {
	c.mu.Lock()
	if !c.mu.killed {
		c.mu.onKill = append(c.mu.onKill, f)
		f = nil
	}
	c.mu.Unlock()
	if f != nil {
		f()
	}
}

// Deny vetoes the operation the current event is about (ISA's
// IFWXConnection::Deny): a bind fails with ErrAddressInUse, a connect is
// refused, an accepted connection is aborted. It is legal only while
// handling EventBindTCP, EventBindUDP, EventConnectTCP,
// EventAcceptedConnection or EventUDPDestination (ISA's
// IFWXUdpDestination::Deny: the destination's datagrams are dropped) for
// this connection; elsewhere it returns ErrBadContext.
func (c *Connection) Deny() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	switch c.mu.event {
	case EventBindTCP, EventBindUDP, EventConnectTCP, EventAcceptedConnection, EventUDPDestination:
		c.mu.denied = true
		return nil
	}
	return fmt.Errorf("session: Deny: %w", ErrBadContext)
}

// AttachDataFilter inserts df into the chain of a TCP connection at
// priority p (ISA's IFWXConnection::AttachDataFilter). It is legal only
// while handling a connect, bind or accept event for this connection;
// elsewhere it returns ErrBadContext. A connection with a data filter takes
// the user-mode path. A UDP connection takes a [DatagramFilter] instead
// (ErrInvalidArgument).
func (c *Connection) AttachDataFilter(df DataFilter, p Priority) error {
	if df == nil || c.proto != TCP {
		return fmt.Errorf("session: AttachDataFilter: %w", ErrInvalidArgument)
	}
	return c.attach("AttachDataFilter", attachedFilter{df: df, prio: p})
}

// AttachDatagramFilter inserts df into the chain of a UDP connection at
// priority p, for every peer of the connection: it sees every datagram
// (ISA's IFWXConnection::AttachDataFilter on a UDP connection). It is
// legal only while handling EventUDPDestination or EventBindUDP for this
// connection; elsewhere it returns ErrBadContext. Attached at a bind, it
// sees the datagrams of every peer the bound port exchanges with. A TCP
// connection takes a [DataFilter] instead (ErrInvalidArgument).
func (c *Connection) AttachDatagramFilter(df DatagramFilter, p Priority) error {
	return c.AttachDatagramFilterWithDestination(df, p, netip.AddrPort{})
}

// AttachDatagramFilterWithDestination is AttachDatagramFilter for the
// datagrams exchanged with one peer only (ISA's
// IFWXConnection::AttachDataFilterWithDestination): a bound port's
// datagrams from and to peer, where port 0 stands for every port of
// peer's address. The filter leaves with the peer's flow: a later flow
// with the same peer gets it again.
func (c *Connection) AttachDatagramFilterWithDestination(df DatagramFilter, p Priority, peer netip.AddrPort) error {
	if df == nil || c.proto != UDP {
		return fmt.Errorf("session: AttachDatagramFilter: %w", ErrInvalidArgument)
	}
	if peer.IsValid() {
		// Datagrams carry unmapped peers: an IPv4 peer given in its
		// IPv4-mapped IPv6 form is the same peer.
		peer = netip.AddrPortFrom(peer.Addr().Unmap(), peer.Port())
	}
	return c.attach("AttachDatagramFilter", attachedFilter{dg: df, prio: p, peer: peer})
}

// attach adds af to the chain, in an event that allows it.
func (c *Connection) attach(call string, af attachedFilter) error {
	if af.prio > PriorityEmulation {
		return fmt.Errorf("session: %s: priority %d: %w", call, af.prio, ErrInvalidArgument)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.mu.killed {
		return fmt.Errorf("session: %s: %w", call, ErrTerminating)
	}
	if !attachable(c.mu.event, c.proto) {
		return fmt.Errorf("session: %s: %w", call, ErrBadContext)
	}
	c.mu.filters = append(c.mu.filters, af)
	return nil
}

// Emulate makes df play the far end of the connection (ISA's
// EmulateForConnect for a connect, EmulateForBind for a bind). For a
// connect, fwx does not connect to the server, and df, last in the chain,
// gets a nil external socket. For a bind, df serves each connection
// accepted on the bound port in place of the client: it gets the peer's
// connection as its external socket and a nil internal one. It is legal
// only while handling a connect or bind event (ErrBadContext otherwise) and
// only once (ErrAlreadyEmulated). A UDP connection is not emulated
// (ErrNotSupported): a datagram filter that drops what the inside host
// sends and injects the answers plays the server.
func (c *Connection) Emulate(df DataFilter) error {
	if df == nil {
		return fmt.Errorf("session: Emulate: %w", ErrInvalidArgument)
	}
	if c.proto != TCP {
		return fmt.Errorf("session: Emulate: a UDP connection: %w", ErrNotSupported)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	switch c.mu.event {
	case EventBindTCP, EventBindUDP, EventConnectTCP:
	default:
		return fmt.Errorf("session: Emulate: %w", ErrBadContext)
	}
	if c.mu.emulated != nil {
		return fmt.Errorf("session: Emulate: %w", ErrAlreadyEmulated)
	}
	c.mu.emulated = df
	return nil
}

// Emulated returns the data filter emulating the connection's far end, if
// any.
func (c *Connection) Emulated() DataFilter {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.mu.emulated
}

// DataFilters returns the connection's data filters in chain order, from the
// client side: by priority, then in the order attached. An emulating filter
// comes last.
func (c *Connection) DataFilters() []DataFilter {
	c.mu.Lock()
	defer c.mu.Unlock()
	fs := slices.Clone(c.mu.filters)
	slices.SortStableFunc(fs, func(a, b attachedFilter) int { return int(a.prio) - int(b.prio) })
	out := make([]DataFilter, 0, len(fs)+1)
	for _, f := range fs {
		if f.df != nil {
			out = append(out, f.df)
		}
	}
	if c.mu.emulated != nil {
		out = append(out, c.mu.emulated)
	}
	return out
}

// attachable reports whether a data filter may be attached to a connection
// of transport p while ev is handled: the events that start a connection
// of that transport (ISA: Connect_Tcp, Bind_*, AcceptedConnection,
// Udp_Destination).
func attachable(ev EventType, p Transport) bool {
	switch ev {
	case EventBindTCP, EventConnectTCP, EventAcceptedConnection:
		return p == TCP
	case EventBindUDP, EventUDPDestination:
		return p == UDP
	}
	return false
}

// userMode reports whether the connection needs the user-mode path.
func (c *Connection) userMode() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.mu.filters) > 0 || c.mu.emulated != nil
}

func (c *Connection) enterEvent(ev EventType) {
	c.mu.Lock()
	c.mu.event, c.mu.denied = ev, false
	c.mu.Unlock()
}

func (c *Connection) leaveEvent() {
	c.mu.Lock()
	c.mu.event = 0
	c.mu.Unlock()
}

func (c *Connection) deniedInEvent() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.mu.denied
}
