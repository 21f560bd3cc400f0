package session_test

import (
	"bytes"
	"errors"
	"net"
	"net/netip"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/fwx-dev/fwx/netstack/lab"
	"github.com/fwx-dev/fwx/netstack/lab/fwxlab"
	"github.com/fwx-dev/fwx/session"
)

// The user-mode path for UDP: datagrams of hooked flows pass through
// datagram filters, with their boundaries and peers kept.

// dgramPolicy binds UDP port 9000 to the test filter "probe"; everything
// else goes out on the fast path.
const dgramPolicy = `
protocols:
  - {name: dgram, transport: udp, ports: [9000], filter: probe}
  - {name: tftp, transport: udp, ports: [69]}
rules:
  - {name: dgram-out, action: allow, from: [internal], to: [external], protocols: [dgram]}
  - {name: out, action: allow, from: [internal], to: [external], protocols: [any]}
`

// udpProbe hooks the UDP events and lets each test decide what to do.
type udpProbe struct {
	hooks    session.Hooks
	onEvent  func(ev *session.Event) error
	events   chan session.Event
	mu       sync.Mutex
	detached int
}

func newUDPProbe(onEvent func(ev *session.Event) error) *udpProbe {
	return &udpProbe{
		hooks:   session.Hooks{Events: session.EventUDPDestination | session.EventBindUDP, Secondaries: true},
		onEvent: onEvent,
		events:  make(chan session.Event, 64),
	}
}

func (f *udpProbe) Init() (session.Hooks, error)                                    { return f.hooks, nil }
func (f *udpProbe) AttachToSession(*session.Session) (session.SessionFilter, error) { return f, nil }
func (f *udpProbe) Shutdown()                                                       {}
func (f *udpProbe) Detach() {
	f.mu.Lock()
	f.detached++
	f.mu.Unlock()
}
func (f *udpProbe) HandleEvent(ev *session.Event) error {
	select {
	case f.events <- *ev:
	default:
	}
	if f.onEvent != nil {
		return f.onEvent(ev)
	}
	return nil
}

// nextEvent returns the next event of type typ, skipping others.
func (f *udpProbe) nextEvent(t *testing.T, typ session.EventType) session.Event {
	t.Helper()
	for {
		if ev := fwxlab.Recv(t, f.events); ev.Type == typ {
			return ev
		}
	}
}

// noEvent checks that no event of type typ arrives for a moment.
func (f *udpProbe) noEvent(t *testing.T, typ session.EventType) {
	t.Helper()
	deadline := time.After(200 * time.Millisecond)
	for {
		select {
		case ev := <-f.events:
			if ev.Type == typ {
				t.Errorf("unexpected %v event for %v", ev.Type, ev.Addr)
			}
		case <-deadline:
			return
		}
	}
}

// seen is what a datagram filter saw of one datagram.
type seen struct {
	payload      string
	fromInside   bool
	inside, peer netip.AddrPort
	conn         *session.Connection
}

// rewriter is a datagram filter that records what it sees, upper-cases
// what the inside sends, drops "drop", and answers "inject" with an extra
// datagram to the inside host.
type rewriter struct {
	seen chan seen
}

func newRewriter() *rewriter { return &rewriter{seen: make(chan seen, 64)} }

func (r *rewriter) HandleDatagram(c *session.Connection, d *session.Datagram) session.Verdict {
	r.seen <- seen{string(d.Payload), d.FromInside, d.Inside, d.Peer, c}
	switch {
	case string(d.Payload) == "drop":
		return session.Drop
	case string(d.Payload) == "inject" && d.FromInside:
		if err := c.Inject(true, d.Peer, []byte("injected")); err != nil {
			panic(err)
		}
	case d.FromInside:
		d.Payload = bytes.ToUpper(d.Payload)
	}
	return session.Pass
}

// none is what exchange and read return when no datagram came.
const none = "(nothing)"

// exchange sends msg on c and returns the datagram that comes back, or
// none after a wait.
func exchange(t *testing.T, c net.Conn, msg string, wait time.Duration) string {
	t.Helper()
	if _, err := c.Write([]byte(msg)); err != nil {
		t.Fatal(err)
	}
	return read(c, wait)
}

func read(c net.Conn, wait time.Duration) string {
	c.SetReadDeadline(time.Now().Add(wait))
	buf := make([]byte, 70000)
	n, err := c.Read(buf)
	if err != nil {
		return none
	}
	return string(buf[:n])
}

