//go:build linux

package netstack

// The root-only kernel test: a vnettun.Device moved into a network
// namespace of its own, whose fd stays in this process, attached to a
// Transparent stack as fwx attaches its inside stack:
//
//	netns fwxgso-<id>: kernel TCP client, 10.98.0.2/24 on fwg<id>
//	        │ fd (virtio-net headers)
//	this process: Device.Read ─Split/Finish─► Stack.Deliver
//	              Stack Output ─► Device.Write (GSO: the kernel segments)
//
// The device gets no IPv6 link-local address (addrgenmode none), so the
// only traffic is the test's.

import (
	"bytes"
	"crypto/sha256"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"gvisor.dev/gvisor/pkg/refs"

	"github.com/fwx-dev/fwx/netstack/internal/netns"
	"github.com/fwx-dev/fwx/netstack/lab"
	"github.com/fwx-dev/fwx/netstack/vnettun"
)

const (
	kernelAddr = "10.98.0.2" // the namespace's address
	kernelDst  = "10.98.0.1" // what its client dials: the Transparent stack answers
	kernelPort = 5201        // the client's destination port
	kernelOff  = 16          // headroom, as fwx's
	kernelMTU  = 1500        // the device's and the stack's
	kernelWait = time.Minute // bound on one transfer
	kernelSegs = 128         // Split's output buffers: enough for an MSS of 512
)

// TestGSOKernel: a Transparent stack sends gsoKernelBytes to the kernel of
// a namespace through a vnettun.Device, with Options.GSO and without. Both
// runs must deliver every byte intact, with no checksum error in the
// kernel; with GSO the link must have emitted superpackets, and without it
// none larger than the MTU. The two throughputs are logged: a
// measurement, not an assertion.
func TestGSOKernel(t *testing.T) {
	requireRoot(t)
	var gbps [2]float64
	for i, gso := range []bool{false, true} {
		t.Run(fmt.Sprintf("GSO=%v", gso), func(t *testing.T) {
			gbps[i] = kernelTransfer(t, gso, gsoKernelBytes)
		})
	}
	if t.Failed() {
		return
	}
	t.Logf("netstack → kernel, %d MiB, one TCP stream: GSO off %.2f Gbit/s, GSO on %.2f Gbit/s (×%.2f)",
		gsoKernelBytes>>20, gbps[0], gbps[1], gbps[1]/gbps[0])
}

// requireRoot skips tb, saying why, unless it can create TUN devices and
// network namespaces.
func requireRoot(tb testing.TB) {
	tb.Helper()
	if os.Geteuid() != 0 {
		tb.Skip("netstack kernel test: needs root (TUN device and network namespace); CI runs it as root")
	}
	if _, err := exec.LookPath("ip"); err != nil {
		tb.Skip("netstack kernel test: ip (iproute2) not in PATH")
	}
}

