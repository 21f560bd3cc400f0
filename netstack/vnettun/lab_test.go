//go:build linux

package vnettun

// The root-only lab: two network namespaces, each holding one TUN device
// whose fd stays in this test process, and a forwarder between the fds.
//
//	ns A: client, 10.9.0.2/24 fd09:a::2/64 on devA; 10.9.1.0/24, 10.9.2.0/24, fd09:b::/64 via devA
//	          │ fd
//	    forwarder (this process): devA.Read → [rewrite] → devB.Write and back
//	          │ fd
//	ns B: server, 10.9.1.2/24 fd09:b::2/64 on devB; 10.9.0.0/24, fd09:a::/64 via devB
//
// The devices get no IPv6 link-local address (addrgenmode none), so the
// only traffic is the test's.

import (
	"encoding/json"
	"errors"
	"math/rand/v2"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.zx2c4.com/wireguard/tun"

	"github.com/fwx-dev/fwx/netstack/internal/netns"
)

const (
	addrA   = "10.9.0.2"
	addrB   = "10.9.1.2"
	addrA6  = "fd09:a::2"
	addrB6  = "fd09:b::2"
	iperfPt = 5201
)

// requireLab skips tb, saying why, unless the lab can run: root and ip,
// plus iperf3 if needIperf.
func requireLab(tb testing.TB, needIperf bool) {
	tb.Helper()
	if os.Geteuid() != 0 {
		tb.Skip("vnettun lab: needs root (TUN devices and network namespaces); CI runs it as root")
	}
	cmds := []string{"ip"}
	if needIperf {
		cmds = append(cmds, "iperf3")
	}
	for _, cmd := range cmds {
		if _, err := exec.LookPath(cmd); err != nil {
			tb.Skipf("vnettun lab: %s not in PATH (scripts/deps installs it)", cmd)
		}
	}
}

// lab is two namespaces, each with one TUN device.
type lab struct {
	nsA, nsB string
	a, b     tun.Device
}

// newLab creates the namespaces and devices with create, moves and
// configures them, and registers their removal. Names are random so that
// concurrent runs do not collide.
func newLab(tb testing.TB, create func(name string) (tun.Device, error)) *lab {
	tb.Helper()
	id := strconv.FormatUint(rand.Uint64()&0xffffff, 16)
	l := &lab{nsA: "vnettun-a-" + id, nsB: "vnettun-b-" + id}
	devA, devB := "vta"+id, "vtb"+id
	for _, ns := range []string{l.nsA, l.nsB} {
		run(tb, "ip", "netns", "add", ns)
		tb.Cleanup(func() { runQuiet("ip", "netns", "del", ns) })
	}
	var err error
	if l.a, err = create(devA); err != nil {
		tb.Fatalf("create %s: %v", devA, err)
	}
	tb.Cleanup(func() { l.a.Close() })
	if l.b, err = create(devB); err != nil {
		tb.Fatalf("create %s: %v", devB, err)
	}
	tb.Cleanup(func() { l.b.Close() })

	for _, c := range []struct{ ns, dev, addr, addr6 string }{
		{l.nsA, devA, addrA + "/24", addrA6 + "/64"},
		{l.nsB, devB, addrB + "/24", addrB6 + "/64"},
	} {
		run(tb, "ip", "link", "set", c.dev, "netns", c.ns)
		run(tb, "ip", "-n", c.ns, "link", "set", "lo", "up")
		run(tb, "ip", "-n", c.ns, "link", "set", c.dev, "addrgenmode", "none")
		run(tb, "ip", "-n", c.ns, "addr", "add", c.addr, "dev", c.dev)
		run(tb, "ip", "-n", c.ns, "addr", "add", c.addr6, "dev", c.dev, "nodad")
		run(tb, "ip", "-n", c.ns, "link", "set", c.dev, "up")
	}
	run(tb, "ip", "-n", l.nsA, "route", "add", "10.9.1.0/24", "dev", devA)
	run(tb, "ip", "-n", l.nsA, "route", "add", "10.9.2.0/24", "dev", devA) // NAT'd address
	run(tb, "ip", "-n", l.nsA, "route", "add", "fd09:b::/64", "dev", devA)
	run(tb, "ip", "-n", l.nsB, "route", "add", "10.9.0.0/24", "dev", devB)
	run(tb, "ip", "-n", l.nsB, "route", "add", "fd09:a::/64", "dev", devB)
	return l
}

func run(tb testing.TB, name string, args ...string) string {
	tb.Helper()
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		tb.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return string(out)
}

func runQuiet(name string, args ...string) { _ = exec.Command(name, args...).Run() }

// rewriter changes a packet in place before it is written; it gets the
// whole buffer (virtio header at offset-VirtioHdrLen) and the packet size.
type rewriter func(buf []byte, offset, size int)

// forwarder moves packets between the lab's devices, as fwx will.
type forwarder struct {
	reads, packets, superpackets atomic.Uint64
	wg                           sync.WaitGroup
}

