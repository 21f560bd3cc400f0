package nat_test

import (
	"bytes"
	"encoding/binary"
	"net/netip"
	"testing"
	"time"

	"gvisor.dev/gvisor/pkg/tcpip/header"

	"github.com/fwx-dev/fwx/nat"
	"github.com/fwx-dev/fwx/netstack/lab"
)

// The example of RFC 6296 appendix B: fd01:0203:0405::/48 inside,
// 2001:0db8:0001::/48 outside.
var rfc6296 = nat.NPTv6{Inside: netip.MustParsePrefix("fd01:203:405::/48"), Outside: netip.MustParsePrefix("2001:db8:1::/48")}

// TestNPTv6 checks prefix translation through the table: the RFC's
// example address, ports kept, transport checksums untouched (checksum-
// neutral) and right, replies translated back, and hosts outside the
// translated prefix masqueraded behind the pool as before.
func TestNPTv6(t *testing.T) {
	tab, _ := newTable(t, nat.Config{NPTv6: []nat.NPTv6{rfc6296}})
	host := netip.MustParseAddrPort("[fd01:203:405:1::1234]:5000")
	want := netip.MustParseAddrPort("[2001:db8:1:d550::1234]:5000")
	pkt := lab.UDPPacket(host, server6, []byte("npt"))
	sum := binary.BigEndian.Uint16(pkt[header.IPv6MinimumSize+6:])
	v, p := out(tab, pkt, t0)
	mustVerdict(t, v, nat.Forward, pkt)
	if p.Src != want {
		t.Fatalf("translated to %v, want %v (RFC 6296 appendix B)", p.Src, want)
	}
	if got := binary.BigEndian.Uint16(pkt[header.IPv6MinimumSize+6:]); got != sum {
		t.Errorf("UDP checksum %#04x changed from %#04x: the mapping is not checksum-neutral", got, sum)
	}
	reply := lab.UDPPacket(server6, want, []byte("back"))
	v, r := in(tab, reply, t0)
	mustVerdict(t, v, nat.Forward, reply)
	if r.Dst != host {
		t.Errorf("reply to %v, want %v", r.Dst, host)
	}
	// Filtering applies: another outside host gets nothing in.
	if v, _ := in(tab, lab.UDPPacket(netip.MustParseAddrPort("[2001:db8:9::9]:53"), want, nil), t0); v != nat.Drop {
		t.Errorf("unsolicited packet to an NPTv6 address: %v, want drop", v)
	}
	// Nor to an address no flow has.
	if v, _ := in(tab, syn(server6, netip.MustParseAddrPort("[2001:db8:1:d550::99]:22")), t0); v != nat.Drop {
		t.Errorf("SYN to an idle NPTv6 address: %v, want drop", v)
	}
	// Outside the translated prefix: the pool.
	if _, q := out(tab, lab.UDPPacket(client6, server6, nil), t0); q.Src.Addr() != ext6 {
		t.Errorf("a host outside the NPTv6 prefix left from %v, want the pool's %v", q.Src.Addr(), ext6)
	}
}

// TestNPTv6UserModeTakesThePool: NPTv6 is for the fast path. A flow an
// application filter terminates (user mode) leaves from the pool's
// address, as fwx's own stack sends it, not from the host's translated
// one.
func TestNPTv6UserModeTakesThePool(t *testing.T) {
	tab, _ := newTable(t, nat.Config{NPTv6: []nat.NPTv6{rfc6296}, Decider: userMode{}})
	host := netip.MustParseAddrPort("[fd01:203:405:1::1234]:5000")
	if v, _ := out(tab, syn(host, server6), t0); v != nat.Divert {
		t.Fatalf("verdict %v, want divert", v)
	}
	if e := tab.Flows()[0].External(); e.Addr() != ext6 {
		t.Errorf("the user-mode flow of an NPTv6 host leaves from %v, want the pool's %v", e, ext6)
	}
}

