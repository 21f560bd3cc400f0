package session_test

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/fwx-dev/fwx"
	"github.com/fwx-dev/fwx/filters"
	"github.com/fwx-dev/fwx/netstack/lab"
	"github.com/fwx-dev/fwx/netstack/lab/fwxlab"
	"github.com/fwx-dev/fwx/session"
	"github.com/fwx-dev/fwx/session/policy"
)

// The UDP half of the SDK: BindForClient, RedirectConnections,
// AllowFutureConnect and RetroactiveAllowBind for UDP, their flags, and
// the data filter factories of the UDP events.

// udpSock is a UDP socket on a lab host.
type udpSock struct {
	t *testing.T
	c net.PacketConn
}

func openUDP(t *testing.T, h *lab.Host, port uint16) *udpSock {
	t.Helper()
	c, err := h.ListenUDP(port)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return &udpSock{t, c}
}

func (s *udpSock) send(to netip.AddrPort, msg string) {
	s.t.Helper()
	if _, err := s.c.WriteTo([]byte(msg), net.UDPAddrFromAddrPort(to)); err != nil {
		s.t.Fatal(err)
	}
}

// recv returns the next datagram and its source, or none after wait.
func (s *udpSock) recv(wait time.Duration) (string, netip.AddrPort) {
	s.c.SetReadDeadline(time.Now().Add(wait))
	buf := make([]byte, 65536)
	n, from, err := s.c.ReadFrom(buf)
	if err != nil {
		return none, netip.AddrPort{}
	}
	return string(buf[:n]), from.(*net.UDPAddr).AddrPort()
}

// gets reports whether the next datagram is msg, from src if src is valid.
func (s *udpSock) gets(msg string, src netip.AddrPort) bool {
	wait := 5 * time.Second
	if msg == none {
		wait = 300 * time.Millisecond
	}
	got, from := s.recv(wait)
	return got == msg && (!src.IsValid() || from == src)
}

func udpBind(t *testing.T, s *session.Session, port uint16, protocol string, flags session.Flags) *session.BindResult {
	t.Helper()
	return bind(t, s, session.BindRequest{ClientAddrs: []netip.AddrPort{clientAt(port)}, Transport: session.UDP, Protocol: protocol, Flags: flags})
}

// TestBindUDPNoKernelMode: a UDP bind made with NoKernelMode takes the
// user-mode path though no filter asked for it; without the flag it takes
// the fast path. Either way the client gets the server's datagrams from the
// server and answers through the bound port.
func TestBindUDPNoKernelMode(t *testing.T) {
	for _, tt := range []struct {
		flags session.Flags
		path  string
	}{
		{session.Bidirectional, "fast"},
		{session.Bidirectional | session.NoKernelMode, "user"},
	} {
		t.Run(tt.flags.String(), func(t *testing.T) {
			tb := newTestbed(t, sdkPolicy)
			client := openUDP(t, tb.Client, 6000)
			server := openUDP(t, tb.Server, 7000)
			res := udpBind(t, tb.Session(t), 6000, "tftp", tt.flags)
			server.send(res.Proxy, "ping")
			if !client.gets("ping", netip.AddrPortFrom(serverIP.Addr(), 7000)) {
				t.Fatal("the client did not get the server's datagram")
			}
			client.send(netip.AddrPortFrom(serverIP.Addr(), 7000), "pong")
			if !server.gets("pong", res.Proxy) {
				t.Fatal("the server did not get the answer from the bound port")
			}
			tb.Log.WaitRecords(t, 1, map[string]string{"event": "allowed", "direction": "inbound", "destination": res.Proxy.String(), "path": tt.path})
		})
	}
}

// TestBindUDPFilterAtBind: a datagram filter attached at the bind event
// sees every peer's datagrams; one attached for a destination only that
// peer's.
func TestBindUDPFilterAtBind(t *testing.T) {
	all, one := newRewriter(), newRewriter()
	probe := newUDPProbe(func(ev *session.Event) error {
		if ev.Type != session.EventBindUDP {
			return nil
		}
		// A datagram filter plays a UDP server; Emulate is for streams.
		if err := ev.Conn.Emulate(upper); !errors.Is(err, session.ErrNotSupported) {
			return fmt.Errorf("Emulate at a UDP bind: %v, want ErrNotSupported", err)
		}
		if err := ev.Conn.AttachDatagramFilter(all, session.PriorityMiddle); err != nil {
			return err
		}
		return ev.Conn.AttachDatagramFilterWithDestination(one, session.PriorityNAT, netip.AddrPortFrom(server2IP.Addr(), 0))
	})
	tb := newTestbed(t, dgramPolicy, withFilter("probe", probe))
	client := openUDP(t, tb.Client, 6000)
	server, server2 := openUDP(t, tb.Server, 7000), openUDP(t, tb.Server2, 7000)
	res := udpBind(t, tb.Session(t), 6000, "dgram", session.AllowMultiple|session.Bidirectional)
	for _, s := range []struct {
		sock *udpSock
		addr netip.Addr
	}{{server, serverIP.Addr()}, {server2, server2IP.Addr()}} {
		peer := netip.AddrPortFrom(s.addr, 7000)
		s.sock.send(res.Proxy, "hi")
		if !client.gets("hi", peer) {
			t.Fatalf("no datagram from %v", peer)
		}
		client.send(peer, "hi back")
		if !s.sock.gets("HI BACK", res.Proxy) {
			t.Errorf("%v did not get the filtered answer", peer)
		}
		for range 2 {
			if d := fwxlab.Recv(t, all.seen); d.peer != peer {
				t.Errorf("the bind's filter saw peer %v, want %v", d.peer, peer)
			}
		}
	}
	var n int
	for len(one.seen) > 0 {
		if d := <-one.seen; d.peer.Addr() != server2IP.Addr() {
			t.Errorf("the filter for server2 saw %v", d.peer)
		}
		n++
	}
	if n != 2 {
		t.Errorf("the filter for server2 saw %d datagrams, want 2", n)
	}
}