// TestUDPDatagramFilter: a flow whose UDP destination event a filter
// hooked passes through the datagram filter it attached: each datagram
// whole (boundaries kept; those larger than the MTU come in fragments,
// reach the filter reassembled and leave in fragments again), with its
// peer, rewritten,
// dropped or answered by an injected one; the server sees fwx's outside
// address, the client the server's.
func TestUDPDatagramFilter(t *testing.T) {
	rw := newRewriter()
	probe := newUDPProbe(func(ev *session.Event) error {
		if ev.Type == session.EventUDPDestination {
			return ev.Conn.AttachDatagramFilter(rw, session.PriorityMiddle)
		}
		return nil
	})
	tb := newTestbed(t, dgramPolicy, withFilter("probe", probe))
	peers := fwxlab.EchoUDP(t, tb.Server, 9000)
	dst := netip.AddrPortFrom(serverIP.Addr(), 9000)
	c, err := tb.Client.DialUDP(netip.AddrPort{}, dst)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	client := c.LocalAddr().(*net.UDPAddr).AddrPort()

	if got := exchange(t, c, "hello", 5*time.Second); got != "HELLO" {
		t.Fatalf("echo %q, want HELLO: the datagram filter is not in the path", got)
	}
	ev := probe.nextEvent(t, session.EventUDPDestination)
	if ev.Addr != dst || ev.Conn.Transport() != session.UDP || ev.Conn.Peer() != dst || ev.Secondary || ev.Conn.Rule() != "dgram-out" {
		t.Errorf("event addr %v proto %v peer %v secondary %v rule %q; want %v, udp, the server, primary, dgram-out",
			ev.Addr, ev.Conn.Transport(), ev.Conn.Peer(), ev.Secondary, ev.Conn.Rule(), dst)
	}
	out, back := fwxlab.Recv(t, rw.seen), fwxlab.Recv(t, rw.seen)
	if out.payload != "hello" || !out.fromInside || out.inside != client || out.peer != dst {
		t.Errorf("outbound datagram seen as %+v; want hello from %v to %v", out, client, dst)
	}
	if back.payload != "HELLO" || back.fromInside || back.peer != dst {
		t.Errorf("inbound datagram seen as %+v; want HELLO from %v", back, dst)
	}
	if p := fwxlab.Recv(t, peers); p.Addr() != fwOut.Addr() {
		t.Errorf("server saw %v, want fwx's outside address", p)
	}

	// Boundaries: datagrams of many sizes each come back whole.
	for _, n := range []int{0, 1, 1400, 1472, 1473, 9000, 60000} {
		msg := string(bytes.Repeat([]byte{'a'}, n))
		if got := exchange(t, c, msg, 5*time.Second); got != string(bytes.Repeat([]byte{'A'}, n)) {
			t.Errorf("%d-byte datagram came back as %d bytes", n, len(got))
		}
	}
	// Drop and inject.
	if got := exchange(t, c, "drop", 300*time.Millisecond); got != none {
		t.Errorf("dropped datagram answered with %q", got)
	}
	if got := exchange(t, c, "inject", 5*time.Second); got != "injected" {
		t.Errorf("first answer %q, want the injected datagram", got)
	}
	if got := read(c, 5*time.Second); got != "inject" {
		t.Errorf("second answer %q, want the echo", got)
	}
	if ra := c.RemoteAddr().(*net.UDPAddr).AddrPort(); ra != dst {
		t.Errorf("client's peer %v, want the server", ra)
	}
	tb.Log.WaitRecords(t, 1, map[string]string{"event": "allowed", "protocol": "udp", "destination": dst.String(), "path": "user", "rule": "dgram-out"})

	// Other UDP stays on the fast path and raises nothing.
	fwxlab.EchoUDP(t, tb.Server, 9001)
	d, err := tb.Client.DialUDP(netip.AddrPort{}, netip.AddrPortFrom(serverIP.Addr(), 9001))
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	if got := exchange(t, d, "fast", 5*time.Second); got != "fast" {
		t.Errorf("fast-path echo %q", got)
	}
	probe.noEvent(t, session.EventUDPDestination)
}

