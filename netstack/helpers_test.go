package netstack

import (
	"fmt"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.zx2c4.com/wireguard/tun"
	"gvisor.dev/gvisor/pkg/refs"

	"github.com/fwx-dev/fwx/netstack/lab"
	"github.com/fwx-dev/fwx/netstack/vnettun"
)

// Addresses of the test topologies. The inside segment has a client whose
// default gateway is the segment (where a Transparent stack answers for
// every address); the outside segment has a server next to the outside
// stack's own address.
var (
	clientPrefix = netip.MustParsePrefix("10.0.1.2/24")
	clientGW     = netip.MustParseAddr("10.0.1.1")
	farServer    = netip.MustParseAddrPort("203.0.113.5:80") // no host has it: the stack answers
	outsideAddr  = netip.MustParseAddr("198.51.100.1")
	serverPrefix = netip.MustParsePrefix("198.51.100.10/24")
)

// rig is a Stack attached to a lab segment by a pump goroutine, as fwx
// attaches its stacks to TUN devices.
type rig struct {
	net  *lab.Network
	seg  *lab.Segment
	st   *Stack
	log  *ringLog
	pump sync.WaitGroup
}

// liveRigs counts the rigs not yet torn down; gVisor's leak check runs
// when the last one goes.
var liveRigs atomic.Int32

// rigOffset is the headroom the rig asks the Stack to leave before each
// output packet, to exercise OutputOffset end to end.
const rigOffset = 16

// rigOpts configures the lab side of a rig.
type rigOpts struct {
	quiet bool // no packet log (bulk transfers)
	ipv6  bool // hosts may have IPv6 addresses
	gso   bool // Options.GSO, with Output splitting as the kernel would
}

// newRig builds a network with one segment and a Stack configured by opts
// (Output and OutputOffset are filled in). Its cleanup closes the stack
// and the network, waits for the pump, checks that no host dropped a
// packet and that every goroutine ended; on failure it prints the last
// packets.
func newRig(tb testing.TB, opts Options, ro rigOpts) *rig {
	tb.Helper()
	lab.CheckGoroutines(tb)
	r := &rig{log: newRingLog(300)}
	liveRigs.Add(1)
	labOpts := lab.Options{Seed: 1, IPv6: ro.ipv6}
	if !ro.quiet {
		labOpts.Logf = r.log.logf
	}
	r.net = lab.New(labOpts)
	r.seg = r.net.NewSegment("seg")
	dev := r.seg.Device()
	opts.OutputOffset = rigOffset
	opts.Output = func(pkts [][]byte) error {
		_, err := dev.Write(pkts, rigOffset)
		return err
	}
	var sp *gsoSplitter
	if ro.gso {
		sp = newGSOSplitter(dev, rigOffset, 1500)
		opts.GSO, opts.Output = true, sp.output
	}
	st, err := New(opts)
	if err != nil {
		r.net.Close()
		tb.Fatal(err)
	}
	r.st = st
	r.pump.Add(1)
	go r.runPump()
	tb.Cleanup(func() {
		if err := r.st.Close(); err != nil {
			tb.Errorf("Close: %v", err)
		}
		r.net.Close()
		r.pump.Wait()
		if liveRigs.Add(-1) == 0 {
			// Nothing of gVisor's is alive any more: every reference
			// counted object (packets, buffers) must have been released.
			refs.DoRepeatedLeakCheck()
		}
		if sp != nil {
			if n := sp.bad.Load(); n != 0 {
				tb.Errorf("%d packets with a virtio header that does not describe them", n)
			}
		}
		if st := r.seg.Stats(); st.CaptureDrops != 0 {
			tb.Errorf("segment dropped %d captured packets", st.CaptureDrops)
		}
		if tb.Failed() {
			tb.Logf("last packets:\n%s", r.log.dump())
		}
	})
	return r
}

