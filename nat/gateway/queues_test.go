package gateway

import (
	"context"
	"net/netip"
	"testing"
	"time"

	"golang.zx2c4.com/wireguard/tun"
	"gvisor.dev/gvisor/pkg/tcpip/header"

	"github.com/fwx-dev/fwx/nat"
	"github.com/fwx-dev/fwx/netstack/lab"
	"github.com/fwx-dev/fwx/netstack/memtun"
)

// TestFlowHashBothWays checks that a flow's two directions hash alike and
// that flows differing in one field hash apart.
func TestFlowHashBothWays(t *testing.T) {
	c := netip.MustParseAddrPort("10.0.0.2:40000")
	s := netip.MustParseAddrPort("198.51.100.2:443")
	c6 := netip.MustParseAddrPort("[fd00::2]:40000")
	s6 := netip.MustParseAddrPort("[2001:db8:100::2]:443")
	for _, tc := range []struct {
		name        string
		there, back []byte
		other       []byte // another flow
	}{
		{"tcp", lab.TCPPacket(c, s, header.TCPFlagSyn, 1, 0, nil), lab.TCPPacket(s, c, header.TCPFlagSyn|header.TCPFlagAck, 1, 2, nil),
			lab.TCPPacket(netip.AddrPortFrom(c.Addr(), 40001), s, header.TCPFlagSyn, 1, 0, nil)},
		{"udp", lab.UDPPacket(c, s, []byte("q")), lab.UDPPacket(s, c, []byte("r")),
			lab.UDPPacket(c, netip.AddrPortFrom(s.Addr(), 444), []byte("q"))},
		{"udp6", lab.UDPPacket(c6, s6, []byte("q")), lab.UDPPacket(s6, c6, []byte("r")),
			lab.UDPPacket(netip.AddrPortFrom(netip.MustParseAddr("fd00::3"), 40000), s6, []byte("q"))},
		{"icmp", lab.ICMPEcho(c.Addr(), s.Addr(), header.ICMPv4Echo, 7, 1), lab.ICMPEcho(s.Addr(), c.Addr(), header.ICMPv4EchoReply, 7, 1),
			lab.ICMPEcho(c.Addr(), netip.MustParseAddr("198.51.100.3"), header.ICMPv4Echo, 7, 1)},
	} {
		if a, b := flowHash(tc.there), flowHash(tc.back); a != b {
			t.Errorf("%s: hash %#x one way, %#x the other", tc.name, a, b)
		}
		if a, b := flowHash(tc.there), flowHash(tc.other); a == b {
			t.Errorf("%s: another flow hashes alike (%#x)", tc.name, a)
		}
	}
}

// TestQueueWriter checks that a batch of several flows' packets is written
// as one batch per queue, each packet on its flow's queue, in order: whole
// (write) or in pieces, the headers apart from the payload, as a netstack
// passes them (writeVectors).
func TestQueueWriter(t *testing.T) {
	for _, vectors := range []bool{false, true} {
		qs, got := memQueues(4)
		for i, q := range qs {
			qs[i] = vectorQueue{q.(*memtun.Device)}
		}
		w := newQueueWriter(qs)
		if !w.vectors() {
			t.Fatal("queues with WriteVectors: vectors() = false")
		}
		s := netip.MustParseAddrPort("198.51.100.2:53")
		var pkts [][]byte
		var vecs [][][]byte
		for i := range 64 {
			c := netip.AddrPortFrom(netip.MustParseAddr("10.0.0.2"), uint16(40000+i%16))
			pkt := lab.UDPPacket(c, s, []byte{byte(i)})
			pkts = append(pkts, append(make([]byte, headroom), pkt...))
			vecs = append(vecs, [][]byte{make([]byte, headroom), pkt[:28], pkt[28:]})
		}
		var err error
		if vectors {
			err = w.writeVectors(vecs, headroom)
		} else {
			err = w.write(pkts, headroom)
		}
		if err != nil {
			t.Fatal(err)
		}
		n := 0
		for q, ch := range got {
			last := map[uint16]byte{}
			for len(ch) > 0 {
				pkt := <-ch
				n++
				if want := qs.index(pkt); want != q {
					t.Errorf("vectors=%v: a packet of the flow of queue %d written to queue %d", vectors, want, q)
				}
				p := nat.Parse(pkt)
				seq := p.Payload()[0]
				if prev, ok := last[p.Src.Port()]; ok && seq < prev {
					t.Errorf("vectors=%v: flow %v: packet %d after %d", vectors, p.Src, seq, prev)
				}
				last[p.Src.Port()] = seq
			}
		}
		if n != len(pkts) {
			t.Errorf("vectors=%v: %d packets written, want %d", vectors, n, len(pkts))
		}
	}
	if w := newQueueWriter(queues{memtun.New("q", 1500)}); w.vectors() {
		t.Error("a device without WriteVectors: vectors() = true")
	}
}

