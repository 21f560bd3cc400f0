package session_test

import (
	"bytes"
	"errors"
	"net/netip"
	"syscall"
	"testing"
	"time"

	"github.com/fwx-dev/fwx"
	"github.com/fwx-dev/fwx/netstack/lab"
	"github.com/fwx-dev/fwx/netstack/lab/fwxlab"
	"github.com/fwx-dev/fwx/session"
)

// The SDK's grants for an IPv6 session: a dual-stack client has a session
// per address, and its grants live in that address's family.

func session6(t *testing.T, tb *testbed) *session.Session {
	t.Helper()
	s := tb.FW.Session(fwxlab.ClientAddr6)
	if s == nil {
		t.Fatal("no session for the client's IPv6 address")
	}
	return s
}

// TestBindForClientIPv6: a bind for an IPv6 session is on fwx's IPv6
// outside address, and the server reaches the client through it.
func TestBindForClientIPv6(t *testing.T) {
	tb := newTestbed6(t, sdkPolicy)
	peers := fwxlab.EchoTCPOn(t, tb.Client, netip.AddrPortFrom(netip.IPv6Unspecified(), 5001))
	res := bind(t, session6(t, tb), session.BindRequest{
		ClientAddrs: []netip.AddrPort{netip.AddrPortFrom(fwxlab.ClientAddr6, 5001)},
		IPFilter:    session.NewIPFilter(fwxlab.ServerAddr6),
	})
	if res.Proxy.Addr() != fwxlab.FWOutside6 {
		t.Fatalf("bound %v, want on %v", res.Proxy, fwxlab.FWOutside6)
	}
	if !tb.serverConnects(t, "server", res.Proxy, true) {
		t.Fatal("the server could not connect to the bound port")
	}
	if got := fwxlab.Recv(t, peers); got.Addr() != fwxlab.ServerAddr6 {
		t.Errorf("client saw %v, want the server %v", got, fwxlab.ServerAddr6)
	}
}

// TestAllowFutureConnectIPv6: an IPv6 client may connect where the policy
// forbids, once.
func TestAllowFutureConnectIPv6(t *testing.T) {
	tb := newTestbed6(t, sdkPolicy)
	fwxlab.EchoTCPOn(t, tb.Server, netip.AddrPortFrom(netip.IPv6Unspecified(), 7777))
	dst := netip.AddrPortFrom(fwxlab.ServerAddr6, 7777)
	if tb.clientConnects(t, dst) {
		t.Fatal("the policy let the client through")
	}
	if _, err := session6(t, tb).AllowFutureConnect(session.FutureConnect{Addr: dst, Transport: session.TCP, Protocol: "ftp"}); err != nil {
		t.Fatal(err)
	}
	for i, want := range []bool{true, false} {
		if got := tb.clientConnects(t, dst); got != want {
			t.Errorf("connection %d: connected=%v, want %v", i+1, got, want)
		}
	}
}

// TestRedirectConnectionsIPv6: the client connects to fwx's IPv6 inside
// address and reaches the connect address from fwx's IPv6 outside one.
func TestRedirectConnectionsIPv6(t *testing.T) {
	tb := newTestbed6(t, sdkPolicy)
	peers := fwxlab.EchoTCPOn(t, tb.Server2, netip.AddrPortFrom(netip.IPv6Unspecified(), 8888))
	res, err := session6(t, tb).RedirectConnections(session.Redirect{
		ConnectAddrs: []netip.AddrPort{netip.AddrPortFrom(fwxlab.Server26, 8888)},
		Transport:    session.TCP, Protocol: "ftp",
	})
	if err != nil {
		t.Fatal(err)
	}
	if res.Internal.Addr() != fwxlab.FWInside6 {
		t.Fatalf("internal address %v, want on %v", res.Internal, fwxlab.FWInside6)
	}
	c, err := tb.Client.DialTCP(lab.Context(t, 5*time.Second), res.Internal)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	fwxlab.RoundTrip(t, c, "redirected over IPv6")
	if got := fwxlab.Recv(t, peers); got.Addr() != fwxlab.FWOutside6 {
		t.Errorf("server saw %v, want %v", got, fwxlab.FWOutside6)
	}
}

