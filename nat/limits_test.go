package nat_test

import (
	"net/netip"
	"testing"
	"time"

	"github.com/fwx-dev/fwx/nat"
	"github.com/fwx-dev/fwx/netstack/lab"
)

// from returns client's address with port.
func from(c netip.AddrPort, port int) netip.AddrPort {
	return netip.AddrPortFrom(c.Addr(), uint16(port))
}

// noLimits turns every limit off but those set in l.
func noLimits(l nat.Limits) nat.Limits {
	for _, v := range []*int{&l.MaxFlows, &l.ClientFlows, &l.ClientHalfOpen, &l.ClientRate} {
		if *v == 0 {
			*v = nat.NoLimit
		}
	}
	return l
}

// refused returns the denials of rec for reason r.
func refused(rec *recorder, r nat.DropReason) []nat.Denial {
	rec.mu.Lock()
	defer rec.mu.Unlock()
	var out []nat.Denial
	for _, d := range rec.denied {
		if d.Reason == r {
			out = append(out, d)
		}
	}
	return out
}

func TestClientHalfOpenLimit(t *testing.T) {
	tab, rec := newTable(t, nat.Config{Limits: noLimits(nat.Limits{ClientHalfOpen: 3})})
	var exts []netip.AddrPort
	for port := 20000; port < 20003; port++ {
		v, p := out(tab, lab.TCPPacket(from(client, port), server, syn_, 1000, 0, nil), t0)
		if v != nat.Forward {
			t.Fatalf("SYN %d: verdict %v", port, v)
		}
		exts = append(exts, p.Src)
	}
	if v, _ := out(tab, lab.TCPPacket(from(client, 20003), server, syn_, 1000, 0, nil), t0); v != nat.Drop {
		t.Fatalf("fourth half-open connection: verdict %v, want drop", v)
	}
	if v, _ := out(tab, syn(client2, server), t0); v != nat.Forward {
		t.Fatalf("another client: verdict %v, want forward", v)
	}
	// One handshake completes: its slot is free again.
	in(tab, lab.TCPPacket(server, exts[0], synAck, 5000, 1001, nil), t0)
	out(tab, lab.TCPPacket(from(client, 20000), server, ack_, 1001, 5001, nil), t0)
	if v, _ := out(tab, lab.TCPPacket(from(client, 20004), server, syn_, 1000, 0, nil), t0); v != nat.Forward {
		t.Fatalf("after a handshake completed: verdict %v, want forward", v)
	}
	if n := tab.Stats().Drops[nat.DropClientHalfOpen]; n != 1 {
		t.Errorf("%d client-half-open drops counted, want 1", n)
	}
	if d := refused(rec, nat.DropClientHalfOpen); len(d) != 1 || d[0].Src.Addr() != client.Addr() || d[0].Count != 1 {
		t.Errorf("refusals reported %+v, want one for %v", d, client.Addr())
	}
}

func TestClientFlowsLimit(t *testing.T) {
	tab, _ := newTable(t, nat.Config{Limits: noLimits(nat.Limits{ClientFlows: 2})})
	send := func(dst netip.AddrPort, at time.Time) nat.Verdict {
		v, _ := out(tab, lab.UDPPacket(client, dst, nil), at)
		return v
	}
	if send(server, t0) != nat.Forward || send(server2, t0) != nat.Forward {
		t.Fatal("the first two flows were refused")
	}
	third := netip.MustParseAddrPort("203.0.113.7:53")
	if v := send(third, t0); v != nat.Drop {
		t.Fatalf("third flow: verdict %v, want drop", v)
	}
	// A connection that was reset holds the client's share no more.
	tab2, _ := newTable(t, nat.Config{Limits: noLimits(nat.Limits{ClientFlows: 1})})
	play(t, tab2, []seg{cSyn, {false, rst_ | ack_, 0, 1001}})
	if v, _ := out(tab2, lab.UDPPacket(client, server, nil), t0.Add(time.Minute)); v != nat.Forward {
		t.Fatalf("after the reset: verdict %v, want forward", v)
	}
	// Nor does a flow that expired, once swept.
	tab.Expire(t0.Add(6 * time.Minute))
	if v := send(third, t0.Add(6*time.Minute)); v != nat.Forward {
		t.Fatalf("after expiry: verdict %v, want forward", v)
	}
}