// vectorQueue is an in-memory device that also takes packets in pieces,
// as vnettun.Device does.
type vectorQueue struct{ *memtun.Device }

func (q vectorQueue) WriteVectors(pkts [][][]byte, offset int) (int, error) {
	bufs := make([][]byte, len(pkts))
	for i, v := range pkts {
		bufs[i] = append([]byte(nil), v[0]...)
		for _, s := range v[1:] {
			bufs[i] = append(bufs[i], s...)
		}
	}
	return q.Write(bufs, offset)
}

// TestQueues runs a gateway between two devices of three queues each: a packet
// read from a queue leaves on the queue of the same index on the other
// side (the kernel then keeps the flow's replies there), a reply on another
// queue goes back on that one, and fwx's own answers go back on the queue
// the question came from.
func TestQueues(t *testing.T) {
	const n = 3
	in, inGot := memQueues(n)
	out, outGot := memQueues(n)
	g := newGateway(t, Config{
		Inside: in, Outside: out,
		InsideAddrs:  []netip.Prefix{netip.MustParsePrefix("10.0.0.1/24")},
		OutsideAddrs: []netip.Prefix{netip.MustParsePrefix("198.51.100.1/24")},
	})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- g.Run(ctx) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	}()

	client := netip.MustParseAddrPort("10.0.0.2:40000")
	server := netip.MustParseAddrPort("198.51.100.2:53")
	inject(t, in[1], lab.UDPPacket(client, server, []byte("q")))
	p := expectOn(t, outGot, 1)
	if p.Src.Addr() != netip.MustParseAddr("198.51.100.1") || p.Dst != server {
		t.Fatalf("forwarded as %v -> %v", p.Src, p.Dst)
	}
	inject(t, out[2], lab.UDPPacket(server, p.Src, []byte("r")))
	if r := expectOn(t, inGot, 2); r.Dst != client {
		t.Errorf("reply to %v, want %v", r.Dst, client)
	}
	inject(t, in[0], lab.ICMPEcho(client.Addr(), netip.MustParseAddr("10.0.0.1"), header.ICMPv4Echo, 9, 1))
	if r := expectOn(t, inGot, 0); r.ICMPType != uint8(header.ICMPv4EchoReply) {
		t.Errorf("fwx answered its ping with ICMP type %d", r.ICMPType)
	}
}

// memQueues returns n in-memory devices as the queues of one, and a
// channel per queue that receives a copy of each packet written to it.
func memQueues(n int) (queues, []chan []byte) {
	qs := make(queues, n)
	got := make([]chan []byte, n)
	for i := range qs {
		d := memtun.New("q", 1500)
		ch := make(chan []byte, 128)
		d.SetOutput(func(pkt []byte) { ch <- append([]byte(nil), pkt...) })
		qs[i], got[i] = d, ch
	}
	return qs, got
}

func inject(t *testing.T, d tun.Device, pkt []byte) {
	t.Helper()
	if err := d.(*memtun.Device).Inject(pkt); err != nil {
		t.Fatal(err)
	}
}

// expectOn waits for a packet written to queue q and fails if one is
// written to another queue first.
func expectOn(t *testing.T, got []chan []byte, q int) nat.Packet {
	t.Helper()
	deadline := time.After(5 * time.Second)
	for {
		for i, ch := range got {
			select {
			case pkt := <-ch:
				if i != q {
					t.Fatalf("packet written to queue %d, want %d", i, q)
				}
				return nat.Parse(pkt)
			default:
			}
		}
		select {
		case <-deadline:
			t.Fatalf("nothing written to queue %d", q)
		case <-time.After(time.Millisecond):
		}
	}
}
