package fwx_test

import (
	"bytes"
	"errors"
	"net/netip"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"gvisor.dev/gvisor/pkg/tcpip/header"

	"github.com/fwx-dev/fwx"
	"github.com/fwx-dev/fwx/nat"
	"github.com/fwx-dev/fwx/netstack/lab"
	"github.com/fwx-dev/fwx/netstack/lab/fwxlab"
)

// IPv6 through fwx in the dual-stack lab: the fast path (NAT66), the
// user-mode path, fwx's own answers, fragments and publications.

func newTestbed6(t testing.TB, policyYAML string) *testbed {
	t.Helper()
	return &testbed{fwxlab.New(t, fwxlab.Options{Policy: policyYAML, IPv6: true})}
}

var (
	client6 = fwxlab.ClientAddr6
	server6 = fwxlab.ServerAddr6
	fwIn6   = fwxlab.FWInside6
	fwOut6  = fwxlab.FWOutside6
)

// TestIPv6SecureNAT checks that TCP and UDP over IPv6 cross fwx on the
// fast path, the server seeing fwx's IPv6 outside address and the client's
// port, while IPv4 goes on beside them.
func TestIPv6SecureNAT(t *testing.T) {
	tb := newTestbed6(t, "")
	tcpPeers := fwxlab.EchoTCPOn(t, tb.Server, netip.AddrPortFrom(netip.IPv6Unspecified(), 8000))
	udpPeers := fwxlab.EchoUDPOn(t, tb.Server, netip.AddrPortFrom(netip.IPv6Unspecified(), 7000))
	src := netip.AddrPortFrom(client6, 40000)
	c, err := tb.Client.DialTCPFrom(lab.Context(t, 5*time.Second), src, netip.AddrPortFrom(server6, 8000))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	fwxlab.RoundTrip(t, c, "hello over tcp6")
	if got := fwxlab.Recv(t, tcpPeers); got != netip.AddrPortFrom(fwOut6, 40000) {
		t.Errorf("server saw TCP from %v, want %v", got, netip.AddrPortFrom(fwOut6, 40000))
	}
	u, err := tb.Client.DialUDP(src, netip.AddrPortFrom(server6, 7000))
	if err != nil {
		t.Fatal(err)
	}
	defer u.Close()
	fwxlab.RoundTrip(t, u, "hello over udp6")
	if got := fwxlab.Recv(t, udpPeers); got != netip.AddrPortFrom(fwOut6, 40000) {
		t.Errorf("server saw UDP from %v, want %v", got, netip.AddrPortFrom(fwOut6, 40000))
	}
	// IPv4 beside it.
	v4 := fwxlab.EchoUDP(t, tb.Server, 7001)
	u4, err := tb.Client.DialUDP(netip.AddrPortFrom(clientIP.Addr(), 40000), netip.AddrPortFrom(serverIP.Addr(), 7001))
	if err != nil {
		t.Fatal(err)
	}
	defer u4.Close()
	fwxlab.RoundTrip(t, u4, "and over udp4")
	if got := fwxlab.Recv(t, v4); got != netip.AddrPortFrom(fwOut.Addr(), 40000) {
		t.Errorf("server saw UDP over IPv4 from %v", got)
	}
	rec := tb.Log.WaitRecords(t, 1, map[string]string{"event": "allowed", "protocol": "tcp"})[0]
	if rec["client"] != src.String() || rec["translated_source"] != netip.AddrPortFrom(fwOut6, 40000).String() {
		t.Errorf("log record %v", rec)
	}
}

// TestIPv6Ping pings fwx's own IPv6 addresses and a server through it.
func TestIPv6Ping(t *testing.T) {
	tb := newTestbed6(t, "")
	for _, c := range []struct {
		name string
		from *lab.Host
		to   netip.Addr
	}{
		{"fwx inside address", tb.Client, fwIn6},
		{"fwx outside address from inside", tb.Client, fwOut6},
		{"server through fwx", tb.Client, server6},
		{"fwx outside address from outside", tb.Server, fwOut6},
		{"server through fwx, 4000 bytes", tb.Client, server6},
	} {
		t.Run(c.name, func(t *testing.T) {
			payload := []byte("ping6")
			if c.name == "server through fwx, 4000 bytes" {
				payload = bytes.Repeat([]byte("fragmented ping6"), 250)
			}
			got, err := c.from.Ping(lab.Context(t, 5*time.Second), c.to, 7, 1, payload)
			if err != nil {
				t.Fatal(err)
			}
			if got != c.to {
				t.Errorf("reply from %v, want %v", got, c.to)
			}
		})
	}
}

