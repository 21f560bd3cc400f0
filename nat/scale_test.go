package nat_test

import (
	"bytes"
	"math/rand/v2"
	"net/netip"
	"runtime"
	"testing"
	"time"

	"github.com/fwx-dev/fwx/nat"
	"github.com/fwx-dev/fwx/netstack/lab"
)

// The table at scale: a million UDP flows, 16,384 inside endpoints (one
// mapping each, as many as 64k ports allow over a million flows) talking
// to 64 outside endpoints each, as DNS clients or games behind a busy
// gateway would.
const (
	scaleEndpoints = 16384
	scaleRemotes   = 64
	scaleFlows     = scaleEndpoints * scaleRemotes
)

// scalePacket writes into b the outbound packet of flow i of the scale
// test and returns it.
func scalePacket(i int) []byte {
	ep, r := i/scaleRemotes, i%scaleRemotes
	src := netip.AddrPortFrom(netip.AddrFrom4([4]byte{10, 128 | byte(ep>>16), byte(ep >> 8), byte(ep)}), 40000)
	dst := netip.AddrPortFrom(netip.AddrFrom4([4]byte{203, 0, 113, byte(r)}), 53)
	return lab.UDPPacket(src, dst, []byte("q"))
}

// scalePacket6 is scalePacket in IPv6: as many inside hosts and outside
// servers, each its own address (as many dictionary entries as the IPv4
// test has addresses).
func scalePacket6(i int) []byte {
	ep, r := i/scaleRemotes, i%scaleRemotes
	src := netip.AddrPortFrom(netip.AddrFrom16([16]byte{0: 0xfd, 13: 1, 14: byte(ep >> 8), 15: byte(ep)}), 40000)
	dst := netip.AddrPortFrom(netip.AddrFrom16([16]byte{0x20, 0x01, 0x0d, 0xb8, 0, 0x71, 15: byte(r)}), 53)
	return lab.UDPPacket(src, dst, []byte("q"))
}

// heapInUse returns the live heap after a full collection.
func heapInUse() uint64 {
	runtime.GC()
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapAlloc
}

// BenchmarkScale measures the table with a million flows. create: what a
// flow costs to create (create-ns/flow) and to hold (bytes/flow:
// everything the table keeps for it, its share of its mapping and the
// indices included), and what is left once they have all expired and
// been swept (retained-bytes/flow). lookup-1M and lookup-empty: what a
// packet of an existing flow costs to translate (ns/op) in the full table
// and in a table of the probed flows alone.
func BenchmarkScale(b *testing.B) { benchmarkScale(b, scalePacket) }

// BenchmarkScale6 is BenchmarkScale with IPv6 flows.
func BenchmarkScale6(b *testing.B) { benchmarkScale(b, scalePacket6) }

func benchmarkScale(b *testing.B, packet func(int) []byte) {
	pkts := make([][]byte, scaleFlows)
	for i := range pkts {
		pkts[i] = packet(i)
	}
	// Packets to look up, and clean copies to restore them from.
	r := rand.New(rand.NewPCG(1, 2))
	probe, clean := make([][]byte, 1024), make([][]byte, 1024)
	for i := range probe {
		probe[i] = bytes.Clone(pkts[r.IntN(scaleFlows)])
		clean[i] = bytes.Clone(probe[i])
	}
	fill := func(b *testing.B, tab *nat.Table, pkts [][]byte) {
		for _, pkt := range pkts {
			pkt = bytes.Clone(pkt)
			p := nat.Parse(pkt)
			if v := tab.Outbound(&p, t0); v != nat.Forward {
				b.Fatalf("flow refused: %v", v)
			}
		}
	}
	b.Run("create", func(b *testing.B) {
		for b.Loop() {
			work := make([][]byte, len(pkts)) // translated in place
			for i, pkt := range pkts {
				work[i] = bytes.Clone(pkt)
			}
			tab, _ := newTable(b, nat.Config{Observer: nopObserver{}})
			before := heapInUse()
			start := time.Now()
			for _, pkt := range work {
				p := nat.Parse(pkt)
				if v := tab.Outbound(&p, t0); v != nat.Forward {
					b.Fatalf("flow refused: %v", v)
				}
			}
			create := time.Since(start)
			if tab.Len() != scaleFlows {
				b.Fatalf("%d flows, want %d", tab.Len(), scaleFlows)
			}
			full := heapInUse()
			tab.Expire(t0.Add(time.Hour))
			retained := heapInUse()
			runtime.KeepAlive(work) // in both measures, as in before
			runtime.KeepAlive(tab)
			b.ReportMetric(float64(create.Nanoseconds())/scaleFlows, "create-ns/flow")
			b.ReportMetric(float64(full-before)/scaleFlows, "bytes/flow")
			b.ReportMetric(float64(int64(retained)-int64(before))/scaleFlows, "retained-bytes/flow")
		}
	})
	for _, c := range []struct {
		name  string
		flows [][]byte
	}{{"lookup-1M", pkts}, {"lookup-empty", clean}} {
		b.Run(c.name, func(b *testing.B) {
			tab, _ := newTable(b, nat.Config{Observer: nopObserver{}})
			fill(b, tab, c.flows)
			i := 0
			b.ReportAllocs()
			for b.Loop() {
				copy(probe[i], clean[i])
				p := nat.Parse(probe[i])
				if tab.Outbound(&p, t0) != nat.Forward {
					b.Fatal("probe packet not forwarded")
				}
				i = (i + 1) % len(probe)
			}
		})
	}
}

// nopObserver is told of flows and forgets them, as a log that discards
// would.
type nopObserver struct{}

func (nopObserver) FlowStarted(*nat.Flow)          {}
func (nopObserver) FlowDenied(nat.Denial)          {}
func (nopObserver) FlowEnded(*nat.Flow, time.Time) {}

// BenchmarkUnsolicitedBusyMapping measures what a packet from an address
// the mapping never talked to costs when it is aimed at a mapping with
// 30,000 flows (a busy UDP socket): the filtering decision, and the drop.
func BenchmarkUnsolicitedBusyMapping(b *testing.B) {
	tab, _ := newTable(b, nat.Config{Observer: nopObserver{}})
	var ext netip.AddrPort
	for i := range 30000 {
		dst := netip.AddrPortFrom(netip.AddrFrom4([4]byte{203, 0, byte(i >> 8), byte(i)}), 53)
		_, p := out(tab, lab.UDPPacket(client, dst, nil), t0)
		ext = p.Src
	}
	pkts := make([][]byte, 256)
	for i := range pkts {
		pkts[i] = lab.UDPPacket(netip.AddrPortFrom(netip.AddrFrom4([4]byte{198, 18, 0, byte(i)}), 4000), ext, nil)
	}
	i := 0
	for b.Loop() {
		p := nat.Parse(pkts[i])
		if tab.Inbound(&p, t0) != nat.Drop {
			b.Fatal("unsolicited packet not dropped")
		}
		i = (i + 1) % len(pkts)
	}
}
