package netstack

import (
	"fmt"
	"io"
	"testing"
	"time"

	"github.com/fwx-dev/fwx/netstack/lab"
)

// BenchmarkTCPThroughput measures one TCP stream from a lab client into a
// Transparent stack that accepts and discards, as fwx's inside stack
// receives an upload. Both ends are gVisor stacks on this machine's CPUs,
// joined by the lab's in-memory device; the figure is for comparing
// changes to this package, not a line rate.
func BenchmarkTCPThroughput(b *testing.B) {
	r := newRig(b, Options{Transparent: true, Seed: 1}, rigOpts{quiet: true})
	client := r.addHost(b, "client", clientPrefix, clientGW)
	done := make(chan int64, 1)
	r.st.HandleTCP(func(req *TCPRequest) {
		c, err := req.Accept()
		if err != nil {
			b.Errorf("Accept: %v", err)
			done <- 0
			return
		}
		defer c.Close()
		// A large buffer, as fwx's splice will use (PERF-NOTES 3.C.17);
		// io.Copy to io.Discard would read 8 KiB at a time.
		buf := make([]byte, 256<<10)
		var n int64
		for {
			m, err := c.Read(buf)
			n += int64(m)
			if err == io.EOF {
				break
			}
			if err != nil {
				b.Errorf("Read: %v", err)
				break
			}
		}
		done <- n
	})
	cc, err := client.DialTCP(lab.Context(b, 20*time.Second), farServer)
	if err != nil {
		b.Fatal(err)
	}
	const chunkSize = 64 << 10
	buf := make([]byte, chunkSize)
	b.SetBytes(chunkSize)
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		if _, err := cc.Write(buf); err != nil {
			b.Fatal(err)
		}
	}
	cc.Close()
	got := recv(b, done, "receiver")
	b.StopTimer()
	if want := int64(b.N) * chunkSize; got != want {
		b.Fatalf("received %d bytes, want %d", got, want)
	}
	st := r.st.Stats()
	b.ReportMetric(float64(st.PacketsOut)/float64(st.OutputBatches), "pkts/batch")
}

// BenchmarkPayload measures what copying a packet read from the device
// into gVisor's buffers costs (payload, on every packet Deliver takes),
// for a segment, a superpacket that fills the largest chunk, and one
// that does not.
func BenchmarkPayload(b *testing.B) {
	for _, size := range []int{1500, 40000, 65535} {
		b.Run(fmt.Sprint(size), func(b *testing.B) {
			p := make([]byte, size)
			p[0] = 4 << 4
			b.SetBytes(int64(size))
			b.ReportAllocs()
			for range b.N {
				v := payload(p)
				v.Release()
			}
		})
	}
}