// TestBindUDPSources: without AllowMultiple a UDP bind takes one source
// (the first peer) for as long as it lives, after its flow idled out too;
// with it, every source.
func TestBindUDPSources(t *testing.T) {
	for _, tt := range []struct {
		flags   session.Flags
		second  bool
		mode    string
		comment string
	}{
		{0, false, "fast", "one source"},
		{session.NoKernelMode, false, "user", "one source, user mode"},
		{session.AllowMultiple, true, "fast", "more than one source"},
	} {
		t.Run(tt.comment, func(t *testing.T) {
			tb := newTestbed(t, sdkPolicy)
			client := openUDP(t, tb.Client, 6000)
			server, server2 := openUDP(t, tb.Server, 7000), openUDP(t, tb.Server2, 7000)
			res := udpBind(t, tb.Session(t), 6000, "tftp", tt.flags)
			server.send(res.Proxy, "first")
			if !client.gets("first", netip.AddrPortFrom(serverIP.Addr(), 7000)) {
				t.Fatal("the first source was refused")
			}
			server2.send(res.Proxy, "second")
			want := none
			if tt.second {
				want = "second"
			}
			if !client.gets(want, netip.AddrPort{}) {
				t.Errorf("second source: want %q", want)
			}
			// The flows idle out; the bind lives on (no Timeout).
			tb.Clock.Advance(6 * time.Minute)
			tb.FW.Expire()
			server.send(res.Proxy, "again")
			if !client.gets("again", netip.AddrPortFrom(serverIP.Addr(), 7000)) {
				t.Error("the first source was refused after its flow idled out")
			}
			server2.send(res.Proxy, "second again")
			if want != none {
				want = "second again"
			}
			if !client.gets(want, netip.AddrPort{}) {
				t.Errorf("second source after idle: want %q", want)
			}
		})
	}
}

// TestBindUDPTimeout: a Timeout UDP bind closes unused after the pinhole
// timeout, and once used, when its flow idles out.
func TestBindUDPTimeout(t *testing.T) {
	t.Run("unused", func(t *testing.T) {
		tb := newTestbed(t, sdkPolicy)
		client := openUDP(t, tb.Client, 6000)
		server := openUDP(t, tb.Server, 7000)
		res := udpBind(t, tb.Session(t), 6000, "tftp", session.Timeout)
		tb.Clock.Advance(61 * time.Second)
		server.send(res.Proxy, "late")
		if !client.gets(none, netip.AddrPort{}) {
			t.Error("an unused Timeout bind took a datagram after the timeout")
		}
		if res.Conns[0].Live() {
			t.Error("the lapsed bind is live")
		}
	})
	t.Run("idle", func(t *testing.T) {
		tb := newTestbed(t, sdkPolicy)
		client := openUDP(t, tb.Client, 6000)
		server := openUDP(t, tb.Server, 7000)
		s := tb.Session(t)
		res := udpBind(t, s, 6000, "tftp", session.Timeout|session.NoKernelMode)
		server.send(res.Proxy, "on time")
		if !client.gets("on time", netip.AddrPort{}) {
			t.Fatal("refused within the timeout")
		}
		tb.Clock.Advance(4 * time.Minute) // past the pinhole timeout, not the flow's
		server.send(res.Proxy, "busy")
		if !client.gets("busy", netip.AddrPort{}) {
			t.Fatal("a Timeout bind in use closed before it was idle")
		}
		tb.Clock.Advance(6 * time.Minute)
		tb.FW.Expire()
		if res.Conns[0].Live() || s.Pinholes() != 0 {
			t.Error("the idle Timeout bind lives on")
		}
		server.send(res.Proxy, "after idle")
		if !client.gets(none, netip.AddrPort{}) {
			t.Error("an idle Timeout bind took a datagram")
		}
	})
}