// TestNPTv6Hairpin: one translated host reaches another through its
// outside address, as from its own outside address.
func TestNPTv6Hairpin(t *testing.T) {
	tab, _ := newTable(t, nat.Config{NPTv6: []nat.NPTv6{rfc6296}, Filtering: nat.EndpointIndependent})
	a := netip.MustParseAddrPort("[fd01:203:405:1::a]:6000")
	b := netip.MustParseAddrPort("[fd01:203:405:2::b]:7000")
	_, pb := out(tab, lab.UDPPacket(b, server6, nil), t0) // b's mapping, open to anyone
	pkt := lab.UDPPacket(a, pb.Src, []byte("hi"))
	v, h := out(tab, pkt, t0)
	mustVerdict(t, v, nat.Hairpin, pkt)
	if h.Dst != b || h.Src.Addr() == a.Addr() || h.Src.Port() != a.Port() {
		t.Errorf("hairpinned %v → %v, want from a's outside address to %v", h.Src, h.Dst, b)
	}
}

// TestNPTv6Config refuses translations RFC 6296 does not define or that
// clash.
func TestNPTv6Config(t *testing.T) {
	for _, n := range [][]nat.NPTv6{
		{{Inside: netip.MustParsePrefix("fd00::/48"), Outside: netip.MustParsePrefix("2001:db8::/56")}},      // lengths differ
		{{Inside: netip.MustParsePrefix("fd00::/72"), Outside: netip.MustParsePrefix("2001:db8::/72")}},      // over /64
		{{Inside: netip.MustParsePrefix("10.0.0.0/8"), Outside: netip.MustParsePrefix("2001:db8::/8")}},      // IPv4
		{{Inside: netip.MustParsePrefix("fd00::/48"), Outside: netip.MustParsePrefix("2001:db8:ffff::/48")}}, // holds ext6
		{rfc6296, {Inside: netip.MustParsePrefix("fd01:203:405:8000::/49"), Outside: netip.MustParsePrefix("2001:db8:7::/49")}},
	} {
		if _, err := nat.New(nat.Config{External: []netip.Addr{ext, ext6}, NPTv6: n}); err == nil {
			t.Errorf("NPTv6 %v accepted", n)
		}
	}
}

// TestNPTv6Restart: a translated host's connections outlive a restart as
// the pool's do: restored on their own outside address from a saved
// table, and picked up there after a crash.
func TestNPTv6Restart(t *testing.T) {
	host := netip.MustParseAddrPort("[fd01:203:405:1::1234]:5000")
	outside := netip.MustParseAddrPort("[2001:db8:1:d550::1234]:5000")
	cfg := nat.Config{NPTv6: []nat.NPTv6{rfc6296}}
	data := func(tab *nat.Table) (nat.Verdict, nat.Verdict, nat.Packet) {
		vo, p := out(tab, lab.TCPPacket(host, server6, ack_, 1001, 5001, []byte("x")), t0)
		vi, _ := in(tab, lab.TCPPacket(server6, outside, ack_, 5001, 1002, []byte("y")), t0)
		return vo, vi, p
	}

	old, _ := newTable(t, cfg)
	out(old, lab.TCPPacket(host, server6, syn_, 1000, 0, nil), t0)
	in(old, lab.TCPPacket(server6, outside, synAck, 5000, 1001, nil), t0)
	if vo, vi, p := data(old); vo != nat.Forward || vi != nat.Forward || p.Src != outside {
		t.Fatalf("before the restart: %v from %v, %v", vo, p.Src, vi)
	}
	var buf bytes.Buffer
	if n, _, err := old.Save(&buf, t0); err != nil || n != 1 {
		t.Fatalf("saved %d, %v", n, err)
	}
	restored, _ := newTable(t, cfg)
	if n, _, err := restored.Restore(&buf, t0); err != nil || n != 1 {
		t.Fatalf("restored %d, %v", n, err)
	}
	if vo, vi, p := data(restored); vo != nat.Forward || vi != nat.Forward || p.Src != outside {
		t.Errorf("after a clean restart: %v from %v, %v; want both forwarded, from %v", vo, p.Src, vi, outside)
	}

	crashed, _ := newTable(t, cfg)
	crashed.SetPickup(t0.Add(time.Hour))
	if vo, vi, p := data(crashed); vo != nat.Forward || vi != nat.Forward || p.Src != outside {
		t.Errorf("after a crash: %v from %v, %v; want both forwarded, from %v", vo, p.Src, vi, outside)
	}
}
