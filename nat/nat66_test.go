package nat_test

import (
	"bytes"
	"net/netip"
	"testing"
	"time"

	"gvisor.dev/gvisor/pkg/tcpip/header"

	"github.com/fwx-dev/fwx/nat"
	"github.com/fwx-dev/fwx/netstack/lab"
)

// TestNAT66 checks stateful NAT66 masquerade: IPv6 flows map and filter as
// IPv4 ones do (RFC 4787, 5382, 5508 apply alike), their checksums stay
// right, and a flow tells its IPv6 endpoints.
func TestNAT66(t *testing.T) {
	tests := []struct {
		name  string
		pkt   []byte
		reply func(to netip.AddrPort) []byte
		want  netip.AddrPort // where the reply goes
	}{
		{"udp", lab.UDPPacket(client6, server6, []byte("hello")),
			func(to netip.AddrPort) []byte { return lab.UDPPacket(server6, to, []byte("world")) }, client6},
		{"tcp", syn(client6, server6),
			func(to netip.AddrPort) []byte {
				return lab.TCPPacket(server6, to, header.TCPFlagSyn|header.TCPFlagAck, 5000, 1001, nil)
			}, client6},
		{"echo", lab.ICMPv6Echo(client6.Addr(), server6.Addr(), header.ICMPv6EchoRequest, 777, 1),
			func(to netip.AddrPort) []byte {
				return lab.ICMPv6Echo(server6.Addr(), to.Addr(), header.ICMPv6EchoReply, to.Port(), 1)
			}, netip.AddrPortFrom(client6.Addr(), 777)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tab, rec := newTable(t, nat.Config{})
			hl := tt.pkt[7]
			v, p := out(tab, tt.pkt, t0)
			mustVerdict(t, v, nat.Forward, tt.pkt)
			if p.Src.Addr() != ext6 || tt.pkt[7] != hl-1 {
				t.Errorf("source %v hop limit %d, want %v and %d", p.Src, tt.pkt[7], ext6, hl-1)
			}
			if len(rec.started) != 1 {
				t.Fatalf("%d flows started", len(rec.started))
			}
			f := rec.started[0]
			if !f.Is6() || f.Inside().Addr() != client6.Addr() || f.Remote().Addr() != server6.Addr() || f.External() != p.Src {
				t.Errorf("flow %v → %v via %v", f.Inside(), f.Remote(), f.External())
			}
			reply := tt.reply(p.Src)
			v, r := in(tab, reply, t0.Add(time.Second))
			mustVerdict(t, v, nat.Forward, reply)
			if r.Dst != tt.want || r.Src.Addr() != server6.Addr() {
				t.Errorf("reply %v → %v, want to %v", r.Src, r.Dst, tt.want)
			}
		})
	}
}

// TestNAT66Filtering checks the filtering behaviours and endpoint-
// independent mapping for IPv6.
func TestNAT66Filtering(t *testing.T) {
	other := netip.MustParseAddrPort("[2001:db8:6::6]:53")
	sameHost := netip.AddrPortFrom(server6.Addr(), 81)
	for _, tt := range []struct {
		filtering       nat.Filtering
		sameHost, other nat.Verdict
	}{
		{nat.EndpointIndependent, nat.Forward, nat.Forward},
		{nat.AddressDependent, nat.Forward, nat.Drop},
		{nat.AddressAndPortDependent, nat.Drop, nat.Drop},
	} {
		t.Run(tt.filtering.String(), func(t *testing.T) {
			tab, _ := newTable(t, nat.Config{Filtering: tt.filtering})
			_, p := out(tab, lab.UDPPacket(client6, server6, nil), t0)
			if v, _ := in(tab, lab.UDPPacket(sameHost, p.Src, nil), t0); v != tt.sameHost {
				t.Errorf("same host, other port: %v, want %v", v, tt.sameHost)
			}
			if v, _ := in(tab, lab.UDPPacket(other, p.Src, nil), t0); v != tt.other {
				t.Errorf("other host: %v, want %v", v, tt.other)
			}
			// Endpoint-independent mapping: the same external endpoint
			// to another server.
			if _, q := out(tab, lab.UDPPacket(client6, other, nil), t0); q.Src != p.Src {
				t.Errorf("mapping to a second server %v, want %v", q.Src, p.Src)
			}
		})
	}
}

