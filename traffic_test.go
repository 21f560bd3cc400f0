package fwx_test

import (
	"errors"
	"net"
	"net/netip"
	"syscall"
	"testing"
	"time"

	"gvisor.dev/gvisor/pkg/tcpip/header"

	"github.com/fwx-dev/fwx/nat"
	"github.com/fwx-dev/fwx/netstack/lab"
	"github.com/fwx-dev/fwx/netstack/lab/fwxlab"
)

func TestPing(t *testing.T) {
	tb := newTestbed(t, "")
	for _, c := range []struct {
		name string
		from *lab.Host
		to   netip.Addr
	}{
		{"fwx inside address", tb.Client, fwIn.Addr()},
		{"fwx outside address from inside", tb.Client, fwOut.Addr()},
		{"server through fwx", tb.Client, serverIP.Addr()},
		{"fwx outside address from outside", tb.Server, fwOut.Addr()},
	} {
		t.Run(c.name, func(t *testing.T) {
			got, err := c.from.Ping(lab.Context(t, 5*time.Second), c.to, 7, 1, []byte("ping"))
			if err != nil {
				t.Fatal(err)
			}
			if got != c.to {
				t.Errorf("reply from %v, want %v", got, c.to)
			}
		})
	}
}

// TestSecureNAT checks that TCP and UDP cross fwx and that the server sees
// fwx's outside address as the source, the client's port preserved.
func TestSecureNAT(t *testing.T) {
	tb := newTestbed(t, "")
	tcpPeers := fwxlab.EchoTCP(t, tb.Server, 8000)
	udpPeers := fwxlab.EchoUDP(t, tb.Server, 7000)
	src := netip.AddrPortFrom(clientIP.Addr(), 40000)

	c, err := tb.Client.DialTCPFrom(lab.Context(t, 5*time.Second), src, netip.AddrPortFrom(serverIP.Addr(), 8000))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	fwxlab.RoundTrip(t, c, "hello over tcp")
	if got := fwxlab.Recv(t, tcpPeers); got != netip.AddrPortFrom(fwOut.Addr(), 40000) {
		t.Errorf("server saw TCP from %v, want fwx's outside address and the client's port", got)
	}

	u, err := tb.Client.DialUDP(src, netip.AddrPortFrom(serverIP.Addr(), 7000))
	if err != nil {
		t.Fatal(err)
	}
	defer u.Close()
	fwxlab.RoundTrip(t, u, "hello over udp")
	if got := fwxlab.Recv(t, udpPeers); got != netip.AddrPortFrom(fwOut.Addr(), 40000) {
		t.Errorf("server saw UDP from %v, want %v", got, netip.AddrPortFrom(fwOut.Addr(), 40000))
	}
	if n := tb.FW.Flows(); n != 2 {
		t.Errorf("%d flows, want 2", n)
	}
}

// TestMappingReuse checks endpoint-independent mapping (RFC 4787 REQ-1):
// one client socket reaches two servers from the same external endpoint.
func TestMappingReuse(t *testing.T) {
	tb := newTestbed(t, "")
	p1, p2 := fwxlab.EchoUDP(t, tb.Server, 7000), fwxlab.EchoUDP(t, tb.Server2, 7000)
	c, err := tb.Client.ListenUDP(41000)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	for _, dst := range []netip.Addr{serverIP.Addr(), server2IP.Addr()} {
		if _, err := c.WriteTo([]byte("x"), net.UDPAddrFromAddrPort(netip.AddrPortFrom(dst, 7000))); err != nil {
			t.Fatal(err)
		}
	}
	a, b := fwxlab.Recv(t, p1), fwxlab.Recv(t, p2)
	if a != b || a.Addr() != fwOut.Addr() {
		t.Errorf("servers saw %v and %v; want one external endpoint on %v", a, b, fwOut.Addr())
	}
}

// TestPortParity checks that when two clients use the same source port, the
// second gets another external port of the same parity (RFC 4787 REQ-4).
func TestPortParity(t *testing.T) {
	tb := newTestbed(t, "")
	peers := fwxlab.EchoUDP(t, tb.Server, 7000)
	dst := netip.AddrPortFrom(serverIP.Addr(), 7000)
	var seen []netip.AddrPort
	for _, h := range []*lab.Host{tb.Client, tb.Client2} {
		u, err := h.DialUDP(netip.AddrPortFrom(h.Addr(), 40001), dst)
		if err != nil {
			t.Fatal(err)
		}
		defer u.Close()
		fwxlab.RoundTrip(t, u, "x")
		seen = append(seen, fwxlab.Recv(t, peers))
	}
	if seen[0].Port() != 40001 {
		t.Errorf("first client mapped to %v: port not preserved", seen[0])
	}
	if seen[1].Port() == 40001 || seen[1].Port()%2 != 1 {
		t.Errorf("second client mapped to %v: want another odd port", seen[1])
	}
}