// TestIPv6FragmentedUDP sends an 8 KiB UDP datagram each way over IPv6:
// the lab's stacks fragment it (IPv6 routers never do), fwx reassembles,
// translates and cuts it again.
func TestIPv6FragmentedUDP(t *testing.T) {
	tb := newTestbed6(t, "")
	fwxlab.EchoUDPOn(t, tb.Server, netip.AddrPortFrom(netip.IPv6Unspecified(), 7000))
	c, err := tb.Client.DialUDP(netip.AddrPortFrom(client6, 40000), netip.AddrPortFrom(server6, 7000))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	msg := bytes.Repeat([]byte("01234567"), 1024)
	toServer := tb.Outside.Stats().ToHosts
	c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := c.Write(msg); err != nil {
		t.Fatal(err)
	}
	got := make([]byte, 65536)
	n, err := c.Read(got)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got[:n], msg) {
		t.Fatalf("echo of %d bytes differs from the %d sent", n, len(msg))
	}
	if d := fwxlab.CountAtLeast(func() uint64 { return tb.Outside.Stats().ToHosts - toServer }, 6); d < 6 {
		t.Errorf("the server received %d packets, want at least 6 fragments", d)
	}
}

// TestIPv6UserMode sends a TCP connection over IPv6 through the user-mode
// path (a pass-through data filter): fwx's netstacks take IPv6 on both
// sides.
func TestIPv6UserMode(t *testing.T) {
	tb := &testbed{fwxlab.New(t, fwxlab.Options{Policy: benchPolicy, IPv6: true, Filters: fwxlab.Registry("pass", passFilter{})})}
	peers := fwxlab.EchoTCPOn(t, tb.Server, netip.AddrPortFrom(netip.IPv6Unspecified(), 5201))
	c, err := tb.Client.DialTCP(lab.Context(t, 5*time.Second), netip.AddrPortFrom(server6, 5201))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	fwxlab.RoundTrip(t, c, "through the user-mode path over IPv6")
	if got := fwxlab.Recv(t, peers); got.Addr() != fwOut6 {
		t.Errorf("server saw %v, want fwx's outside address %v", got, fwOut6)
	}
}

// TestIPv6PublishedServer publishes an inside IPv6 server on fwx's IPv6
// outside address.
func TestIPv6PublishedServer(t *testing.T) {
	tb := newTestbed6(t, `
protocols:
  - {name: web-in, transport: tcp, ports: [8080], direction: inbound}
rules:
  - {name: out, action: allow, from: [internal], to: [external], protocols: [any]}
publish:
  - {name: www6, protocol: web-in, listen: "[2001:db8:100::1]:8080", server: "[fd00::2]:80"}
`)
	peers := fwxlab.EchoTCPOn(t, tb.Client, netip.AddrPortFrom(netip.IPv6Unspecified(), 80))
	c, err := tb.Server.DialTCP(lab.Context(t, 5*time.Second), netip.AddrPortFrom(fwOut6, 8080))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	fwxlab.RoundTrip(t, c, "published over IPv6")
	if got := fwxlab.Recv(t, peers); got.Addr() != server6 {
		t.Errorf("inside server saw %v, want the outside client %v", got, server6)
	}
}

// TestIPv6Refusals checks fwx's own refusals over IPv6: a RST for a TCP
// port of its own, an ICMPv6 port unreachable for UDP.
func TestIPv6Refusals(t *testing.T) {
	tb := newTestbed6(t, "")
	if _, err := tb.Client.DialTCP(lab.Context(t, 5*time.Second), netip.AddrPortFrom(fwIn6, 22)); err == nil {
		t.Error("a connection to fwx's own port 22 succeeded")
	}
	u, err := tb.Client.DialUDP(netip.AddrPort{}, netip.AddrPortFrom(fwIn6, 9))
	if err != nil {
		t.Fatal(err)
	}
	defer u.Close()
	u.SetDeadline(time.Now().Add(5 * time.Second))
	u.Write([]byte("x"))
	if _, err := u.Read(make([]byte, 10)); !errors.Is(err, syscall.ECONNREFUSED) {
		t.Errorf("read after a datagram to a closed port of fwx: %v, want connection refused", err)
	}
}