// kernelTransfer sets up the namespace, device and stack, has the
// namespace's kernel connect to the stack and receive n bytes, checks
// them and the counters, and returns the receiver's goodput in Gbit/s.
func kernelTransfer(t *testing.T, gso bool, n int64) float64 {
	lab.CheckGoroutines(t)
	id := strconv.FormatUint(rand.Uint64()&0xffffff, 16)
	ns, name := "fwxgso-"+id, "fwg"+id
	cmd(t, "ip", "netns", "add", ns)
	t.Cleanup(func() { _ = exec.Command("ip", "netns", "del", ns).Run() })
	// Cleanups run in reverse: the stack closes, then the device, which
	// ends the pump; only then is nothing of gVisor's in flight, and the
	// leak check runs when the last stack of the test binary is gone.
	liveRigs.Add(1)
	t.Cleanup(func() {
		if liveRigs.Add(-1) == 0 {
			refs.DoRepeatedLeakCheck()
		}
	})
	dev, err := vnettun.Create(name, kernelMTU)
	if err != nil {
		t.Fatalf("create %s: %v", name, err)
	}
	var pump sync.WaitGroup
	t.Cleanup(func() {
		dev.Close()
		pump.Wait()
	})
	cmd(t, "ip", "link", "set", name, "netns", ns)
	cmd(t, "ip", "-n", ns, "link", "set", "lo", "up")
	cmd(t, "ip", "-n", ns, "link", "set", name, "addrgenmode", "none")
	cmd(t, "ip", "-n", ns, "addr", "add", kernelAddr+"/24", "dev", name)
	cmd(t, "ip", "-n", ns, "link", "set", name, "up")

	out := &kernelOutput{dev: dev, gso: gso}
	st, err := New(Options{Transparent: true, MTU: kernelMTU, Output: out.write,
		OutputOffset: kernelOff, GSO: gso, Seed: 1})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := st.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	var pumpErrs atomic.Uint64
	pump.Add(1)
	go func() {
		defer pump.Done()
		pumpDevice(dev, st, &pumpErrs)
	}()

	sent := make(chan []byte, 1)
	st.HandleTCP(func(r *TCPRequest) {
		c, err := r.Accept()
		if err != nil {
			t.Errorf("Accept: %v", err)
			sent <- nil
			return
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(kernelWait))
		sent <- writeNumbered(t, c, n)
	})

	var c net.Conn
	if err := netns.Do(ns, func() (err error) {
		c, err = net.DialTimeout("tcp", net.JoinHostPort(kernelDst, strconv.Itoa(kernelPort)), 10*time.Second)
		return err
	}); err != nil {
		t.Fatalf("dial from %s: %v", ns, err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(kernelWait))
	h := sha256.New()
	start := time.Now()
	got, err := io.CopyBuffer(h, c, make([]byte, 256<<10))
	elapsed := time.Since(start)
	if err != nil {
		t.Fatalf("receive: %v after %d bytes", err, got)
	}
	want := recv(t, sent, "sender")
	if got != n || !bytes.Equal(h.Sum(nil), want) {
		t.Fatalf("kernel received %d bytes (SHA-256 %x), stack sent %d (%x)", got, h.Sum(nil), n, want)
	}

	s := st.Stats()
	if s.OutputErrors != 0 {
		t.Errorf("%d Output errors", s.OutputErrors)
	}
	if e := snmp(t, ns, "Tcp:", "InCsumErrors"); e != 0 {
		t.Errorf("the kernel dropped %d segments for a bad checksum", e)
	}
	if e := pumpErrs.Load(); e != 0 {
		t.Errorf("%d packets from the kernel could not be split or finished", e)
	}
	if d := dev.Stats(); d.SplitWrites != 0 {
		t.Logf("the kernel refused superpackets: vnettun split %d of them itself", d.SplitWrites)
	}
	supers, oversize := out.supers.Load(), out.oversize.Load()
	if supers != s.SuperpacketsOut {
		t.Errorf("Output saw %d superpacket headers, Stats.SuperpacketsOut = %d", supers, s.SuperpacketsOut)
	}
	if gso && s.SuperpacketsOut == 0 {
		t.Errorf("GSO on, but no superpackets among %d packets out", s.PacketsOut)
	}
	if !gso && (s.SuperpacketsOut != 0 || oversize != 0) {
		t.Errorf("GSO off, but %d superpackets and %d packets over the MTU", s.SuperpacketsOut, oversize)
	}
	gbps := float64(n) * 8 / elapsed.Seconds() / 1e9
	t.Logf("%.2f Gbit/s; %d packets out in %d batches, %d superpackets (%.0f bytes per write)",
		gbps, s.PacketsOut, s.OutputBatches, s.SuperpacketsOut, float64(out.bytes.Load())/float64(s.PacketsOut))
	return gbps
}

// kernelOutput is the stack's Output: it writes to the device, as fwx's
// usermode.go does, and counts what it sees in the virtio headers.
type kernelOutput struct {
	dev *vnettun.Device
	gso bool

	supers, oversize, bytes atomic.Uint64
}

func (o *kernelOutput) write(pkts [][]byte) error {
	for _, p := range pkts {
		hdr := p[kernelOff-vnettun.VirtioHdrLen : kernelOff]
		if !o.gso {
			vnettun.ClearHdr(hdr) // the headroom is the caller's
		}
		if vnettun.ParseHdr(hdr).IsGSO() {
			o.supers.Add(1)
		} else if len(p)-kernelOff > kernelMTU {
			o.oversize.Add(1)
		}
		o.bytes.Add(uint64(len(p) - kernelOff))
	}
	_, err := o.dev.Write(pkts, kernelOff)
	return err
}

// pumpDevice reads from dev and delivers to st until dev is closed, making
// what the kernel sends ordinary packets first (superpackets split,
// partial checksums completed), as fwx's reader does. It counts in bad the
// packets it had to drop.
func pumpDevice(dev *vnettun.Device, st *Stack, bad *atomic.Uint64) {
	bufs, sizes := make([][]byte, vnettun.BatchSize), make([]int, vnettun.BatchSize)
	for i := range bufs {
		bufs[i] = make([]byte, kernelOff+vnettun.MaxPacket)
	}
	segs, segSizes := make([][]byte, kernelSegs), make([]int, kernelSegs)
	for i := range segs {
		segs[i] = make([]byte, kernelMTU)
	}
	var pkts [][]byte
	for {
		n, err := dev.Read(bufs, sizes, kernelOff)
		if err != nil {
			return
		}
		pkts = pkts[:0]
		for i := range n {
			h := vnettun.ParseHdr(bufs[i][kernelOff-vnettun.VirtioHdrLen:])
			p := bufs[i][kernelOff : kernelOff+sizes[i]]
			if h.IsGSO() {
				// The kernel is only the receiver here, so this is
				// rare: Deliver the segments at once, before segs is
				// reused.
				m, err := vnettun.Split(h, p, segs, segSizes, 0)
				if err != nil {
					bad.Add(1)
					continue
				}
				out := make([][]byte, m)
				for j := range m {
					out[j] = segs[j][:segSizes[j]]
				}
				st.Deliver(out)
				continue
			}
			if err := vnettun.Finish(h, p); err != nil {
				bad.Add(1)
				continue
			}
			pkts = append(pkts, p)
		}
		st.Deliver(pkts)
	}
}

// cmd runs a command and fails tb if it fails.
func cmd(tb testing.TB, name string, args ...string) {
	tb.Helper()
	if out, err := exec.Command(name, args...).CombinedOutput(); err != nil {
		tb.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
}

// snmp returns counter name of the /proc/net/snmp line pair that starts
// with prefix, in namespace ns.
func snmp(tb testing.TB, ns, prefix, name string) uint64 {
	tb.Helper()
	v, err := netns.SNMP(ns, prefix, name)
	if err != nil {
		tb.Fatal(err)
	}
	return v
}