// start runs one goroutine per direction until a Read fails (Close).
// rw, if not nil, is applied to packets going from A to B (ab) and back.
func (f *forwarder) start(l *lab, ab, ba rewriter) {
	for _, d := range []struct {
		from, to tun.Device
		rw       rewriter
	}{{l.a, l.b, ab}, {l.b, l.a, ba}} {
		f.wg.Add(1)
		go func() {
			defer f.wg.Done()
			f.loop(d.from, d.to, d.rw)
		}()
	}
}

func (f *forwarder) loop(from, to tun.Device, rw rewriter) {
	const offset = testOffset
	n := max(from.BatchSize(), to.BatchSize())
	bufs, sizes, out := make([][]byte, n), make([]int, n), make([][]byte, n)
	for i := range bufs {
		bufs[i] = make([]byte, offset+MaxPacket)
	}
	for {
		count, err := from.Read(bufs, sizes, offset)
		if err != nil {
			if errors.Is(err, tun.ErrTooManySegments) {
				continue
			}
			return
		}
		var gso uint64
		for i := range count {
			if ParseHdr(bufs[i][offset-VirtioHdrLen:]).IsGSO() {
				gso++
			}
			if rw != nil {
				rw(bufs[i], offset, sizes[i])
			}
			out[i] = bufs[i][:offset+sizes[i]]
		}
		f.reads.Add(1)
		f.packets.Add(uint64(count))
		f.superpackets.Add(gso)
		to.Write(out[:count], offset)
	}
}

// stop closes the devices and waits for the forwarder to end.
func (f *forwarder) stop(tb testing.TB, l *lab) {
	tb.Helper()
	l.a.Close()
	l.b.Close()
	done := make(chan struct{})
	go func() { f.wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		tb.Fatalf("forwarder goroutines still running 10 s after Close")
	}
}

// iperfResult is what the lab needs from iperf3's JSON report.
type iperfResult struct {
	Sent, Received uint64
	Gbps           float64
}

// iperfSum is one of the totals in iperf3's JSON report.
type iperfSum struct {
	Bytes         uint64  `json:"bytes"`
	BitsPerSecond float64 `json:"bits_per_second"`
}

// iperf runs a single-stream TCP iperf3 transfer of n bytes from ns A to
// ns B (the server listens on addrB; the client dials dst:port) and
// returns the receiver's figures.
func iperf(tb testing.TB, l *lab, dst string, port int, n int64) iperfResult {
	tb.Helper()
	srv := exec.Command("ip", "netns", "exec", l.nsB,
		"iperf3", "-s", "-1", "-B", addrB, "-p", strconv.Itoa(iperfPt))
	if err := srv.Start(); err != nil {
		tb.Fatalf("start iperf3 server: %v", err)
	}
	defer func() {
		srv.Process.Kill()
		srv.Wait()
	}()

	var out []byte
	var err error
	for try := 0; try < 50; try++ { // the server needs a moment to listen
		cli := exec.Command("ip", "netns", "exec", l.nsA, "iperf3", "-c", dst,
			"-p", strconv.Itoa(port), "-n", strconv.FormatInt(n, 10), "--json", "--connect-timeout", "2000")
		out, err = cli.Output()
		if !strings.Contains(string(out), "unable to connect") {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if err != nil {
		tb.Fatalf("iperf3 client: %v\n%s", err, out)
	}
	var rep struct {
		End struct {
			SumSent     iperfSum `json:"sum_sent"`
			SumReceived iperfSum `json:"sum_received"`
		} `json:"end"`
		Error string `json:"error"`
	}
	if err := json.Unmarshal(out, &rep); err != nil {
		tb.Fatalf("iperf3 report: %v\n%s", err, out)
	}
	if rep.Error != "" {
		tb.Fatalf("iperf3: %s", rep.Error)
	}
	return iperfResult{
		Sent:     rep.End.SumSent.Bytes,
		Received: rep.End.SumReceived.Bytes,
		Gbps:     rep.End.SumReceived.BitsPerSecond / 1e9,
	}
}

// tcpInCsumErrors returns the TCP InCsumErrors counter of namespace ns:
// segments its kernel dropped for a bad checksum.
func tcpInCsumErrors(tb testing.TB, ns string) uint64 {
	tb.Helper()
	return snmpCounter(tb, ns, "Tcp:", "InCsumErrors")
}

// snmpCounter returns counter name of the /proc/net/snmp line pair that
// starts with prefix, in namespace ns.
func snmpCounter(tb testing.TB, ns, prefix, name string) uint64 {
	tb.Helper()
	v, err := netns.SNMP(ns, prefix, name)
	if err != nil {
		tb.Fatal(err)
	}
	return v
}

func createVnet(name string) (tun.Device, error) { return Create(name, 1500) }

func createWireGuard(name string) (tun.Device, error) { return tun.CreateTUN(name, 1500) }