// TestBindUDPBidirectional: without Bidirectional the client only
// receives on a bound port; with it, it may answer the peers that sent to
// it, on either path.
func TestBindUDPBidirectional(t *testing.T) {
	for _, tt := range []struct {
		flags  session.Flags
		answer bool
	}{
		{0, false},
		{session.NoKernelMode, false},
		{session.Bidirectional, true},
		{session.Bidirectional | session.NoKernelMode, true},
	} {
		t.Run(tt.flags.String(), func(t *testing.T) {
			tb := newTestbed(t, sdkPolicy)
			client := openUDP(t, tb.Client, 6000)
			server := openUDP(t, tb.Server, 7000)
			res := udpBind(t, tb.Session(t), 6000, "tftp", tt.flags)
			server.send(res.Proxy, "question")
			if !client.gets("question", netip.AddrPort{}) {
				t.Fatal("no datagram from the server")
			}
			client.send(netip.AddrPortFrom(serverIP.Addr(), 7000), "answer")
			want := none
			if tt.answer {
				want = "answer"
			}
			if !server.gets(want, netip.AddrPort{}) {
				t.Errorf("answer through the bound port: want %q", want)
			}
		})
	}
}

// TestBindUDPWithTCPHook: a filter that hooks accepted TCP connections of
// secondaries does not put UDP binds on the user-mode path (the grant's
// own transport decides), and the bind works.
func TestBindUDPWithTCPHook(t *testing.T) {
	f := &probeFilter{}
	tb := newTestbed(t, `
protocols:
  - {name: media, transport: udp, ports: [5004], filter: probe}
rules:
  - {name: out, action: allow, from: [internal], to: [external], protocols: [media]}
`, withFilter("probe", f))
	client := openUDP(t, tb.Client, 6000)
	server := openUDP(t, tb.Server, 7000)
	res := udpBind(t, tb.Session(t), 6000, "media", 0)
	server.send(res.Proxy, "rtp")
	if !client.gets("rtp", netip.AddrPort{}) {
		t.Fatal("no datagram through the bind")
	}
	tb.Log.WaitRecords(t, 1, map[string]string{"event": "allowed", "direction": "inbound", "path": "fast"})
}

// TestRedirectUDP: RedirectConnections for UDP with two addresses: the
// redirect's event comes once per address, when it is made; the filter
// attached then sees the flows; the server sees fwx's outside address, the
// client the internal address; each address serves one flow.
func TestRedirectUDP(t *testing.T) {
	rw := newRewriter()
	probe := newUDPProbe(func(ev *session.Event) error {
		if ev.Type == session.EventUDPDestination {
			return ev.Conn.AttachDatagramFilter(rw, session.PriorityMiddle)
		}
		return nil
	})
	tb := newTestbed(t, dgramPolicy, withFilter("probe", probe))
	peers1, peers2 := fwxlab.EchoUDP(t, tb.Server, 9000), fwxlab.EchoUDP(t, tb.Server2, 9000)
	dsts := []netip.AddrPort{netip.AddrPortFrom(serverIP.Addr(), 9000), netip.AddrPortFrom(server2IP.Addr(), 9000)}
	res, err := tb.Session(t).RedirectConnections(session.Redirect{ConnectAddrs: dsts, Transport: session.UDP, Protocol: "dgram"})
	if err != nil {
		t.Fatal(err)
	}
	if res.Internal.Addr() != fwIn.Addr() || res.Internal.Port()%2 != 0 || len(res.Actions) != 2 {
		t.Fatalf("internal %v, %d actions; want an even port on %v, 2", res.Internal, len(res.Actions), fwIn.Addr())
	}
	for i, dst := range dsts {
		if ev := probe.nextEvent(t, session.EventUDPDestination); ev.Addr != dst || !ev.Secondary {
			t.Errorf("redirect event %d for %v (secondary %v), want %v", i, ev.Addr, ev.Secondary, dst)
		}
	}
	for i, peers := range []<-chan netip.AddrPort{peers1, peers2} {
		internal := netip.AddrPortFrom(res.Internal.Addr(), res.Internal.Port()+uint16(i))
		c, err := tb.Client.DialUDP(netip.AddrPort{}, internal)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		if got := exchange(t, c, "via", 5*time.Second); got != "VIA" {
			t.Errorf("address %d: echo %q, want VIA", i, got)
		}
		if p := fwxlab.Recv(t, peers); p.Addr() != fwOut.Addr() {
			t.Errorf("server %d saw %v, want fwx's outside address", i, p)
		}
		// One flow per address: another socket is refused.
		other, err := tb.Client.DialUDP(netip.AddrPort{}, internal)
		if err != nil {
			t.Fatal(err)
		}
		defer other.Close()
		if got := exchange(t, other, "again", 300*time.Millisecond); got != none {
			t.Errorf("address %d served a second flow: %q", i, got)
		}
	}
	probe.noEvent(t, session.EventUDPDestination)
}

