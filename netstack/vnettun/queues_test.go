//go:build linux

package vnettun

import (
	"math/rand/v2"
	"net"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/checksum"
	"gvisor.dev/gvisor/pkg/tcpip/header"

	"github.com/fwx-dev/fwx/netstack/internal/netns"
)

// queueLab is one namespace with a multi-queue device in it, the queues
// read by a goroutine each into got.
type queueLab struct {
	ns  string
	qs  []*Device
	got chan queuedPacket
}

// queuedPacket is the source port of a UDP packet and the queue it came
// from.
type queuedPacket struct {
	queue int
	sport uint16
}

func newQueueLab(t *testing.T, n int) *queueLab {
	t.Helper()
	requireLab(t, false)
	id := strconv.FormatUint(rand.Uint64()&0xffffff, 16)
	l := &queueLab{ns: "vnettun-q-" + id, got: make(chan queuedPacket, 1024)}
	run(t, "ip", "netns", "add", l.ns)
	t.Cleanup(func() { runQuiet("ip", "netns", "del", l.ns) })
	qs, err := CreateQueues("vtq"+id, 1500, n)
	if err != nil {
		t.Fatalf("CreateQueues: %v", err)
	}
	l.qs = qs
	for _, q := range qs {
		t.Cleanup(func() { q.Close() })
	}
	dev := qs[0].name
	run(t, "ip", "link", "set", dev, "netns", l.ns)
	run(t, "ip", "-n", l.ns, "link", "set", "lo", "up")
	run(t, "ip", "-n", l.ns, "link", "set", dev, "addrgenmode", "none")
	run(t, "ip", "-n", l.ns, "addr", "add", addrA+"/24", "dev", dev)
	run(t, "ip", "-n", l.ns, "link", "set", dev, "up")
	run(t, "ip", "-n", l.ns, "route", "add", "10.9.1.0/24", "dev", dev)
	for i, q := range qs {
		go func() {
			bufs, sizes := [][]byte{make([]byte, testOffset+MaxPacket)}, []int{0}
			for {
				if _, err := q.Read(bufs, sizes, testOffset); err != nil {
					return
				}
				pkt := bufs[0][testOffset : testOffset+sizes[0]]
				if len(pkt) < header.IPv4MinimumSize+header.UDPMinimumSize || pkt[0]>>4 != 4 ||
					header.IPv4(pkt).Protocol() != uint8(header.UDPProtocolNumber) {
					continue
				}
				l.got <- queuedPacket{i, header.UDP(pkt[header.IPv4MinimumSize:]).SourcePort()}
			}
		}()
	}
	return l
}