// TestUDPDestinationEvent: the event comes once per new destination, not
// per datagram; a denied destination's datagrams are dropped; an idle
// flow's end raises the terminating event, and its next datagram is a new
// destination again.
func TestUDPDestinationEvent(t *testing.T) {
	deny := netip.AddrPortFrom(server2IP.Addr(), 9000)
	probe := newUDPProbe(func(ev *session.Event) error {
		if ev.Type == session.EventUDPDestination && ev.Addr == deny {
			return ev.Conn.Deny()
		}
		return nil
	})
	tb := newTestbed(t, dgramPolicy, withFilter("probe", probe))
	fwxlab.EchoUDP(t, tb.Server, 9000)
	fwxlab.EchoUDP(t, tb.Server2, 9000)
	dst := netip.AddrPortFrom(serverIP.Addr(), 9000)
	c, err := tb.Client.ListenUDP(0)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ask := func(to netip.AddrPort, msg string) string {
		c.WriteTo([]byte(msg), net.UDPAddrFromAddrPort(to))
		c.SetReadDeadline(time.Now().Add(time.Second))
		buf := make([]byte, 100)
		n, _, err := c.ReadFrom(buf)
		if err != nil {
			return ""
		}
		return string(buf[:n])
	}
	for i := range 3 {
		if got := ask(dst, "x"); got != "x" {
			t.Fatalf("datagram %d: echo %q", i, got)
		}
	}
	if ev := probe.nextEvent(t, session.EventUDPDestination); ev.Addr != dst {
		t.Errorf("event for %v, want %v", ev.Addr, dst)
	}
	probe.noEvent(t, session.EventUDPDestination)
	if got := ask(deny, "y"); got != "" {
		t.Errorf("denied destination answered %q", got)
	}
	if ev := probe.nextEvent(t, session.EventUDPDestination); ev.Addr != deny {
		t.Errorf("event for %v, want %v", ev.Addr, deny)
	}
	if recs := tb.Log.Records(t, map[string]string{"event": "allowed", "destination": deny.String()}); len(recs) > 0 {
		t.Errorf("the denied destination has an allowed record: %v", recs)
	}
	tb.Clock.Advance(6 * time.Minute)
	tb.FW.Expire()
	// Its one record comes at its end: denied by the filter.
	tb.Log.WaitRecords(t, 1, map[string]string{"event": "denied", "destination": deny.String(), "reason": "filter", "filter": "probe", "rule": "dgram-out"})
	if recs := tb.Log.Records(t, map[string]string{"destination": deny.String()}); len(recs) != 1 {
		t.Errorf("the denied destination has %d records, want its denied one: %v", len(recs), recs)
	}
	ends := map[netip.AddrPort]bool{}
	for range 2 {
		ev := probe.nextEvent(t, session.EventConnectionTerminating)
		ends[ev.Conn.Peer()] = true
	}
	if !ends[dst] || !ends[deny] {
		t.Errorf("terminating events for %v, want both flows", ends)
	}
	if got := ask(dst, "z"); got != "z" {
		t.Fatalf("after idle: echo %q", got)
	}
	if ev := probe.nextEvent(t, session.EventUDPDestination); ev.Addr != dst {
		t.Errorf("event for %v, want %v", ev.Addr, dst)
	}
}

// TestUDPConnectionKill: killing a UDP connection ends its flow; the
// client's next datagram starts a new one, with a new event.
func TestUDPConnectionKill(t *testing.T) {
	probe := newUDPProbe(nil)
	tb := newTestbed(t, dgramPolicy, withFilter("probe", probe))
	fwxlab.EchoUDP(t, tb.Server, 9000)
	c, err := tb.Client.DialUDP(netip.AddrPort{}, netip.AddrPortFrom(serverIP.Addr(), 9000))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if got := exchange(t, c, "a", 5*time.Second); got != "a" {
		t.Fatalf("echo %q", got)
	}
	ev := probe.nextEvent(t, session.EventUDPDestination)
	ev.Conn.Kill()
	if probe.nextEvent(t, session.EventConnectionTerminating).Conn != ev.Conn {
		t.Error("terminating event for another connection")
	}
	if err := ev.Conn.Inject(true, ev.Conn.Peer(), []byte("late")); !errors.Is(err, session.ErrTerminating) {
		t.Errorf("Inject after Kill: %v, want ErrTerminating", err)
	}
	tb.Log.WaitRecords(t, 1, map[string]string{"event": "ended", "protocol": "udp", "path": "user"})
	if got := exchange(t, c, "b", 5*time.Second); got != "b" {
		t.Fatalf("echo after Kill %q", got)
	}
	if next := probe.nextEvent(t, session.EventUDPDestination); next.Conn == ev.Conn {
		t.Error("the killed connection was reused")
	}
}

