package nat_test

import (
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"testing"
	"time"

	"gvisor.dev/gvisor/pkg/tcpip/header"

	"github.com/fwx-dev/fwx/nat"
	"github.com/fwx-dev/fwx/netstack/lab"
)

// hostPorts is a Ports whose host has some ports taken by other programs.
type hostPorts struct {
	busy    map[uint16]bool
	fail    error // returned for every port when set
	held    map[netip.AddrPort]bool
	inbound map[netip.AddrPort]bool
}

func newHostPorts(busy ...uint16) *hostPorts {
	h := &hostPorts{busy: map[uint16]bool{}, held: map[netip.AddrPort]bool{}, inbound: map[netip.AddrPort]bool{}}
	for _, p := range busy {
		h.busy[p] = true
	}
	return h
}

func (h *hostPorts) Hold(p nat.Proto, ap netip.AddrPort, inbound bool) error {
	switch {
	case h.fail != nil:
		return h.fail
	case h.busy[ap.Port()]:
		return fmt.Errorf("bind %v: %w", ap, nat.ErrPortInUse)
	case h.held[ap]:
		return fmt.Errorf("%v held twice", ap)
	}
	h.held[ap], h.inbound[ap] = true, inbound
	return nil
}

func (h *hostPorts) Release(p nat.Proto, ap netip.AddrPort) {
	if !h.held[ap] {
		panic(fmt.Sprintf("release of %v, which is not held", ap))
	}
	delete(h.held, ap)
}

func TestPortsHeldForMappings(t *testing.T) {
	host := newHostPorts(client.Port()) // the client's own port is taken on the host
	tab, _ := newTable(t, nat.Config{Ports: host, Timeouts: nat.Timeouts{UDP: time.Minute}})
	v, p := out(tab, lab.UDPPacket(client, server, []byte("x")), t0)
	if v != nat.Forward {
		t.Fatalf("verdict %v", v)
	}
	got := p.Src
	if got.Port() == client.Port() || got.Port()%2 != client.Port()%2 {
		t.Fatalf("external port %d: want another port of the same parity than the busy %d", got.Port(), client.Port())
	}
	if !host.held[got] || host.inbound[got] {
		t.Fatalf("port %v not held on the host for a mapping: %v", got, host.held)
	}
	// The mapping ends with its flow: the host port is given back.
	if n := tab.Expire(t0.Add(2 * time.Minute)); n != 1 {
		t.Fatalf("expired %d flows", n)
	}
	if len(host.held) != 0 {
		t.Fatalf("still held after the mapping ended: %v", host.held)
	}
}

func TestPortsHostFailure(t *testing.T) {
	host := newHostPorts()
	host.fail = errors.New("socket: permission denied")
	tab, rec := newTable(t, nat.Config{Ports: host})
	if v, _ := out(tab, lab.ICMPEcho(client.Addr(), server.Addr(), header.ICMPv4Echo, 7, 1), t0); v != nat.Reject {
		t.Fatalf("verdict %v, want reject when the host cannot hold any port", v)
	}
	if len(rec.denied) != 1 || rec.denied[0].Rule != "no-free-port" {
		t.Fatalf("denials %+v", rec.denied)
	}
}

func TestPortsReserveBlock(t *testing.T) {
	for _, n := range []int{1, 2, 4} {
		t.Run(fmt.Sprint(n), func(t *testing.T) {
			// On the host, the last port of six blocks in seven is taken:
			// the table must skip those blocks and give back what it
			// held of them.
			host := newHostPorts()
			for base := 0; base < 65536; base += n {
				if (base/n)%7 != 0 {
					host.busy[uint16(base+n-1)] = true
				}
			}
			tab, _ := newTable(t, nat.Config{Ports: host})
			base, err := tab.ReserveBlock(nat.TCP, ext, n)
			if err != nil {
				t.Fatal(err)
			}
			if int(base.Port())%n != 0 {
				t.Fatalf("block at %d, not a multiple of %d", base.Port(), n)
			}
			if len(host.held) != n {
				t.Fatalf("held %d ports, want %d: %v", len(host.held), n, host.held)
			}
			for i := 0; i < n; i++ {
				ap := netip.AddrPortFrom(ext, base.Port()+uint16(i))
				if !host.held[ap] || !host.inbound[ap] {
					t.Fatalf("%v not held for inbound connections", ap)
				}
				tab.ReleasePort(nat.TCP, ap)
			}
			if len(host.held) != 0 {
				t.Fatalf("held after release: %v", host.held)
			}
		})
	}
}