// socket returns a UDP socket in the lab's namespace, on port, connected
// to addrB:9 (through the device).
func (l *queueLab) socket(t *testing.T, port int) *net.UDPConn {
	t.Helper()
	var c *net.UDPConn
	if err := netns.Do(l.ns, func() (err error) {
		c, err = net.DialUDP("udp4", &net.UDPAddr{IP: net.ParseIP(addrA), Port: port}, &net.UDPAddr{IP: net.ParseIP(addrB), Port: 9})
		return err
	}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// next returns the next packet read from any queue.
func (l *queueLab) next(t *testing.T) queuedPacket {
	t.Helper()
	select {
	case p := <-l.got:
		return p
	case <-time.After(5 * time.Second):
		t.Fatal("no packet from the device within 5 s")
		return queuedPacket{}
	}
}

// TestCreateQueues checks what fwx's readers rely on: each queue is a
// device of its own, the kernel spreads flows over the queues and keeps a
// flow on one, and a flow whose packets are written to a queue comes back
// on that queue.
func TestCreateQueues(t *testing.T) {
	const n, flows = 4, 64
	l := newQueueLab(t, n)
	if len(l.qs) != n {
		t.Fatalf("%d queues, want %d", len(l.qs), n)
	}
	for _, q := range l.qs[1:] {
		if q.name != l.qs[0].name || q.Offloads() != l.qs[0].Offloads() || q.mtu != 1500 {
			t.Errorf("queue %s, offloads %v, MTU %d; want %s, %v, 1500", q.name, q.Offloads(), q.mtu, l.qs[0].name, l.qs[0].Offloads())
		}
	}

	// Each flow twice: it must come on the same queue both times.
	socks := make([]*net.UDPConn, flows)
	for i := range socks {
		socks[i] = l.socket(t, 20000+i)
	}
	queueOf := map[uint16]int{}
	perQueue := make([]int, n)
	for range 2 {
		for _, c := range socks {
			if _, err := c.Write([]byte("x")); err != nil {
				t.Fatal(err)
			}
		}
		for range flows {
			p := l.next(t)
			if q, ok := queueOf[p.sport]; ok && q != p.queue {
				t.Errorf("flow from port %d came on queue %d, then on queue %d", p.sport, q, p.queue)
			}
			queueOf[p.sport] = p.queue
			perQueue[p.queue]++
		}
	}
	used := 0
	for _, c := range perQueue {
		if c > 0 {
			used++
		}
	}
	if len(queueOf) != flows || used < 2 {
		t.Errorf("%d flows seen, spread over queues %v; want %d over more than one", len(queueOf), perQueue, flows)
	}

	// A reply written on another queue moves the flow there.
	sport := uint16(20000)
	from := queueOf[sport]
	to := (from + 1) % n
	reply := udpPacket(netip.MustParseAddrPort(addrB+":9"), netip.AddrPortFrom(netip.MustParseAddr(addrA), sport))
	if _, err := l.qs[to].Write([][]byte{reply}, testOffset); err != nil {
		t.Fatalf("write the reply: %v", err)
	}
	socks[0].SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := socks[0].Read(make([]byte, 16)); err != nil {
		t.Fatalf("the reply did not reach the socket: %v", err)
	}
	if _, err := socks[0].Write([]byte("y")); err != nil {
		t.Fatal(err)
	}
	if p := l.next(t); p.sport != sport || p.queue != to {
		t.Errorf("after a reply on queue %d, the flow's next packet came on queue %d (port %d), was on %d", to, p.queue, p.sport, from)
	}
}

// TestCreateQueuesSingle checks that a persistent device made without
// multi_queue gets its one queue, and that n <= 1 is Create.
func TestCreateQueuesSingle(t *testing.T) {
	requireLab(t, false)
	name := "vts" + strconv.FormatUint(rand.Uint64()&0xffffff, 16)
	run(t, "ip", "tuntap", "add", "dev", name, "mode", "tun")
	t.Cleanup(func() { runQuiet("ip", "link", "del", name) })
	qs, err := CreateQueues(name, 0, 4)
	if err != nil {
		t.Fatalf("CreateQueues on a single-queue device: %v", err)
	}
	for _, q := range qs {
		q.Close()
	}
	if len(qs) != 1 {
		t.Errorf("%d queues on a device without multi_queue, want 1", len(qs))
	}

	qs, err = CreateQueues("vtz%d", 1500, 1)
	if err != nil {
		t.Fatal(err)
	}
	defer qs[0].Close()
	if len(qs) != 1 {
		t.Errorf("CreateQueues(1) = %d queues", len(qs))
	}
}

// udpPacket returns, after testOffset bytes of zero headroom (an empty
// virtio header), a UDP packet from src to dst with complete checksums.
func udpPacket(src, dst netip.AddrPort) []byte {
	const payload = 4
	b := make([]byte, testOffset+header.IPv4MinimumSize+header.UDPMinimumSize+payload)
	pkt := b[testOffset:]
	ip := header.IPv4(pkt)
	ip.Encode(&header.IPv4Fields{
		TotalLength: uint16(len(pkt)), TTL: 64, Protocol: uint8(header.UDPProtocolNumber),
		SrcAddr: tcpip.AddrFrom4(src.Addr().As4()), DstAddr: tcpip.AddrFrom4(dst.Addr().As4()),
	})
	ip.SetChecksum(^ip.CalculateChecksum())
	u := header.UDP(pkt[header.IPv4MinimumSize:])
	u.Encode(&header.UDPFields{SrcPort: src.Port(), DstPort: dst.Port(), Length: uint16(header.UDPMinimumSize + payload)})
	sum := header.PseudoHeaderChecksum(header.UDPProtocolNumber, ip.SourceAddress(), ip.DestinationAddress(), u.Length())
	u.SetChecksum(^checksum.Checksum(u, sum))
	return b
}

// TestRaiseTxQueueLen checks that the transmit queue grows, and never
// shrinks.
func TestRaiseTxQueueLen(t *testing.T) {
	requireLab(t, false)
	d, err := Create("vtx%d", 1500)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	qlen := func() string {
		b, err := os.ReadFile("/sys/class/net/" + d.name + "/tx_queue_len")
		if err != nil {
			t.Fatal(err)
		}
		return strings.TrimSpace(string(b))
	}
	for _, tc := range []struct {
		raise int
		want  string
	}{{TxQueueLen, "4096"}, {1000, "4096"}, {8192, "8192"}} {
		if err := d.RaiseTxQueueLen(tc.raise); err != nil {
			t.Fatal(err)
		}
		if got := qlen(); got != tc.want {
			t.Errorf("after RaiseTxQueueLen(%d): qlen %s, want %s", tc.raise, got, tc.want)
		}
	}
}