// TestHookingDecidesUserMode: hooking a protocol's connect or UDP events,
// or every protocol's (AnyProtocol), is what sends its flows to the
// user-mode path; a filter bound to a protocol whose connect events it does
// not hook leaves them on the fast path.
func TestHookingDecidesUserMode(t *testing.T) {
	const anyPolicy = `
protocols:
  - {name: web, transport: tcp, ports: [8000], filter: probe}
rules:
  - {name: web-out, action: allow, from: [internal], to: [external], protocols: [web]}
  - {name: out, action: allow, from: [internal], to: [external], protocols: [any]}
`
	for _, tt := range []struct {
		name    string
		hooks   session.Hooks
		tcpPort uint16
		tcp     string // the path of a TCP flow to tcpPort
		udp     string // the path of a UDP flow (protocol any)
	}{
		{"any protocol, connect", session.Hooks{Events: session.EventConnectTCP, AnyProtocol: true}, 8001, "user", "fast"},
		{"any protocol, udp", session.Hooks{Events: session.EventUDPDestination, AnyProtocol: true}, 8001, "fast", "user"},
		{"bound, connect", session.Hooks{Events: session.EventConnectTCP}, 8000, "user", "fast"},
		{"bound, accepted only", session.Hooks{Events: session.EventAcceptedConnection}, 8000, "fast", "fast"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			probe := newUDPProbe(nil)
			probe.hooks = tt.hooks
			tb := newTestbed(t, anyPolicy, withFilter("probe", probe))
			fwxlab.EchoTCP(t, tb.Server, tt.tcpPort)
			fwxlab.EchoUDP(t, tb.Server, 9999)
			c, err := tb.Client.DialTCP(lab.Context(t, 5*time.Second), netip.AddrPortFrom(serverIP.Addr(), tt.tcpPort))
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			fwxlab.RoundTrip(t, c, "tcp")
			u, err := tb.Client.DialUDP(netip.AddrPort{}, netip.AddrPortFrom(serverIP.Addr(), 9999))
			if err != nil {
				t.Fatal(err)
			}
			defer u.Close()
			if got := exchange(t, u, "udp", 5*time.Second); got != "udp" {
				t.Fatalf("UDP echo %q", got)
			}
			tb.Log.WaitRecords(t, 1, map[string]string{"event": "allowed", "protocol": "tcp", "path": tt.tcp})
			tb.Log.WaitRecords(t, 1, map[string]string{"event": "allowed", "protocol": "udp", "path": tt.udp})
			if tt.tcp == "user" {
				if ev := probe.nextEvent(t, session.EventConnectTCP); ev.Addr.Port() != tt.tcpPort {
					t.Errorf("connect event for %v", ev.Addr)
				}
			}
			if tt.udp == "user" {
				if ev := probe.nextEvent(t, session.EventUDPDestination); ev.Addr.Port() != 9999 {
					t.Errorf("UDP event for %v", ev.Addr)
				}
			}
		})
	}
}

// TestIdleSessionDetachesFilters: when an idle session ends, the filters
// attached to it are detached, once; the client's next flow attaches them
// to a new session.
func TestIdleSessionDetachesFilters(t *testing.T) {
	probe := newUDPProbe(nil)
	tb := newTestbed(t, dgramPolicy, withFilter("probe", probe))
	fwxlab.EchoUDP(t, tb.Server, 9000)
	c, err := tb.Client.DialUDP(netip.AddrPort{}, netip.AddrPortFrom(serverIP.Addr(), 9000))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if got := exchange(t, c, "x", 5*time.Second); got != "x" {
		t.Fatalf("echo %q", got)
	}
	s := tb.Session(t)
	detached := func() int {
		probe.mu.Lock()
		defer probe.mu.Unlock()
		return probe.detached
	}
	tb.Clock.Advance(6 * time.Minute) // the flow idles out
	tb.FW.Expire()
	if detached() != 0 || s.Context().Err() != nil {
		t.Fatal("the session ended while its flow had just ended")
	}
	tb.Clock.Advance(11 * time.Minute)
	tb.FW.Expire()
	if s.Context().Err() == nil {
		t.Fatal("the idle session lives on")
	}
	if n := detached(); n != 1 {
		t.Errorf("filter detached %d times, want 1", n)
	}
	if got := exchange(t, c, "y", 5*time.Second); got != "y" {
		t.Fatalf("echo after the session ended %q", got)
	}
	if tb.Session(t) == s {
		t.Error("the client's new flow joined the ended session")
	}
}