func TestClientRateLimit(t *testing.T) {
	tab, rec := newTable(t, nat.Config{Limits: noLimits(nat.Limits{ClientRate: 5})})
	flow := 0
	send := func(at time.Time) nat.Verdict {
		flow++
		v, _ := out(tab, lab.UDPPacket(from(client, 30000+flow), server, nil), at)
		return v
	}
	for range 5 {
		if v := send(t0); v != nat.Forward {
			t.Fatalf("within the burst: verdict %v", v)
		}
	}
	for range 3 {
		if v := send(t0); v != nat.Drop {
			t.Fatalf("past the burst: verdict %v, want drop", v)
		}
	}
	// 5 per second: one more after 200 ms, not two.
	if send(t0.Add(200*time.Millisecond)) != nat.Forward || send(t0.Add(200*time.Millisecond)) != nat.Drop {
		t.Fatal("the bucket does not refill at its rate")
	}
	// Refusals are reported once per client and interval, with their
	// count: the first at once, the rest when the interval has passed.
	if d := refused(rec, nat.DropClientRate); len(d) != 1 || d[0].Count != 1 {
		t.Fatalf("reported %+v, want the first refusal alone", d)
	}
	tab.Expire(t0.Add(11 * time.Second))
	if d := refused(rec, nat.DropClientRate); len(d) != 2 || d[1].Count != 3 {
		t.Fatalf("reported %+v, want a second record counting the other 3", d)
	}
	if n := tab.Stats().Drops[nat.DropClientRate]; n != 4 {
		t.Errorf("%d client-rate drops counted, want 4", n)
	}
}

// TestEarlyDrop: a full table makes room by reclaiming a connection whose
// handshake has not completed, never an established one, nor one that
// is half-closed (data still flows the other way).
func TestEarlyDrop(t *testing.T) {
	tab, rec := newTable(t, nat.Config{Limits: noLimits(nat.Limits{MaxFlows: 3})})
	// Two established connections from client, the second half-closed...
	for _, port := range []int{40001, 40002} {
		c := from(client, port)
		_, p := out(tab, lab.TCPPacket(c, server, syn_, 1000, 0, nil), t0)
		in(tab, lab.TCPPacket(server, p.Src, synAck, 5000, 1001, nil), t0)
		out(tab, lab.TCPPacket(c, server, ack_, 1001, 5001, nil), t0)
	}
	out(tab, lab.TCPPacket(from(client, 40002), server, finAck, 1001, 5001, nil), t0)
	if s := tab.LookupOutbound(nat.TCP, from(client, 40002), server, t0).TCPState(); s != nat.TCPClosing {
		t.Fatalf("half-closed connection in state %v", s)
	}
	// ... and a SYN without answer from client2.
	out(tab, syn(client2, server), t0)
	third := netip.MustParseAddrPort("10.0.0.4:5000")
	_, p := out(tab, lab.UDPPacket(third, server, nil), t0.Add(time.Second))
	if p.Src.Addr() != ext {
		t.Fatal("new flow in a full table not forwarded")
	}
	if st := tab.Stats(); st.EarlyDrops != 1 || st.Flows != 3 {
		t.Fatalf("stats %+v: want one early drop, 3 flows", st)
	}
	if len(rec.ended) != 1 || rec.ended[0].Inside() != client2 {
		t.Fatalf("ended %v, want client2's half-open connection", rec.ended)
	}
	// The UDP flow is answered: nothing is left to reclaim but live
	// flows, and the next new one is refused.
	in(tab, lab.UDPPacket(server, p.Src, nil), t0.Add(time.Second))
	if v, _ := out(tab, lab.UDPPacket(netip.MustParseAddrPort("10.0.0.5:5000"), server, nil), t0.Add(time.Second)); v != nat.Reject {
		t.Fatalf("verdict %v, want reject when only established flows remain", v)
	}
	if st := tab.Stats(); st.Drops[nat.DropTableFull] != 1 || st.Flows != 3 || st.EarlyDrops != 1 {
		t.Fatalf("stats %+v: want one table-full refusal and the table unchanged", st)
	}
	// Idle long enough, the answered UDP flow may go too.
	if v, _ := out(tab, lab.UDPPacket(netip.MustParseAddrPort("10.0.0.5:5000"), server, nil), t0.Add(time.Minute)); v != nat.Forward {
		t.Fatalf("verdict %v, want forward once the UDP flow has idled", v)
	}
}

