package lab

import (
	"fmt"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.zx2c4.com/wireguard/tun"
)

// Addresses of the standard test topology:
//
//	client 10.0.1.2 ─ seg "int" ─ [forwarder: 10.0.1.1 | 10.0.2.1] ─ seg "ext" ─ server 10.0.2.2
//
// The forwarder stands in for fwx: it copies packets between the two
// segment devices unchanged (routing, no NAT).
var (
	clientAddr = netip.MustParsePrefix("10.0.1.2/24")
	clientGW   = netip.MustParseAddr("10.0.1.1")
	serverAddr = netip.MustParsePrefix("10.0.2.2/24")
	serverGW   = netip.MustParseAddr("10.0.2.1")
)

// fwdOffset is the headroom the forwarder asks the devices for, as fwx
// will, to exercise offset handling end to end.
const fwdOffset = 16

// topo is a built test topology.
type topo struct {
	net            *Network
	in, out        *Segment
	client, server *Host
	fwd            *forwarder
}

// newTopo builds the standard topology with a forwarder between the
// segments. Its cleanup closes the network, waits for the forwarder, checks
// that nothing was dropped and that no goroutine was left behind.
func newTopo(tb testing.TB, opts Options) *topo {
	tb.Helper()
	CheckGoroutines(tb)
	n := New(opts)
	tp := &topo{net: n, in: n.NewSegment("int"), out: n.NewSegment("ext")}
	var err error
	if tp.client, err = tp.in.AddHost("client", clientAddr, clientGW); err != nil {
		tb.Fatal(err)
	}
	if tp.server, err = tp.out.AddHost("server", serverAddr, serverGW); err != nil {
		tb.Fatal(err)
	}
	tp.fwd = startForwarder(tp.in.Device(), tp.out.Device())
	tb.Cleanup(func() {
		n.Close()
		tp.fwd.wg.Wait()
		for _, h := range []*Host{tp.client, tp.server} {
			if st := h.Stats(); st.SendDrops != 0 {
				tb.Errorf("host %s dropped %d packets", h.Name(), st.SendDrops)
			}
		}
		for _, s := range []*Segment{tp.in, tp.out} {
			if st := s.Stats(); st.CaptureDrops != 0 {
				tb.Errorf("segment %s dropped %d captured packets", s.Name(), st.CaptureDrops)
			}
		}
		if tb.Failed() {
			tb.Logf("packets forwarded:\n%s", tp.fwd.dump())
		}
	})
	return tp
}

// forwarder copies packets both ways between two devices and records them.
type forwarder struct {
	wg sync.WaitGroup
	mu struct {
		sync.Mutex
		trace   [][]byte
		changed chan struct{} // closed and replaced on every append
	}
}

func startForwarder(a, b tun.Device) *forwarder {
	f := &forwarder{}
	f.mu.changed = make(chan struct{})
	f.wg.Add(2)
	go f.run(a, b)
	go f.run(b, a)
	return f
}

// run reads batches from src and writes them to dst until a device closes.
func (f *forwarder) run(src, dst tun.Device) {
	defer f.wg.Done()
	bufs := make([][]byte, src.BatchSize())
	for i := range bufs {
		bufs[i] = make([]byte, fwdOffset+65535)
	}
	sizes := make([]int, len(bufs))
	out := make([][]byte, 0, len(bufs))
	for {
		n, err := src.Read(bufs, sizes, fwdOffset)
		if err != nil {
			return
		}
		out = out[:0]
		for i := range n {
			out = append(out, bufs[i][:fwdOffset+sizes[i]])
			f.record(bufs[i][fwdOffset : fwdOffset+sizes[i]])
		}
		if _, err := dst.Write(out, fwdOffset); err != nil {
			return
		}
	}
}

func (f *forwarder) record(pkt []byte) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.mu.trace = append(f.mu.trace, append([]byte(nil), pkt...))
	close(f.mu.changed)
	f.mu.changed = make(chan struct{})
}

// waitPacket waits until the forwarder has carried a packet for which
// match is true, and returns it. It fails the test after 10 s.
func (f *forwarder) waitPacket(tb testing.TB, what string, match func(pkt []byte) bool) []byte {
	tb.Helper()
	timeout := time.After(10 * time.Second)
	seen := 0
	for {
		f.mu.Lock()
		trace, changed := f.mu.trace, f.mu.changed
		f.mu.Unlock()
		for ; seen < len(trace); seen++ {
			if match(trace[seen]) {
				return trace[seen]
			}
		}
		select {
		case <-changed:
		case <-timeout:
			tb.Fatalf("no %s forwarded within 10s", what)
		}
	}
}

func (f *forwarder) dump() string {
	f.mu.Lock()
	defer f.mu.Unlock()
	var b strings.Builder
	for _, p := range f.mu.trace {
		b.WriteString("  " + PacketString(p) + "\n")
	}
	return b.String()
}

func sprintf(format string, args ...any) string { return fmt.Sprintf(format, args...) }