func TestPortsReservePortBusy(t *testing.T) {
	host := newHostPorts(2121)
	tab, _ := newTable(t, nat.Config{Ports: host})
	if err := tab.ReservePort(nat.TCP, netip.AddrPortFrom(ext, 2121)); !errors.Is(err, nat.ErrPortInUse) {
		t.Fatalf("reserve of a port busy on the host: %v", err)
	}
	if err := tab.Publish(nat.UDP, netip.AddrPortFrom(ext, 5353), netip.MustParseAddrPort("10.0.0.9:53")); err != nil {
		t.Fatal(err)
	}
	if !host.inbound[netip.AddrPortFrom(ext, 5353)] {
		t.Fatal("a published port is not held for inbound traffic")
	}
}

func TestAdmit(t *testing.T) {
	tab, rec := newTable(t, nat.Config{Decider: denyAll{}})
	bound := netip.AddrPortFrom(ext, 40002)
	if err := tab.ReservePort(nat.TCP, bound); err != nil {
		t.Fatal(err)
	}
	e := &nat.Expectation{Proto: nat.TCP, External: bound, Inside: client, Remotes: addrSet{server.Addr()}, Rule: "ftp-data"}
	if err := tab.ExpectInbound(e); err != nil {
		t.Fatal(err)
	}
	if f := tab.Admit(nat.TCP, server2, bound, t0); f != nil {
		t.Fatalf("admitted %v, which the pinhole's IP filter excludes", server2)
	}
	f := tab.Admit(nat.TCP, server, bound, t0)
	if f == nil || f.Inside() != client || f.Origin() != nat.Inbound || f.Rule() != "ftp-data" {
		t.Fatalf("flow %+v", f)
	}
	if g := tab.Admit(nat.TCP, netip.AddrPortFrom(server.Addr(), 81), bound, t0); g != nil {
		t.Fatal("a single-use pinhole admitted a second connection")
	}
	if len(rec.denied) != 2 {
		t.Fatalf("denials %+v, want the two refusals logged", rec.denied)
	}
}

func TestObserveKeepsHostFlowsAlive(t *testing.T) {
	tab, _ := newTable(t, nat.Config{UserModeTCP: true})
	v, _ := out(tab, syn(client, server), t0)
	if v != nat.Divert {
		t.Fatalf("verdict %v: every TCP flow takes the user-mode path", v)
	}
	f := tab.LookupOutbound(nat.TCP, client, server, t0)
	if f == nil || !f.UserMode() {
		t.Fatalf("flow %+v", f)
	}
	// The server's side is a host socket: the flow hears of it by Observe.
	tab.Observe(f, false, 0, header.TCPFlagSyn, t0)
	if f.Established() {
		t.Fatal("established before the client completed its handshake")
	}
	// The inside netstack answers the client, whose ACK completes it.
	if v, _ := out(tab, lab.TCPPacket(client, server, header.TCPFlagAck, 1001, 77, nil), t0); v != nat.Divert {
		t.Fatalf("client's ACK: verdict %v", v)
	}
	if !f.Established() {
		t.Fatal("not established after the client's ACK")
	}
	tab.Observe(f, false, 1000, 0, t0.Add(time.Hour))
	if _, in, _, _ := f.Counters(); in != 1000 {
		t.Fatalf("bytes in %d", in)
	}
	if tab.LookupOutbound(nat.TCP, client, server, t0.Add(2*time.Hour)) == nil {
		t.Fatal("an established flow the outside kept busy expired")
	}
}

// TestPortsHostReason: a port the host refuses for another reason than
// its being taken (a privileged port, say) fails with that reason.
func TestPortsHostReason(t *testing.T) {
	host := newHostPorts()
	host.fail = errors.New("bind: permission denied")
	tab, _ := newTable(t, nat.Config{Ports: host})
	err := tab.Publish(nat.TCP, netip.AddrPortFrom(ext, 80), netip.MustParseAddrPort("10.0.0.9:80"))
	if err == nil || errors.Is(err, nat.ErrPortInUse) || !strings.Contains(err.Error(), "permission denied") {
		t.Fatalf("publish on a port the host refuses: %v", err)
	}
}