// runPump reads batches from the segment device and delivers them to the
// stack, as fwx's reader does, until the device closes.
func (r *rig) runPump() {
	defer r.pump.Done()
	dev := r.seg.Device()
	bufs := make([][]byte, dev.BatchSize())
	for i := range bufs {
		bufs[i] = make([]byte, 65535)
	}
	sizes := make([]int, len(bufs))
	pkts := make([][]byte, 0, len(bufs))
	for {
		n, err := dev.Read(bufs, sizes, 0)
		if err != nil {
			return
		}
		pkts = pkts[:0]
		for i := range n {
			pkts = append(pkts, bufs[i][:sizes[i]])
		}
		r.st.Deliver(pkts)
	}
}

// gsoSplitter is the Output of a rig with Options.GSO: it does what the
// kernel behind a vnettun.Device does with what the stack writes, cutting
// each superpacket into segments and completing partial checksums
// (vnettun.Split), and writes the resulting MTU-sized packets to the lab
// device, which wants ordinary packets. It counts the packets whose
// virtio header Split rejects or whose segments exceed the MTU.
type gsoSplitter struct {
	dev    tun.Device
	offset int
	mtu    int
	out    [][]byte
	sizes  []int
	segs   [][]byte

	supers, bad atomic.Uint64
}

func newGSOSplitter(dev tun.Device, offset, mtu int) *gsoSplitter {
	// A superpacket has at most 64 KiB / MSS segments; 128 covers an
	// MSS down to 512 bytes.
	const maxSegs = 128
	sp := &gsoSplitter{dev: dev, offset: offset, mtu: mtu, sizes: make([]int, maxSegs), segs: make([][]byte, 0, maxSegs)}
	sp.out = make([][]byte, maxSegs)
	for i := range sp.out {
		sp.out[i] = make([]byte, offset+vnettun.MaxPacket)
	}
	return sp
}

// output is an Options.Output; the stack never calls it concurrently.
func (sp *gsoSplitter) output(pkts [][]byte) error {
	for _, p := range pkts {
		h := vnettun.ParseHdr(p[sp.offset-vnettun.VirtioHdrLen:])
		if h.IsGSO() {
			sp.supers.Add(1)
		}
		n, err := vnettun.Split(h, p[sp.offset:], sp.out, sp.sizes, sp.offset)
		if err != nil {
			sp.bad.Add(1)
			continue
		}
		sp.segs = sp.segs[:0]
		for i := range n {
			if sp.sizes[i] > sp.mtu {
				sp.bad.Add(1)
			}
			sp.segs = append(sp.segs, sp.out[i][:sp.offset+sp.sizes[i]])
		}
		if _, err := sp.dev.Write(sp.segs, sp.offset); err != nil {
			return err
		}
	}
	return nil
}

// addHost adds a host to the rig's segment and fails the test on error.
func (r *rig) addHost(tb testing.TB, name string, addr netip.Prefix, gw netip.Addr) *lab.Host {
	tb.Helper()
	h, err := r.seg.AddHost(name, addr, gw)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() {
		if st := h.Stats(); st.SendDrops != 0 {
			tb.Errorf("host %s dropped %d packets", name, st.SendDrops)
		}
	})
	return h
}

// ringLog keeps the last lines logged.
type ringLog struct {
	mu    sync.Mutex
	lines []string
	next  int
	full  bool
}

func newRingLog(n int) *ringLog { return &ringLog{lines: make([]string, n)} }

func (l *ringLog) logf(format string, args ...any) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.lines[l.next] = fmt.Sprintf(format, args...)
	l.next = (l.next + 1) % len(l.lines)
	l.full = l.full || l.next == 0
}

func (l *ringLog) dump() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	var b strings.Builder
	if l.full {
		for _, s := range l.lines[l.next:] {
			b.WriteString("  " + s + "\n")
		}
	}
	for _, s := range l.lines[:l.next] {
		b.WriteString("  " + s + "\n")
	}
	return b.String()
}

// recv waits for a value on ch, failing the test after 10 s.
func recv[T any](tb testing.TB, ch <-chan T, what string) T {
	tb.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(10 * time.Second):
		tb.Fatalf("timed out waiting for %s", what)
		panic("unreachable")
	}
}

// waitFor waits until cond holds, failing the test after 10 s. It is for
// conditions with no event to wait on (counters).
func waitFor(tb testing.TB, what string, cond func() bool) {
	tb.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			tb.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}