// TestICMPv6ErrorTranslation checks RFC 5508 REQ-4/5 for ICMPv6: a Packet
// Too Big about a translated packet reaches the client that sent it, its
// quote reverted, every checksum right and the MTU kept; and an error the
// client sends about an inbound packet leaves from fwx's address with its
// quote translated.
func TestICMPv6ErrorTranslation(t *testing.T) {
	tab, _ := newTable(t, nat.Config{Filtering: nat.EndpointIndependent})
	orig := lab.UDPPacket(client6, server6, make([]byte, 1400))
	v, sent := out(tab, orig, t0)
	mustVerdict(t, v, nat.Forward, orig)
	ptb := lab.ICMPv6Error(router6, sent.Src.Addr(), header.ICMPv6PacketTooBig, 0, 1280, orig[:1232])
	v, p := in(tab, ptb, t0.Add(time.Second))
	mustVerdict(t, v, nat.Forward, ptb)
	if p.Dst.Addr() != client6.Addr() || p.Src.Addr() != router6 {
		t.Errorf("error %v → %v, want %v → %v", p.Src.Addr(), p.Dst.Addr(), router6, client6.Addr())
	}
	if q := p.Quoted(); q.Src != client6 || q.Dst != server6 {
		t.Errorf("quoted %v → %v, want %v → %v", q.Src, q.Dst, client6, server6)
	}
	if mtu := header.ICMPv6(ptb[header.IPv6MinimumSize:]).MTU(); mtu != 1280 {
		t.Errorf("MTU %d, want 1280", mtu)
	}

	// The server writes; the client's stack refuses the port.
	inPkt := lab.UDPPacket(server6, sent.Src, []byte("late"))
	v, _ = in(tab, inPkt, t0.Add(2*time.Second))
	mustVerdict(t, v, nat.Forward, inPkt)
	unreach := lab.ICMPv6Error(client6.Addr(), server6.Addr(), header.ICMPv6DstUnreachable, header.ICMPv6PortUnreachable, 0, inPkt)
	v, e := out(tab, unreach, t0.Add(2*time.Second))
	mustVerdict(t, v, nat.Forward, unreach)
	if e.Src.Addr() != ext6 || e.Quoted().Dst != sent.Src {
		t.Errorf("error from %v quoting %v, want from %v quoting %v", e.Src.Addr(), e.Quoted().Dst, ext6, sent.Src)
	}
	if tab.Len() != 1 {
		t.Errorf("%d flows after the errors, want 1", tab.Len())
	}
}

// TestNAT66HairpinAndPublish checks hairpinning and a published server for
// IPv6.
func TestNAT66HairpinAndPublish(t *testing.T) {
	tab, _ := newTable(t, nat.Config{Decider: publishPolicy{}, Filtering: nat.EndpointIndependent})
	web := netip.MustParseAddrPort("[fd00::80]:80")
	public := netip.AddrPortFrom(ext6, 8080)
	if err := tab.Publish(nat.TCP, public, web); err != nil {
		t.Fatal(err)
	}
	if err := tab.Publish(nat.TCP, netip.AddrPortFrom(ext, 8081), web); err == nil {
		t.Error("published an IPv6 server on an IPv4 address")
	}
	pkt := syn(server6, public)
	v, p := in(tab, pkt, t0)
	mustVerdict(t, v, nat.Forward, pkt)
	if p.Dst != web {
		t.Fatalf("published SYN to %v, want %v", p.Dst, web)
	}
	// A client reaches the server through its public endpoint.
	hp := syn(client6, public)
	v, h := out(tab, hp, t0)
	mustVerdict(t, v, nat.Hairpin, hp)
	if h.Dst != web || h.Src.Addr() != ext6 {
		t.Errorf("hairpinned %v → %v, want from %v to %v", h.Src, h.Dst, ext6, web)
	}
}

// TestNoAddressOfTheFamily checks that a table with IPv4 outside addresses
// only refuses IPv6 flows with a reason, and the reverse.
func TestNoAddressOfTheFamily(t *testing.T) {
	for _, tt := range []struct {
		external []netip.Addr
		pkt      []byte
	}{
		{[]netip.Addr{ext}, lab.UDPPacket(client6, server6, nil)},
		{[]netip.Addr{ext6}, lab.UDPPacket(client, server, nil)},
	} {
		tab, rec := newTable(t, nat.Config{External: tt.external})
		if v, _ := out(tab, tt.pkt, t0); v != nat.Reject {
			t.Errorf("verdict %v, want reject", v)
		}
		if d := tab.Stats().Drops[nat.DropNoAddress]; d != 1 || len(rec.denied) != 1 {
			t.Errorf("%d no-address drops, %d denials; want 1 and 1", d, len(rec.denied))
		}
	}
}

// TestAddrHandles checks the life of the IPv6 address handles: held while
// flows use the addresses, given back when they end, and a handle used
// again for another address never lets a packet of the old flow through.
func TestAddrHandles(t *testing.T) {
	tab, _ := newTable(t, nat.Config{Timeouts: nat.Timeouts{UDP: time.Minute}})
	base := nat.HeldAddrs6(tab) // the table's own
	_, a := out(tab, lab.UDPPacket(client6, server6, nil), t0)
	if n := nat.HeldAddrs6(tab) - base; n != 2 {
		t.Fatalf("%d addresses held for one flow, want 2", n)
	}
	later := t0.Add(2 * time.Minute)
	tab.Expire(later)
	tab.Expire(later) // the handles may be used again from here
	if n := nat.HeldAddrs6(tab) - base; n != 0 {
		t.Fatalf("%d addresses held after the flow ended", n)
	}
	other := netip.MustParseAddrPort("[2001:db8:9::9]:80")
	_, b := out(tab, lab.UDPPacket(client6b, other, nil), later)
	if v, _ := in(tab, lab.UDPPacket(server6, a.Src, nil), later); v != nat.Drop {
		t.Errorf("a packet of the ended flow: %v, want drop", v)
	}
	reply := lab.UDPPacket(other, b.Src, []byte("b"))
	v, r := in(tab, reply, later)
	mustVerdict(t, v, nat.Forward, reply)
	if r.Dst != client6b {
		t.Errorf("reply to %v, want %v", r.Dst, client6b)
	}
}