// TestRedirectConnectEventOnce: a user-mode TCP redirect raises its
// connect event when it is made, not again when the client connects; the
// data filter attached then carries the connection.
func TestRedirectConnectEventOnce(t *testing.T) {
	events := make(chan session.Event, 8)
	f := &probeFilter{events: events, onConnect: func(ev *session.Event) error {
		if ev.Type == session.EventConnectTCP {
			return ev.Conn.AttachDataFilter(upper, session.PriorityMiddle)
		}
		return nil
	}}
	tb := newTestbed(t, echoPolicy, withFilter("probe", f))
	fwxlab.EchoTCP(t, tb.Server, 7)
	res, err := tb.Session(t).RedirectConnections(session.Redirect{ConnectAddrs: []netip.AddrPort{netip.AddrPortFrom(serverIP.Addr(), 7)},
		Transport: session.TCP, Protocol: "echo"})
	if err != nil {
		t.Fatal(err)
	}
	if ev := fwxlab.Recv(t, events); ev.Type != session.EventConnectTCP {
		t.Fatalf("event %v, want connect-tcp", ev.Type)
	}
	c, err := tb.Client.DialTCP(lab.Context(t, 5*time.Second), res.Internal)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	c.Write([]byte("once"))
	buf := make([]byte, 4)
	if _, err := c.Read(buf); err != nil || string(buf) != "ONCE" {
		t.Errorf("echo %q (%v), want ONCE", buf, err)
	}
	select {
	case ev := <-events:
		if ev.Type == session.EventConnectTCP {
			t.Error("a second connect event for the redirected connection")
		}
	case <-time.After(200 * time.Millisecond):
	}
}

// TestRedirectPinnedPort: a redirect whose ProxyExternal names a port
// leaves from that port; a port in use cannot be pinned.
func TestRedirectPinnedPort(t *testing.T) {
	tb := newTestbed(t, sdkPolicy)
	peers := fwxlab.EchoUDP(t, tb.Server, 9000)
	pin := netip.AddrPortFrom(fwOut.Addr(), 40002)
	s := tb.Session(t)
	res, err := s.RedirectConnections(session.Redirect{ConnectAddrs: []netip.AddrPort{netip.AddrPortFrom(serverIP.Addr(), 9000)},
		ProxyExternal: pin, Transport: session.UDP, Protocol: "tftp"})
	if err != nil {
		t.Fatal(err)
	}
	_, err = s.AllowFutureConnect(session.FutureConnect{Addr: netip.AddrPortFrom(server2IP.Addr(), 9000), ProxyExternal: pin,
		Transport: session.UDP, Protocol: "tftp"})
	if !errors.Is(err, session.ErrAddressInUse) {
		t.Errorf("pinning a pinned port: %v, want ErrAddressInUse", err)
	}
	_, err = s.RedirectConnections(session.Redirect{ConnectAddrs: []netip.AddrPort{netip.AddrPortFrom(serverIP.Addr(), 1), netip.AddrPortFrom(serverIP.Addr(), 2)},
		ProxyExternal: netip.AddrPortFrom(fwOut.Addr(), 40004), Transport: session.UDP, Protocol: "tftp"})
	if !errors.Is(err, session.ErrInvalidArgument) {
		t.Errorf("pinning a port for two addresses: %v, want ErrInvalidArgument", err)
	}
	c, err := tb.Client.DialUDP(netip.AddrPort{}, res.Internal)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if got := exchange(t, c, "pinned", 5*time.Second); got != "pinned" {
		t.Fatalf("echo %q", got)
	}
	if p := fwxlab.Recv(t, peers); p != pin {
		t.Errorf("server saw %v, want the pinned %v", p, pin)
	}
}

// TestFutureConnectUDPUserMode: a UDP future connect with NoKernelMode
// takes the user-mode path.
func TestFutureConnectUDPUserMode(t *testing.T) {
	tb := newTestbed(t, sdkPolicy)
	fwxlab.EchoUDP(t, tb.Server, 7777)
	dst := netip.AddrPortFrom(serverIP.Addr(), 7777)
	if _, err := tb.Session(t).AllowFutureConnect(session.FutureConnect{Addr: dst, Transport: session.UDP, Protocol: "tftp",
		Flags: session.NoKernelMode}); err != nil {
		t.Fatal(err)
	}
	c, err := tb.Client.DialUDP(netip.AddrPort{}, dst)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if got := exchange(t, c, "future", 5*time.Second); got != "future" {
		t.Fatalf("echo %q", got)
	}
	// The flow is logged with the rule that lets the client use tftp.
	tb.Log.WaitRecords(t, 1, map[string]string{"event": "allowed", "destination": dst.String(), "path": "user", "rule": "ftp-out"})
}

