//go:build linux

package vnettun

import (
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"golang.zx2c4.com/wireguard/tun"
)

// BenchmarkForward measures single-stream iperf3 TCP throughput through
// the lab's forwarder (no NAT), b.N MiB per run, with the same forwarder
// over three devices:
//
//   - passthrough: this package, superpackets forwarded whole;
//   - passthrough-read1: the same with one read() per Read call;
//   - wireguard-split-gro: wireguard-go's tun.CreateTUN, which splits
//     superpackets on Read and coalesces them again (GRO) on Write.
//
// It reports iperf3's receiver Gbit/s, the packets the forwarder handled
// and the CPU time this process (the forwarder; iperf3 runs in child
// processes) spent per MiB. Run it as root, without -race:
//
//	go test -run '^$' -bench Forward -benchtime 4s ./netstack/vnettun/
func BenchmarkForward(b *testing.B) {
	requireLab(b, true)
	read1 := func(name string) (tun.Device, error) {
		d, err := Create(name, 1500)
		if err == nil {
			d.readBatch = 1
		}
		return d, err
	}
	for _, c := range []struct {
		name   string
		create func(string) (tun.Device, error)
	}{
		{"passthrough", createVnet},
		{"passthrough-read1", read1},
		{"wireguard-split-gro", createWireGuard},
	} {
		b.Run(c.name, func(b *testing.B) {
			l := newLab(b, c.create)
			var f forwarder
			f.start(l, nil, nil)
			b.SetBytes(1 << 20)
			cpu0 := processCPU(b)
			b.ResetTimer()
			r := iperf(b, l, addrB, iperfPt, int64(b.N)<<20)
			b.StopTimer()
			cpu := processCPU(b) - cpu0
			f.stop(b, l)
			b.ReportMetric(r.Gbps, "Gbit/s")
			b.ReportMetric(float64(f.packets.Load())/float64(b.N), "pkts/MiB")
			b.ReportMetric(float64(f.packets.Load())/float64(f.reads.Load()), "pkts/read")
			b.ReportMetric(float64(cpu.Microseconds())/float64(b.N), "fwd-cpu-µs/MiB")
		})
	}
}

// processCPU returns the user+system CPU time this process has used.
func processCPU(tb testing.TB) time.Duration {
	var ru unix.Rusage
	if err := unix.Getrusage(unix.RUSAGE_SELF, &ru); err != nil {
		tb.Fatalf("getrusage: %v", err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