// TestIPv6LookupsShareNoLock: a packet of an IPv6 flow looks its two
// addresses up in the table's dictionary under their own shards' locks
// only, and fwx's own address (in every inbound packet) under none: while
// every other shard is locked, as the creation of flows to other
// addresses locks them, the flow's packets still cross both ways.
func TestIPv6LookupsShareNoLock(t *testing.T) {
	if nat.SameAddrLock(ext6, client6.Addr()) || nat.SameAddrLock(ext6, server6.Addr()) {
		t.Fatal("fwx's address shares a shard with the flow's: pick other test addresses")
	}
	tab, o, i := establishedBetween(t, client6, server6)
	obuf, ibuf := bytes.Clone(o), bytes.Clone(i)
	unlock := nat.LockAddrsExcept(tab, client6.Addr(), server6.Addr())
	defer unlock()
	done := make(chan struct{})
	go func() {
		defer close(done)
		translateBoth(tab, o, i, obuf, ibuf, t0)
	}()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		unlock()
		<-done
		t.Fatal("a packet of an IPv6 flow waited for a lock of other addresses")
	}
}

// TestPairedPool checks the outside address pool: every mapping of a
// client takes the same address (RFC 4787 REQ-2), clients spread over the
// pool, a pinned expectation and a publication take the address they name.
func TestPairedPool(t *testing.T) {
	pool := []netip.Addr{ext, netip.MustParseAddr("198.51.100.2"), netip.MustParseAddr("198.51.100.3"), netip.MustParseAddr("198.51.100.4"), ext6}
	tab, _ := newTable(t, nat.Config{External: pool, Decider: publishPolicy{}})
	used := map[netip.Addr]bool{}
	for i := range 32 {
		c := netip.AddrFrom4([4]byte{10, 0, 1, byte(i + 1)})
		want, ok := tab.ExternalFor(c)
		if !ok || !want.Is4() {
			t.Fatalf("client %v paired with %v", c, want)
		}
		used[want] = true
		for j, pkt := range [][]byte{
			lab.UDPPacket(netip.AddrPortFrom(c, 5000), server, nil),
			syn(netip.AddrPortFrom(c, 5001), server2),
			lab.ICMPEcho(c, server.Addr(), header.ICMPv4Echo, 9, 1),
		} {
			if _, p := out(tab, pkt, t0); p.Src.Addr() != want {
				t.Fatalf("client %v mapping %d from %v, want %v", c, j, p.Src.Addr(), want)
			}
		}
	}
	if len(used) < 2 {
		t.Errorf("32 clients all paired with %v", used)
	}
	if a, ok := tab.ExternalFor(client6.Addr()); !ok || a != ext6 {
		t.Errorf("IPv6 client paired with %v", a)
	}
	// A publication on the third address answers there only.
	web := netip.MustParseAddrPort("10.0.0.80:80")
	third := netip.AddrPortFrom(pool[2], 80)
	if err := tab.Publish(nat.TCP, third, web); err != nil {
		t.Fatal(err)
	}
	if v, _ := in(tab, syn(server, third), t0); v != nat.Forward {
		t.Errorf("to the published address: %v", v)
	}
	if v, _ := in(tab, syn(server, netip.AddrPortFrom(pool[1], 80)), t0); v != nat.Drop {
		t.Errorf("to another pool address: %v, want drop", v)
	}
	// An expectation pins the source address (ProxyExternal).
	e := &nat.Expectation{Proto: nat.UDP, Client: client.Addr(), Dst: server2, ExternalAddr: pool[3], Rule: "pinned"}
	if err := tab.ExpectOutbound(e, t0); err != nil {
		t.Fatal(err)
	}
	c := netip.AddrPortFrom(client.Addr(), 6000)
	if _, p := out(tab, lab.UDPPacket(c, server2, nil), t0); p.Src.Addr() != pool[3] {
		t.Errorf("pinned flow from %v, want %v", p.Src.Addr(), pool[3])
	}
	bad := &nat.Expectation{Proto: nat.UDP, Client: client.Addr(), Dst: server, ExternalAddr: ext6}
	if err := tab.ExpectOutbound(bad, t0); err == nil {
		t.Error("an IPv4 expectation pinned to an IPv6 address was accepted")
	}
}