// TestDataFilterFactoryUDP: a factory for EventUDPDestination puts a
// datagram filter on the client's flows with a peer, with no hook and no
// flag; one for EventBindUDP on the ports bound at an address.
func TestDataFilterFactoryUDP(t *testing.T) {
	t.Run("udp-destination", func(t *testing.T) {
		tb := newTestbed(t, "")
		fwxlab.EchoUDP(t, tb.Server, 8000)
		dst := netip.AddrPortFrom(serverIP.Addr(), 8000)
		rw := newRewriter()
		a, err := tb.Session(t).SetDataFilterFactory(session.FactoryRequest{Event: session.EventUDPDestination, Addr: dst,
			DatagramFactory: func(*session.Connection) (session.DatagramFilter, error) { return rw, nil }, Priority: session.PriorityMiddle})
		if err != nil {
			t.Fatal(err)
		}
		c, err := tb.Client.DialUDP(netip.AddrPort{}, dst)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		if got := exchange(t, c, "abc", 5*time.Second); got != "ABC" {
			t.Errorf("with the factory: echo %q, want ABC", got)
		}
		if err := a.Cancel(); err != nil {
			t.Fatal(err)
		}
		d, err := tb.Client.DialUDP(netip.AddrPort{}, dst)
		if err != nil {
			t.Fatal(err)
		}
		defer d.Close()
		if got := exchange(t, d, "abc", 5*time.Second); got != "abc" {
			t.Errorf("after Cancel: echo %q, want abc (fast path)", got)
		}
	})
	t.Run("bind-udp", func(t *testing.T) {
		tb := newTestbed(t, sdkPolicy)
		rw := newRewriter()
		s := tb.Session(t)
		if _, err := s.SetDataFilterFactory(session.FactoryRequest{Event: session.EventBindUDP, Addr: netip.AddrPortFrom(fwOut.Addr(), 0),
			DatagramFactory: func(*session.Connection) (session.DatagramFilter, error) { return rw, nil }, Priority: session.PriorityMiddle}); err != nil {
			t.Fatal(err)
		}
		client := openUDP(t, tb.Client, 6000)
		server := openUDP(t, tb.Server, 7000)
		res := udpBind(t, s, 6000, "tftp", session.Bidirectional)
		server.send(res.Proxy, "in")
		if !client.gets("in", netip.AddrPort{}) {
			t.Fatal("nothing through the bind")
		}
		client.send(netip.AddrPortFrom(serverIP.Addr(), 7000), "out")
		if !server.gets("OUT", res.Proxy) {
			t.Error("the factory's filter is not on the bind")
		}
	})
	t.Run("wrong factory", func(t *testing.T) {
		tb := newTestbed(t, "")
		_, err := tb.Session(t).SetDataFilterFactory(session.FactoryRequest{Event: session.EventUDPDestination,
			Factory: func(*session.Connection) (session.DataFilter, error) { return upper, nil }})
		if !errors.Is(err, session.ErrInvalidArgument) {
			t.Errorf("a stream factory for a UDP event: %v, want ErrInvalidArgument", err)
		}
	})
}

// TestIncreaseReceiveBuffer: a user-mode UDP connection queues 32 KiB for
// its filters and drops the rest of a burst; one granted with
// IncreaseReceiveBuffer (BindForClient, or RetroactiveAllowBind) queues
// 64 KiB.
func TestIncreaseReceiveBuffer(t *testing.T) {
	const burst, size = 40, 1400 // 56000 bytes
	for _, tt := range []struct {
		grant string
		flags session.Flags
		drops bool
	}{
		{"bind", 0, true},
		{"bind", session.IncreaseReceiveBuffer, false},
		{"retroactive", 0, true},
		{"retroactive", session.IncreaseReceiveBuffer, false},
	} {
		t.Run(tt.grant+"/"+tt.flags.String(), func(t *testing.T) {
			release := make(chan struct{})
			conns := make(chan *session.Connection, 1)
			first := true
			gate := session.DatagramFilterFunc(func(c *session.Connection, d *session.Datagram) session.Verdict {
				if first {
					first = false
					conns <- c
					<-release
				}
				return session.Pass
			})
			probe := newUDPProbe(func(ev *session.Event) error {
				if ev.Type == session.EventBindUDP {
					return ev.Conn.AttachDatagramFilter(gate, session.PriorityMiddle)
				}
				return nil
			})
			tb := newTestbed(t, dgramPolicy, withFilter("probe", probe))
			client := openUDP(t, tb.Client, 6000)
			server := openUDP(t, tb.Server, 7000)
			var dst netip.AddrPort // where the server's burst goes
			if tt.grant == "bind" {
				dst = udpBind(t, tb.Session(t), 6000, "dgram", tt.flags).Proxy
			} else {
				primary := openUDP(t, tb.Server, 9000)
				client.send(netip.AddrPortFrom(serverIP.Addr(), 9000), "request")
				_, dst = primary.recv(5 * time.Second)
				if _, err := tb.Session(t).RetroactiveAllowBind(session.RetroactiveBind{External: dst, Transport: session.UDP,
					Protocol: "dgram", Flags: tt.flags}); err != nil {
					t.Fatal(err)
				}
			}
			msg := string(bytes.Repeat([]byte{'x'}, size))
			// The first datagram holds the filter; the burst comes behind it.
			server.send(dst, msg)
			c := fwxlab.Recv(t, conns)
			for range burst - 1 {
				server.send(dst, msg)
			}
			deadline := time.Now().Add(5 * time.Second)
			var waiting int
			var dropped uint64
			for time.Now().Before(deadline) {
				if waiting, dropped = c.ReceiveBuffer(); waiting+int(dropped) == burst-1 {
					break
				}
				time.Sleep(5 * time.Millisecond)
			}
			close(release)
			if tt.drops != (dropped > 0) || waiting+int(dropped) != burst-1 {
				t.Errorf("%d waiting, %d dropped; want drops: %v", waiting, dropped, tt.drops)
			}
			got := 0
			for client.gets(msg, netip.AddrPort{}) {
				got++
				if got == 1+waiting {
					break
				}
			}
			if got != 1+waiting {
				t.Errorf("the client got %d datagrams, want the %d that were not dropped", got, 1+waiting)
			}
		})
	}
}