// TestNPTv6 translates the inside prefix statelessly (RFC 6296) instead of
// masquerading: the server sees the client's own port from an address of
// the outside prefix, and the answer comes back.
func TestNPTv6(t *testing.T) {
	tb := newTestbed6(t, `
rules:
  - {name: out, action: allow, from: [internal], to: [external], protocols: [any]}
options:
  nptv6: [{inside: "fd00::/64", outside: "2001:db8:200::/64"}]
`)
	peers := fwxlab.EchoUDPOn(t, tb.Server, netip.AddrPortFrom(netip.IPv6Unspecified(), 7000))
	u, err := tb.Client.DialUDP(netip.AddrPortFrom(client6, 40000), netip.AddrPortFrom(server6, 7000))
	if err != nil {
		t.Fatal(err)
	}
	defer u.Close()
	fwxlab.RoundTrip(t, u, "translated prefix")
	got := fwxlab.Recv(t, peers)
	if !netip.MustParsePrefix("2001:db8:200::/64").Contains(got.Addr()) || got.Port() != 40000 {
		t.Errorf("server saw %v, want an address of 2001:db8:200::/64 and the client's port", got)
	}
}

// TestIPv6RestartAndPickup: IPv6 flows survive a restart with a state
// file, are picked up on their port after a crash, and a segment of no
// connection the policy allows gets fwx's IPv6 RST.
func TestIPv6RestartAndPickup(t *testing.T) {
	inside := netip.AddrPortFrom(netip.MustParseAddr("fd00::9"), 5000) // no lab host: packets to it are captured
	nowhere := netip.MustParseAddrPort("[2001:db8:100::77]:53")
	state := filepath.Join(t.TempDir(), "fwx.state")
	start := func(policy string) *testbed {
		return &testbed{fwxlab.New(t, fwxlab.Options{Policy: policy, IPv6: true,
			Configure: func(c *fwx.Config) { c.StateFile = state }})}
	}

	first := start("")
	first.Inside.Inject(lab.UDPPacket(inside, nowhere, []byte("query")))
	ext := nat.Parse(fwxlab.Recv(t, first.Outside.Captured())).Src
	if err := first.Stop(); err != nil {
		t.Fatal(err)
	}
	second := start("")
	if n := second.FW.Flows(); n != 1 {
		t.Fatalf("%d flows after the restart, want the saved one", n)
	}
	second.Outside.Inject(lab.UDPPacket(nowhere, ext, []byte("answer")))
	if p := nat.Parse(fwxlab.Recv(t, second.Inside.Captured())); p.Dst != inside {
		t.Fatalf("answer delivered to %v, want %v", p.Dst, inside)
	}

	// No state file now (it was read): the next start is after a crash.
	third := start(`
protocols:
  - {name: telnet, transport: tcp, ports: [23]}
rules:
  - {name: no-telnet, action: deny, from: [internal], to: [any], protocols: [telnet]}
  - {name: out, action: allow, from: [internal], to: [external], protocols: [any]}
`)
	src := netip.AddrPortFrom(inside.Addr(), 6000)
	third.Inside.Inject(lab.TCPPacket(src, netip.MustParseAddrPort("[2001:db8:100::77]:80"), header.TCPFlagAck|header.TCPFlagPsh, 1000, 2000, []byte("more")))
	if p := nat.Parse(fwxlab.Recv(t, third.Outside.Captured())); p.Src != netip.AddrPortFrom(fwOut6, 6000) {
		t.Fatalf("picked-up segment left from %v, want fwx's IPv6 address and the inside port", p.Src)
	}
	third.Inside.Inject(lab.TCPPacket(src, netip.MustParseAddrPort("[2001:db8:100::77]:23"), header.TCPFlagAck, 1000, 2000, nil))
	if r := nat.Parse(fwxlab.Recv(t, third.Inside.Captured())); r.Proto != nat.TCP || r.TCPFlags&header.TCPFlagRst == 0 || r.Dst != src || r.Src.Addr() != netip.MustParseAddr("2001:db8:100::77") {
		t.Fatalf("answer to a refused connection's segment: %s, want a RST from its destination", lab.PacketString(r.Bytes()))
	}
}