// TestUDPUserModeICMPErrors: an ICMP error about a datagram of a
// user-mode UDP flow reaches the host that sent the datagram, translated
// as on the fast path: a client whose server has no socket on the port
// learns it (a TFTP client to a closed server sees port unreachable
// rather than a timeout), and so does a peer whose datagram a bound port
// carried to a client port nobody listens on.
func TestUDPUserModeICMPErrors(t *testing.T) {
	probe := newUDPProbe(nil)
	tb := newTestbed(t, dgramPolicy, withFilter("probe", probe))
	t.Run("from the outside", func(t *testing.T) {
		c, err := tb.Client.DialUDP(netip.AddrPort{}, netip.AddrPortFrom(serverIP.Addr(), 9000)) // nobody listens
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		c.Write([]byte("anyone?"))
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		if _, err := c.Read(make([]byte, 100)); !errors.Is(err, syscall.ECONNREFUSED) {
			t.Errorf("read: %v, want ECONNREFUSED from the server's port unreachable", err)
		}
		probe.nextEvent(t, session.EventUDPDestination) // the flow is the user-mode path's
	})
	t.Run("from the inside", func(t *testing.T) {
		res := udpBind(t, tb.Session(t), 6000, "dgram", session.NoKernelMode) // nobody listens on the client's 6000
		c, err := tb.Server.DialUDP(netip.AddrPortFrom(netip.IPv4Unspecified(), 7000), res.Proxy)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		c.Write([]byte("anyone?"))
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		if _, err := c.Read(make([]byte, 100)); !errors.Is(err, syscall.ECONNREFUSED) {
			t.Errorf("read: %v, want ECONNREFUSED from the client's port unreachable", err)
		}
		tb.Log.WaitRecords(t, 1, map[string]string{"event": "allowed", "direction": "inbound", "destination": res.Proxy.String(), "path": "user"})
	})
}

// TestUDPNewPeerSeenByFilter: a datagram that a new peer sends to a
// client's UDP socket watched by a filter, let in by the mapping's
// filtering (address-dependent: the server's other port), takes the
// user-mode path too: the filter gets EventUDPDestination for that peer
// and the datagram reaches the client through it (ISA's Udp_Destination,
// raised when "a packet just arrived for the client from that address").
// The fast path used to carry it past the filter.
func TestUDPNewPeerSeenByFilter(t *testing.T) {
	probe := newUDPProbe(nil)
	tb := newTestbed(t, dgramPolicy, withFilter("probe", probe))
	srv, err := tb.Server.ListenUDP(9000)
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	other, err := tb.Server.ListenUDP(9002)
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	c, err := tb.Client.ListenUDP(0)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()

	dst := netip.AddrPortFrom(serverIP.Addr(), 9000)
	c.WriteTo([]byte("hello"), net.UDPAddrFromAddrPort(dst))
	srv.SetReadDeadline(time.Now().Add(5 * time.Second))
	buf := make([]byte, 100)
	_, from, err := srv.ReadFrom(buf)
	if err != nil {
		t.Fatalf("the server got nothing: %v", err)
	}
	if ev := probe.nextEvent(t, session.EventUDPDestination); ev.Addr != dst {
		t.Fatalf("event for %v, want %v", ev.Addr, dst)
	}

	peer := netip.AddrPortFrom(serverIP.Addr(), 9002)
	other.WriteTo([]byte("from 9002"), from)
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	n, got, err := c.ReadFrom(buf)
	if err != nil || string(buf[:n]) != "from 9002" {
		t.Fatalf("the client got %q from %v (%v), want the new peer's datagram", buf[:n], got, err)
	}
	ev := probe.nextEvent(t, session.EventUDPDestination)
	if ev.Remote != peer || ev.Protocol != "dgram" {
		t.Errorf("event for %v of protocol %q, want the new peer %v of dgram", ev.Remote, ev.Protocol, peer)
	}
	tb.Log.WaitRecords(t, 1, map[string]string{"event": "allowed", "client": peer.String(), "path": "user", "rule": "dgram-out"})
}