// TestRetroactiveAllowBind: a permission on the client's own mapping lets
// a peer the mapping never sent to reach it, under the strictest
// filtering, once (one source), for as long as it lives.
func TestRetroactiveAllowBind(t *testing.T) {
	probe := newUDPProbe(nil)
	tb := newTestbed(t, dgramPolicy+"options: {filtering: address-and-port-dependent}\n", withFilter("probe", probe))
	server := openUDP(t, tb.Server, 9000)
	other := openUDP(t, tb.Server, 9001)
	stranger := openUDP(t, tb.Server2, 9001)
	client := openUDP(t, tb.Client, 0)
	client.send(netip.AddrPortFrom(serverIP.Addr(), 9000), "request")
	_, ext := server.recv(5 * time.Second)
	ev := probe.nextEvent(t, session.EventUDPDestination)
	if ev.Conn.External() != ext {
		t.Fatalf("connection's external endpoint %v, the server saw %v", ev.Conn.External(), ext)
	}
	other.send(ext, "before")
	if !client.gets(none, netip.AddrPort{}) {
		t.Fatal("the filtering let a datagram in")
	}
	s := tb.Session(t)
	_, err := s.RetroactiveAllowBind(session.RetroactiveBind{External: netip.AddrPortFrom(fwOut.Addr(), 1), Transport: session.UDP, Protocol: "dgram"})
	if !errors.Is(err, session.ErrNotFound) {
		t.Errorf("a port the client does not hold: %v, want ErrNotFound", err)
	}
	type ctxKey struct{}
	rb, err := s.RetroactiveAllowBind(session.RetroactiveBind{External: ext, Transport: session.UDP, Protocol: "dgram",
		Flags: session.Bidirectional, IPFilter: session.NewIPFilter(serverIP.Addr()), Context: ctxKey{}, Primary: ev.Conn})
	if err != nil {
		t.Fatal(err)
	}
	if ev := probe.nextEvent(t, session.EventBindUDP); ev.Conn != rb || ev.Addr != ext {
		t.Errorf("bind event for %v, want the permission on %v", ev.Addr, ext)
	}
	stranger.send(ext, "stranger")
	if !client.gets(none, netip.AddrPort{}) {
		t.Error("a host the IP filter leaves out got in")
	}
	other.send(ext, "reply")
	if !client.gets("reply", netip.AddrPortFrom(serverIP.Addr(), 9001)) {
		t.Fatal("the permitted peer did not get through")
	}
	if ev := probe.nextEvent(t, session.EventUDPDestination); ev.Conn.Peer() != netip.AddrPortFrom(serverIP.Addr(), 9001) || ev.Context != (ctxKey{}) || !ev.Secondary {
		t.Errorf("event for peer %v context %v secondary %v; want the new peer, the permission's context", ev.Conn.Peer(), ev.Context, ev.Secondary)
	}
	client.send(netip.AddrPortFrom(serverIP.Addr(), 9001), "ack")
	if !other.gets("ack", ext) {
		t.Error("the client could not answer the permitted peer (Bidirectional)")
	}
	// The flow is logged with the rule of the connection the permission
	// was negotiated on.
	tb.Log.WaitRecords(t, 1, map[string]string{"event": "allowed", "direction": "inbound", "client": "198.51.100.2:9001", "rule": "dgram-out", "opened_by": "probe"})
	// One source: the server's other ports stay out.
	server.send(ext, "from 9000 is the primary flow")
	client.recv(5 * time.Second)
	third := openUDP(t, tb.Server, 9002)
	third.send(ext, "third")
	if !client.gets(none, netip.AddrPort{}) {
		t.Error("a second source got in without AllowMultiple")
	}
	rb.Kill()
	if s.Pinholes() != 0 {
		t.Errorf("%d pinholes after Kill", s.Pinholes())
	}
}