// TestPortShortageReclaims fills every port of a range with connections
// whose handshake never completes (a SYN flood): a new client still gets a
// port, taken from one of them. When they are all established, it does
// not. The privileged range (1-1023, for inside ports below 1024) is
// filled, being the small one.
func TestPortShortageReclaims(t *testing.T) {
	for _, established := range []bool{false, true} {
		tab, _ := newTable(t, nat.Config{Limits: noLimits(nat.Limits{})})
		for port := 1; port < 1024; port++ {
			src := netip.AddrPortFrom(netip.MustParseAddr("10.0.0.50"), uint16(port))
			_, p := out(tab, lab.TCPPacket(src, server, syn_, 1000, 0, nil), t0)
			if established {
				in(tab, lab.TCPPacket(server, p.Src, synAck, 5000, 1001, nil), t0)
				out(tab, lab.TCPPacket(src, server, ack_, 1001, 5001, nil), t0)
			}
		}
		want, reason := nat.Forward, "a port taken from a half-open connection"
		if established {
			want, reason = nat.Reject, "no port: every connection is established"
		}
		if v, _ := out(tab, syn(from(client, 80), server), t0.Add(time.Second)); v != want {
			t.Errorf("established=%v: verdict %v, want %v (%s)", established, v, want, reason)
		}
		if st, reclaimed := tab.Stats(), !established; (st.EarlyDrops == 1) != reclaimed || (st.Drops[nat.DropNoPort] == 1) == reclaimed {
			t.Errorf("established=%v: %d early drops, %d no-port refusals", established, st.EarlyDrops, st.Drops[nat.DropNoPort])
		}
	}
}

// TestIPv6FloodFromManyAddresses: the per-client limits count an
// address, and an IPv6 host has the addresses of its /64 to send from: a
// SYN flood spread over 1023 of them, each far under its limits, takes
// every port of fwx's IPv6 address in the privileged range. Early drop
// still serves another client: its SYN gets a port, taken from one of the
// half-open flows.
func TestIPv6FloodFromManyAddresses(t *testing.T) {
	tab, _ := newTable(t, nat.Config{})
	for port := 1; port < 1024; port++ {
		src := netip.AddrPortFrom(netip.AddrFrom16([16]byte{0xfd, 8: 0xa, 14: byte(port >> 8), 15: byte(port)}), uint16(port))
		if v, _ := out(tab, lab.TCPPacket(src, server6, syn_, 1000, 0, nil), t0); v != nat.Forward {
			t.Fatalf("SYN %d of the flood: verdict %v, want forward (each address is under its limits)", port, v)
		}
	}
	v, p := out(tab, syn(from(client6, 80), server6), t0.Add(time.Second))
	if v != nat.Forward || p.Src.Addr() != ext6 || p.Src.Port() >= 1024 {
		t.Fatalf("another client's SYN: verdict %v from %v, want forward from a port of %v below 1024", v, p.Src, ext6)
	}
	if st := tab.Stats(); st.EarlyDrops != 1 || st.Flows != 1023 {
		t.Errorf("%d early drops, %d flows; want 1 and 1023", st.EarlyDrops, st.Flows)
	}
}

func TestLimitsOff(t *testing.T) {
	tab, _ := newTable(t, nat.Config{Limits: noLimits(nat.Limits{})})
	for i := range 3000 {
		if v, _ := out(tab, lab.TCPPacket(from(client, 10000+i), server, syn_, 1, 0, nil), t0); v != nat.Forward {
			t.Fatalf("SYN %d: verdict %v with every limit off", i, v)
		}
	}
}