// TestSDKErrorsIPv6: a grant may not cross families, and ProxyExternal
// must name one of fwx's addresses of the session's family.
func TestSDKErrorsIPv6(t *testing.T) {
	tb := newTestbed6(t, sdkPolicy)
	s := session6(t, tb)
	if err := futureErr(s, session.FutureConnect{Addr: netip.AddrPortFrom(fwxlab.ServerAddr6, 1), Transport: session.TCP, Protocol: "ftp",
		ProxyExternal: netip.AddrPortFrom(fwOut.Addr(), 0)}); !errors.Is(err, session.ErrAddressNotAvailable) {
		t.Errorf("IPv6 grant leaving from an IPv4 address: %v, want ErrAddressNotAvailable", err)
	}
	if err := futureErr(s, session.FutureConnect{Addr: netip.AddrPortFrom(serverIP.Addr(), 1), Transport: session.TCP, Protocol: "ftp"}); err == nil {
		t.Error("an IPv6 session was let connect to an IPv4 address")
	}
	if err := futureErr(tb.Session(t), session.FutureConnect{Addr: netip.AddrPortFrom(serverIP.Addr(), 1), Transport: session.TCP, Protocol: "ftp",
		ProxyExternal: netip.AddrPortFrom(fwxlab.FWOutside6, 0)}); !errors.Is(err, session.ErrAddressNotAvailable) {
		t.Errorf("IPv4 grant leaving from an IPv6 address: %v, want ErrAddressNotAvailable", err)
	}
}

// TestProxyExternalPool: with several outside addresses, a client's flows
// all leave from the one it is paired with (RFC 4787 REQ-2), and a grant's
// ProxyExternal picks another; an address fwx does not own is refused.
func TestProxyExternalPool(t *testing.T) {
	second := netip.MustParsePrefix("198.51.100.9/24")
	tb := newTestbed(t, sdkPolicy+`
  - {name: out, action: allow, from: [internal], to: [external], protocols: [any]}
`, func(c *fwx.Config) { c.OutsideAddrs = []netip.Prefix{second} })
	peers := fwxlab.EchoTCP(t, tb.Server, 7777)
	paired, ok := tb.FW.ExternalFor(clientIP.Addr())
	if !ok {
		t.Fatal("the client is paired with no outside address")
	}
	for range 3 {
		if !tb.clientConnects(t, netip.AddrPortFrom(serverIP.Addr(), 7777)) {
			t.Fatal("the client could not connect")
		}
		if got := fwxlab.Recv(t, peers); got.Addr() != paired {
			t.Errorf("server saw %v, want the paired address %v", got, paired)
		}
	}
	other := fwOut.Addr()
	if paired == other {
		other = second.Addr()
	}
	pinned := fwxlab.EchoTCP(t, tb.Server, 7778)
	s := tb.Session(t)
	if _, err := s.AllowFutureConnect(session.FutureConnect{Addr: netip.AddrPortFrom(serverIP.Addr(), 7778), Transport: session.TCP,
		Protocol: "ftp", ProxyExternal: netip.AddrPortFrom(other, 0)}); err != nil {
		t.Fatal(err)
	}
	c, err := tb.Client.DialTCP(lab.Context(t, 5*time.Second), netip.AddrPortFrom(serverIP.Addr(), 7778))
	if err != nil {
		t.Fatal(err)
	}
	c.Close()
	if got := fwxlab.Recv(t, pinned); got.Addr() != other {
		t.Errorf("the grant's connection came from %v, want ProxyExternal's %v", got.Addr(), other)
	}
	if err := futureErr(s, session.FutureConnect{Addr: netip.AddrPortFrom(serverIP.Addr(), 7779), Transport: session.TCP, Protocol: "ftp",
		ProxyExternal: netip.MustParseAddrPort("198.51.100.200:0")}); !errors.Is(err, session.ErrAddressNotAvailable) {
		t.Errorf("ProxyExternal on an address fwx does not own: %v, want ErrAddressNotAvailable", err)
	}
}