// TestRetroactiveAllowBindTimeout: with Timeout, a permission on the
// client's mapping lapses unused after the pinhole timeout, and once used
// closes when its flow idles out, though the mapping lives on.
func TestRetroactiveAllowBindTimeout(t *testing.T) {
	for _, used := range []bool{false, true} {
		t.Run(fmt.Sprint("used=", used), func(t *testing.T) {
			tb := newTestbed(t, dgramPolicy+"options: {filtering: address-and-port-dependent}\n", withFilter("probe", newUDPProbe(nil)))
			server, other := openUDP(t, tb.Server, 9000), openUDP(t, tb.Server, 9001)
			client := openUDP(t, tb.Client, 0)
			keepAlive := func() { // the client's own flow keeps the mapping
				client.send(netip.AddrPortFrom(serverIP.Addr(), 9000), "keep")
				server.recv(5 * time.Second)
			}
			client.send(netip.AddrPortFrom(serverIP.Addr(), 9000), "request")
			_, ext := server.recv(5 * time.Second)
			rb, err := tb.Session(t).RetroactiveAllowBind(session.RetroactiveBind{External: ext, Transport: session.UDP,
				Protocol: "dgram", Flags: session.Timeout, IPFilter: session.NewIPFilter(serverIP.Addr())})
			if err != nil {
				t.Fatal(err)
			}
			if !used {
				tb.Clock.Advance(61 * time.Second)
				other.send(ext, "late")
				if !client.gets(none, netip.AddrPort{}) || rb.Live() {
					t.Error("an unused Timeout permission outlived the pinhole timeout")
				}
				return
			}
			other.send(ext, "on time")
			if !client.gets("on time", netip.AddrPort{}) {
				t.Fatal("refused within the timeout")
			}
			tb.Clock.Advance(4 * time.Minute) // past the pinhole timeout, not the flow's
			keepAlive()
			other.send(ext, "busy")
			if !client.gets("busy", netip.AddrPort{}) {
				t.Fatal("a Timeout permission in use closed before it was idle")
			}
			tb.Clock.Advance(3 * time.Minute)
			keepAlive()
			tb.Clock.Advance(3 * time.Minute) // the permitted flow idled out; the mapping lives
			keepAlive()
			tb.FW.Expire()
			other.send(ext, "after idle")
			if !client.gets(none, netip.AddrPort{}) || rb.Live() {
				t.Error("a Timeout permission lived on after its flow idled out")
			}
		})
	}
}

// TestEstablishedEventUDP: the session filter given to a UDP grant
// receives the established-connection event, with the caller's context,
// when the grant's flow starts: a bound port's first peer, a redirected
// client's first datagram.
func TestEstablishedEventUDP(t *testing.T) {
	tb := newTestbed(t, sdkPolicy)
	s := tb.Session(t)
	type ctxKey struct{ name string }
	rec := newRecorder()
	openUDP(t, tb.Client, 6000)
	server := openUDP(t, tb.Server, 7000)
	res := bind(t, s, session.BindRequest{ClientAddrs: []netip.AddrPort{clientAt(6000)}, Transport: session.UDP,
		Protocol: "tftp", Notify: rec, Context: ctxKey{"bind"}})
	server.send(res.Proxy, "to the bound port")
	if ev := fwxlab.Recv(t, rec.ch); ev.Type != session.EventEstablishedConnection || ev.Context != (ctxKey{"bind"}) ||
		ev.Remote != netip.AddrPortFrom(serverIP.Addr(), 7000) || ev.Conn != res.Conns[0] {
		t.Errorf("event %v context %v remote %v; want established, bind, the server's 7000", ev.Type, ev.Context, ev.Remote)
	}
	fwxlab.EchoUDP(t, tb.Server, 9000)
	dst := netip.AddrPortFrom(serverIP.Addr(), 9000)
	red, err := s.RedirectConnections(session.Redirect{ConnectAddrs: []netip.AddrPort{dst}, Transport: session.UDP,
		Protocol: "tftp", Notify: rec, Context: ctxKey{"redirect"}})
	if err != nil {
		t.Fatal(err)
	}
	c, err := tb.Client.DialUDP(netip.AddrPort{}, red.Internal)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	exchange(t, c, "via", 5*time.Second)
	if ev := fwxlab.Recv(t, rec.ch); ev.Context != (ctxKey{"redirect"}) || ev.Remote != dst {
		t.Errorf("event context %v remote %v; want redirect, %v", ev.Context, ev.Remote, dst)
	}
}