// TestHairpin checks that two clients reach each other through their
// external endpoints and see each other's external endpoint as the source
// (RFC 4787 REQ-9, RFC 5382 REQ-8).
func TestHairpin(t *testing.T) {
	tb := newTestbed(t, "options: {filtering: endpoint-independent}\nrules:\n  - {name: out, action: allow, from: [internal], to: [external], protocols: [any]}\n")
	peers := fwxlab.EchoUDP(t, tb.Server, 7000)
	server := net.UDPAddrFromAddrPort(netip.AddrPortFrom(serverIP.Addr(), 7000))
	a, err := tb.Client.ListenUDP(42000)
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	b, err := tb.Client2.ListenUDP(42002)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	a.WriteTo([]byte("a"), server)
	extA := fwxlab.Recv(t, peers)
	b.WriteTo([]byte("b"), server)
	extB := fwxlab.Recv(t, peers)

	if _, err := a.WriteTo([]byte("hello b"), net.UDPAddrFromAddrPort(extB)); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 64)
	b.SetReadDeadline(time.Now().Add(5 * time.Second))
	for {
		n, from, err := b.ReadFrom(buf)
		if err != nil {
			t.Fatal(err)
		}
		if string(buf[:n]) != "hello b" {
			continue // the server's echo
		}
		if got := from.(*net.UDPAddr).AddrPort(); got != extA {
			t.Errorf("hairpinned packet from %v, want a's external endpoint %v", got, extA)
		}
		return
	}
}

// TestICMPErrorTranslation checks RFC 5508 REQ-4/5 with a real stack: a
// port-unreachable error from the server comes back to the client with the
// quoted header reverted, so the client's socket learns of it.
func TestICMPErrorTranslation(t *testing.T) {
	tb := newTestbed(t, "")
	src := netip.AddrPortFrom(clientIP.Addr(), 43000)
	dst := netip.AddrPortFrom(serverIP.Addr(), 9999) // nothing listens
	u, err := tb.Client.DialUDP(src, dst)
	if err != nil {
		t.Fatal(err)
	}
	defer u.Close()
	u.Write([]byte("anyone?"))
	// The error arrives asynchronously; the socket reports it on a later
	// call (see lab.Host.DialUDP).
	deadline := time.Now().Add(5 * time.Second)
	for {
		u.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
		_, err := u.Read(make([]byte, 16))
		if errors.Is(err, syscall.ECONNREFUSED) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no port unreachable reached the client socket (last error %v)", err)
		}
	}

	// The same from a raw inside address, to look at the bytes.
	raw := netip.AddrPortFrom(netip.MustParseAddr("10.0.0.9"), 43001)
	if err := tb.Inside.Inject(lab.UDPPacket(raw, dst, []byte("raw"))); err != nil {
		t.Fatal(err)
	}
	pkt := fwxlab.Recv(t, tb.Inside.Captured())
	p := nat.Parse(pkt)
	if err := lab.VerifyChecksums(pkt); err != nil {
		t.Fatalf("%v: %s", err, lab.PacketString(pkt))
	}
	q := p.Quoted()
	if p.Kind != nat.Error || p.ICMPCode != uint8(header.ICMPv4PortUnreachable) || p.Dst.Addr() != raw.Addr() ||
		q.Src != raw || q.Dst != dst || p.Src.Addr() != serverIP.Addr() {
		t.Errorf("got %s quoting %v -> %v; want port unreachable from %v to %v quoting %v -> %v",
			lab.PacketString(pkt), q.Src, q.Dst, serverIP.Addr(), raw.Addr(), raw, dst)
	}
}

// TestUnsolicitedInbound checks that nothing reaches the inside unasked:
// neither fwx's outside address nor the inside addresses themselves.
func TestUnsolicitedInbound(t *testing.T) {
	tb := newTestbed(t, "")
	peers := fwxlab.EchoTCP(t, tb.Client, 80)
	for _, dst := range []netip.AddrPort{
		netip.AddrPortFrom(fwOut.Addr(), 80),
		netip.AddrPortFrom(clientIP.Addr(), 80),
	} {
		c, err := tb.Server.DialTCP(lab.Context(t, 300*time.Millisecond), dst)
		if err == nil {
			c.Close()
			t.Errorf("connected to %v from the outside", dst)
		}
	}
	select {
	case p := <-peers:
		t.Errorf("inside listener accepted %v", p)
	default:
	}
	for _, dst := range []string{"198.51.100.1:80", "10.0.0.2:80"} {
		rec := tb.WaitDenied(t, 1, map[string]string{"event": "denied", "direction": "inbound", "destination": dst})[0]
		if rec["rule"] != "default-deny" {
			t.Errorf("denied record %v", rec)
		}
	}
}

func TestPublishedServer(t *testing.T) {
	tb := newTestbed(t, `
protocols:
  - {name: web-in, transport: tcp, ports: [8080], direction: inbound}
rules:
  - {name: out, action: allow, from: [internal], to: [external], protocols: [any]}
publish:
  - {name: www, protocol: web-in, listen: ":8080", server: "10.0.0.2:80"}
`)
	peers := fwxlab.EchoTCP(t, tb.Client, 80)
	c, err := tb.Server.DialTCP(lab.Context(t, 5*time.Second), netip.AddrPortFrom(fwOut.Addr(), 8080))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	fwxlab.RoundTrip(t, c, "published")
	if got := fwxlab.Recv(t, peers); got.Addr() != serverIP.Addr() {
		t.Errorf("inside server saw %v, want the outside client %v", got, serverIP.Addr())
	}
	rec := tb.Log.WaitRecords(t, 1, map[string]string{"event": "allowed", "direction": "inbound"})[0]
	if rec["rule"] != "www" || rec["translated_destination"] != "10.0.0.2:80" || rec["destination"] != "198.51.100.1:8080" {
		t.Errorf("log record %v", rec)
	}
}