// TestIPv6UDPDatagramFilter: over IPv6 too, a datagram filter gets each
// datagram whole, those larger than the MTU reassembled, and what it
// passes on leaves in fragments fwx makes as an IPv6 source must.
func TestIPv6UDPDatagramFilter(t *testing.T) {
	rw := newRewriter()
	probe := newUDPProbe(func(ev *session.Event) error {
		if ev.Type == session.EventUDPDestination {
			return ev.Conn.AttachDatagramFilter(rw, session.PriorityMiddle)
		}
		return nil
	})
	tb := &testbed{fwxlab.New(t, fwxlab.Options{Policy: dgramPolicy, IPv6: true, Filters: fwxlab.Registry("probe", probe)})}
	fwxlab.EchoUDPOn(t, tb.Server, netip.AddrPortFrom(netip.IPv6Unspecified(), 9000))
	c, err := tb.Client.DialUDP(netip.AddrPort{}, netip.AddrPortFrom(fwxlab.ServerAddr6, 9000))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	for _, n := range []int{5, 1400, 1500, 9000, 60000} {
		msg := string(bytes.Repeat([]byte{'a'}, n))
		toClient := tb.Inside.Stats().ToHosts
		if got := exchange(t, c, msg, 5*time.Second); got != string(bytes.Repeat([]byte{'A'}, n)) {
			t.Errorf("%d-byte datagram came back as %d bytes", n, len(got))
		}
		// 1500 bytes of payload and more need fragments at MTU 1500.
		want := uint64(n/1448 + 1)
		if d := fwxlab.CountAtLeast(func() uint64 { return tb.Inside.Stats().ToHosts - toClient }, want); n >= 1500 && d < want {
			t.Errorf("a %d-byte datagram reached the client in %d packets: not cut into fragments", n, d)
		}
	}
}

// TestIPv6UDPUserModeICMPErrors: an ICMPv6 port unreachable about a
// datagram of a user-mode UDP flow reaches the client that sent it,
// translated as on the fast path.
func TestIPv6UDPUserModeICMPErrors(t *testing.T) {
	probe := newUDPProbe(nil)
	tb := &testbed{fwxlab.New(t, fwxlab.Options{Policy: dgramPolicy, IPv6: true, Filters: fwxlab.Registry("probe", probe)})}
	c, err := tb.Client.DialUDP(netip.AddrPort{}, netip.AddrPortFrom(fwxlab.ServerAddr6, 9000)) // nobody listens
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
}

// TestIPv6UDPFilterForDestination: a datagram filter may be attached for
// one IPv6 peer (ISA's AttachDataFilterWithDestination), and it sees that
// peer's datagrams.
func TestIPv6UDPFilterForDestination(t *testing.T) {
	rw := newRewriter()
	probe := newUDPProbe(func(ev *session.Event) error {
		if ev.Type == session.EventUDPDestination {
			return ev.Conn.AttachDatagramFilterWithDestination(rw, session.PriorityMiddle, netip.AddrPortFrom(fwxlab.ServerAddr6, 0))
		}
		return nil
	})
	tb := &testbed{fwxlab.New(t, fwxlab.Options{Policy: dgramPolicy, IPv6: true, Filters: fwxlab.Registry("probe", probe)})}
	fwxlab.EchoUDPOn(t, tb.Server, netip.AddrPortFrom(netip.IPv6Unspecified(), 9000))
	c, err := tb.Client.DialUDP(netip.AddrPort{}, netip.AddrPortFrom(fwxlab.ServerAddr6, 9000))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if got := exchange(t, c, "hello", 5*time.Second); got != "HELLO" {
		t.Fatalf("echo came back as %q, want the filter's HELLO", got)
	}
	if d := fwxlab.Recv(t, rw.seen); d.peer != netip.AddrPortFrom(fwxlab.ServerAddr6, 9000) {
		t.Errorf("the filter saw peer %v", d.peer)
	}
}