// TestSecondarySettings: a grant's flows carry the filter_settings of the
// rule that let the client use the grant's protocol, inbound ones too.
func TestSecondarySettings(t *testing.T) {
	probe := newUDPProbe(nil)
	schema := func(c *fwx.Config) {
		c.Filters = &filters.Registry{}
		c.Filters.Register("probe", func() session.Filter { return probe }, policy.Setting{Name: "mode", Type: policy.StringSetting})
	}
	tb := newTestbed(t, `
protocols:
  - {name: dgram, transport: udp, ports: [9000], filter: probe}
rules:
  - {name: dgram-out, action: allow, from: [internal], to: [external], protocols: [dgram], filter_settings: {mode: strict}}
options: {filtering: address-and-port-dependent}
`, schema)
	server, other := openUDP(t, tb.Server, 9000), openUDP(t, tb.Server, 9001)
	client := openUDP(t, tb.Client, 0)
	client.send(netip.AddrPortFrom(serverIP.Addr(), 9000), "request")
	_, ext := server.recv(5 * time.Second)
	primary := probe.nextEvent(t, session.EventUDPDestination).Conn
	if _, err := tb.Session(t).RetroactiveAllowBind(session.RetroactiveBind{External: ext, Transport: session.UDP,
		Protocol: "dgram", Primary: primary}); err != nil {
		t.Fatal(err)
	}
	other.send(ext, "answer")
	secondary := probe.nextEvent(t, session.EventUDPDestination).Conn
	for _, c := range []*session.Connection{primary, secondary} {
		if mode, _ := c.Settings().String("mode"); mode != "strict" {
			t.Errorf("%v connection (inbound %v): mode %q, want the rule's strict", c.Peer(), c.Inbound(), mode)
		}
	}
}

// TestBindSetIPFilter: a port bound for nobody (an empty IP filter, as a
// SIP filter binds media ports before the answer names the peer) takes
// the peer SetIPFilter names from then on, and only it; LastActive tells
// when the port last carried a packet.
func TestBindSetIPFilter(t *testing.T) {
	tb := newTestbed(t, sdkPolicy)
	client := openUDP(t, tb.Client, 6000)
	server, server2 := openUDP(t, tb.Server, 7000), openUDP(t, tb.Server2, 7000)
	res := bind(t, tb.Session(t), session.BindRequest{ClientAddrs: []netip.AddrPort{clientAt(6000)}, Transport: session.UDP,
		Protocol: "tftp", IPFilter: &session.IPFilter{}})
	c := res.Conns[0]
	server.send(res.Proxy, "before")
	if !client.gets(none, netip.AddrPort{}) {
		t.Fatal("a port bound for nobody took a datagram")
	}
	if !c.LastActive().IsZero() {
		t.Errorf("LastActive %v with no flow, want zero", c.LastActive())
	}
	if err := c.SetIPFilter(session.NewIPFilter(server2IP.Addr())); err != nil {
		t.Fatal(err)
	}
	server.send(res.Proxy, "not the peer")
	server2.send(res.Proxy, "the peer")
	if !client.gets("the peer", netip.AddrPortFrom(server2IP.Addr(), 7000)) || !client.gets(none, netip.AddrPort{}) {
		t.Error("after SetIPFilter: want the named peer's datagram only")
	}
	if got := c.LastActive(); !got.Equal(tb.Clock.Now()) {
		t.Errorf("LastActive %v, want the clock's %v", got, tb.Clock.Now())
	}
	c.Kill()
	if err := c.SetIPFilter(nil); !errors.Is(err, session.ErrTerminating) {
		t.Errorf("SetIPFilter after Kill: %v, want ErrTerminating", err)
	}
}

// TestRedirectFlags: a redirect serves one connection, several with
// AllowMultiple, none after the pinhole timeout with Timeout; with
// NoKernelMode its connections take the user-mode path.
func TestRedirectFlags(t *testing.T) {
	for _, tt := range []struct {
		flags   session.Flags
		advance time.Duration
		want    []bool
		path    string
	}{
		{0, 0, []bool{true, false}, "fast"},
		{session.AllowMultiple, 0, []bool{true, true, true}, "fast"},
		{session.Timeout, 59 * time.Second, []bool{true}, "fast"},
		{session.Timeout, 61 * time.Second, []bool{false}, ""},
		{session.NoKernelMode | session.AllowMultiple, 0, []bool{true, true}, "user"},
	} {
		t.Run(tt.flags.String()+"/"+tt.advance.String(), func(t *testing.T) {
			tb := newTestbed(t, sdkPolicy)
			fwxlab.EchoTCP(t, tb.Server, 7777)
			res, err := tb.Session(t).RedirectConnections(session.Redirect{ConnectAddrs: []netip.AddrPort{netip.AddrPortFrom(serverIP.Addr(), 7777)},
				Transport: session.TCP, Protocol: "ftp", Flags: tt.flags})
			if err != nil {
				t.Fatal(err)
			}
			tb.Clock.Advance(tt.advance)
			for i, want := range tt.want {
				if got := tb.clientConnects(t, res.Internal); got != want {
					t.Errorf("connection %d: connected=%v, want %v", i+1, got, want)
				}
			}
			if tt.path != "" {
				// Logged with the rule that lets the client use the
				// protocol (no Primary).
				tb.Log.WaitRecords(t, 1, map[string]string{"event": "allowed", "destination": "198.51.100.2:7777", "path": tt.path, "rule": "ftp-out"})
			}
		})
	}
}
