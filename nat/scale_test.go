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

// heapInUse returns the live heap after a full collection.
func heapInUse() uint64 {
	runtime.GC()
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapAlloc
}

// BenchmarkScale measures the table with a million flows: what a flow
// costs to create (ns/op) and in memory (bytes/flow, everything the table
// holds for it: the flow, its share of its mapping, the indices), what is
// left once they have all expired and been swept (retained-bytes/flow),
// and what a packet of an existing flow costs to translate in the full
// table (lookup-ns) against a nearly empty one (lookup-empty-ns).
func BenchmarkScale(b *testing.B) {
	pkts := make([][]byte, scaleFlows)
	for i := range pkts {
		pkts[i] = scalePacket(i)
	}
	// A few packets to look up, and clean copies to restore them from.
	probe := make([][]byte, 1024)
	r := rand.New(rand.NewPCG(1, 2))
	for i := range probe {
		probe[i] = pkts[r.IntN(scaleFlows)]
	}
	probeClean := make([][]byte, len(probe))
	for i := range probe {
		probeClean[i] = bytes.Clone(probe[i])
	}
	for b.Loop() {
		tab, _ := newTable(b, nat.Config{Observer: nopObserver{}})
		before := heapInUse()
		start := time.Now()
		for _, pkt := range pkts {
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
		lookup := translateEach(b, tab, probe, probeClean)

		tab.Expire(t0.Add(time.Hour))
		if tab.Len() != 0 {
			b.Fatalf("%d flows after expiry", tab.Len())
		}
		retained := heapInUse()
		runtime.KeepAlive(tab)

		small, _ := newTable(b, nat.Config{Observer: nopObserver{}})
		for i := range probe {
			copy(probe[i], probeClean[i])
			p := nat.Parse(probe[i])
			small.Outbound(&p, t0)
		}
		empty := translateEach(b, small, probe, probeClean)

		b.ReportMetric(float64(create.Nanoseconds())/scaleFlows, "create-ns/flow")
		b.ReportMetric(float64(full-before)/scaleFlows, "bytes/flow")
		b.ReportMetric(float64(int64(retained)-int64(before))/scaleFlows, "retained-bytes/flow")
		b.ReportMetric(lookup, "lookup-ns")
		b.ReportMetric(empty, "lookup-empty-ns")
	}
}

// translateEach translates each probe packet, restored from clean, many
// times over, and returns the nanoseconds per packet.
func translateEach(b *testing.B, tab *nat.Table, probe, clean [][]byte) float64 {
	const rounds = 200
	start := time.Now()
	for range rounds {
		for i, pkt := range probe {
			copy(pkt, clean[i])
			p := nat.Parse(pkt)
			if tab.Outbound(&p, t0) != nat.Forward {
				b.Fatal("probe packet not forwarded")
			}
		}
	}
	return float64(time.Since(start).Nanoseconds()) / float64(rounds*len(probe))
}

// nopObserver is told of flows and forgets them, as a log that discards
// would.
type nopObserver struct{}

func (nopObserver) FlowStarted(*nat.Flow)          {}
func (nopObserver) FlowDenied(nat.Denial)          {}
func (nopObserver) FlowEnded(*nat.Flow, time.Time) {}
