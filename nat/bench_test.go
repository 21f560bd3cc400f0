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

// establishedBetween sets up an established TCP flow between a client and
// a server of either family and returns a data packet from each side, so
// a benchmark can translate the same packets again and again.
func establishedBetween(tb testing.TB, client, server netip.AddrPort) (tab *nat.Table, outPkt, inPkt []byte) {
	tab, _ = newTable(tb, nat.Config{})
	outPkt, inPkt = establishedIn(tb, tab, client, server)
	return tab, outPkt, inPkt
}

// establishedIn is establishedBetween in table tab.
func establishedIn(tb testing.TB, tab *nat.Table, client, server netip.AddrPort) (outPkt, inPkt []byte) {
	_, p := out(tab, syn(client, server), t0)
	in(tab, lab.TCPPacket(server, p.Src, header.TCPFlagSyn|header.TCPFlagAck, 1, 1001, nil), t0)
	payload := make([]byte, 1400)
	return lab.TCPPacket(client, server, header.TCPFlagAck, 1001, 2, payload),
		lab.TCPPacket(server, p.Src, header.TCPFlagAck, 2, 1001, payload)
}

// hdrLen is the length of the IPv6 and TCP headers: all that translation
// changes (an IPv4 packet's are shorter, and restoring more is harmless).
const hdrLen = header.IPv6MinimumSize + header.TCPMinimumSize

// translateBoth parses and translates a packet each way in obuf and ibuf,
// first restoring their headers from o and i so it can run again.
func translateBoth(tab *nat.Table, o, i, obuf, ibuf []byte, now time.Time) {
	copy(obuf[:hdrLen], o)
	p := nat.Parse(obuf)
	if tab.Outbound(&p, now) != nat.Forward {
		panic("outbound packet not forwarded")
	}
	copy(ibuf[:hdrLen], i)
	q := nat.Parse(ibuf)
	if tab.Inbound(&q, now) != nat.Forward {
		panic("inbound packet not forwarded")
	}
}

// TestNoAllocsPerPacket proves that translating a packet of an existing
// flow allocates nothing.
func TestNoAllocsPerPacket(t *testing.T) {
	for _, ends := range [][2]netip.AddrPort{{client, server}, {client6, server6}} {
		tab, o, i := establishedBetween(t, ends[0], ends[1])
		obuf, ibuf := bytes.Clone(o), bytes.Clone(i)
		allocs := testing.AllocsPerRun(1000, func() { translateBoth(tab, o, i, obuf, ibuf, t0) })
		if allocs != 0 {
			t.Errorf("%v: %v allocations per packet pair, want 0", ends[0].Addr(), allocs)
		}
	}
}

// BenchmarkTranslate measures the per-packet fast path: parse and translate
// one 1400-byte payload each way on an established flow (restoring the
// headers included), for IPv4 and IPv6.
func BenchmarkTranslate(b *testing.B) {
	for _, tt := range []struct {
		name           string
		client, server netip.AddrPort
	}{{"ipv4", client, server}, {"ipv6", client6, server6}} {
		b.Run(tt.name, func(b *testing.B) {
			tab, o, i := establishedBetween(b, tt.client, tt.server)
			obuf, ibuf := bytes.Clone(o), bytes.Clone(i)
			b.ReportAllocs()
			b.SetBytes(int64(len(o) + len(i)))
			for b.Loop() {
				translateBoth(tab, o, i, obuf, ibuf, t0)
			}
		})
	}
}

// BenchmarkTranslateParallel runs the fast path on every core at once,
// each goroutine on flows of its own, for IPv4 and IPv6: packets of
// different flows share no lock, so it scales with the cores.
func BenchmarkTranslateParallel(b *testing.B) {
	for _, tt := range []struct {
		name           string
		client, server netip.AddrPort
	}{{"ipv4", client, server}, {"ipv6", client6, server6}} {
		b.Run(tt.name, func(b *testing.B) {
			tab, _ := newTable(b, nat.Config{Limits: nat.Limits{ClientRate: nat.NoLimit}})
			type flow struct{ o, i []byte }
			flows := make(chan flow, 64) // RunParallel starts GOMAXPROCS goroutines
			for n := range cap(flows) {
				// A client and a server of their own per flow.
				c := netip.AddrPortFrom(nth(tt.client.Addr(), n), tt.client.Port())
				s := netip.AddrPortFrom(nth(tt.server.Addr(), n), tt.server.Port())
				o, i := establishedIn(b, tab, c, s)
				flows <- flow{o, i}
			}
			b.ReportAllocs()
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				f := <-flows
				obuf, ibuf := bytes.Clone(f.o), bytes.Clone(f.i)
				for pb.Next() {
					translateBoth(tab, f.o, f.i, obuf, ibuf, t0)
				}
			})
		})
	}
}

// nth returns a with n added to its last byte.
func nth(a netip.Addr, n int) netip.Addr {
	b := a.As16()
	b[15] += byte(n)
	if a.Is4() {
		return netip.AddrFrom4([4]byte(b[12:]))
	}
	return netip.AddrFrom16(b)
}
