package gateway

import (
	"net/netip"
	"os"
	"testing"

	"golang.zx2c4.com/wireguard/tun"
	"gvisor.dev/gvisor/pkg/tcpip/header"

	"github.com/fwx-dev/fwx/nat"
	"github.com/fwx-dev/fwx/netstack/lab"
	"github.com/fwx-dev/fwx/session"
	"github.com/fwx-dev/fwx/session/policy"
)

// replayDevice is a tun.Device that returns the same batch of packets on
// every Read, a given number of times, then fails as a closed device does;
// it discards what is written to it and counts it.
type replayDevice struct {
	pkts    [][]byte
	reads   int
	written int
	events  chan tun.Event
}

func (d *replayDevice) Read(bufs [][]byte, sizes []int, offset int) (int, error) {
	if d.reads == 0 {
		return 0, os.ErrClosed
	}
	d.reads--
	n := min(len(bufs), len(d.pkts))
	for i := 0; i < n; i++ {
		sizes[i] = copy(bufs[i][offset:], d.pkts[i])
	}
	return n, nil
}

func (d *replayDevice) Write(bufs [][]byte, offset int) (int, error) {
	d.written += len(bufs)
	return len(bufs), nil
}

func (d *replayDevice) File() *os.File           { return nil }
func (d *replayDevice) MTU() (int, error)        { return 1500, nil }
func (d *replayDevice) Name() (string, error)    { return "replay", nil }
func (d *replayDevice) Events() <-chan tun.Event { return d.events }
func (d *replayDevice) Close() error             { return nil }
func (d *replayDevice) BatchSize() int           { return 128 }

// newReplayGateway returns a gateway whose inside device replays a batch
// of 128 TCP data packets of 1400-byte payload, spread over 16 established
// flows, over IPv6 (v6) or IPv4.
func newReplayGateway(tb testing.TB, v6 bool) (*Gateway, *replayDevice, *replayDevice) {
	in, out := &replayDevice{}, &replayDevice{}
	g := newGateway(tb, Config{
		Inside: queues{in}, Outside: queues{out},
		InsideAddrs:  []netip.Prefix{netip.MustParsePrefix("10.0.0.1/24"), netip.MustParsePrefix("fd00::1/64")},
		OutsideAddrs: []netip.Prefix{netip.MustParsePrefix("198.51.100.1/24"), netip.MustParsePrefix("2001:db8:100::1/64")},
	})
	server, clientAddr := netip.MustParseAddrPort("198.51.100.2:5201"), netip.MustParseAddr("10.0.0.2")
	if v6 {
		server, clientAddr = netip.MustParseAddrPort("[2001:db8:100::2]:5201"), netip.MustParseAddr("fd00::2")
	}
	now := g.clock.Now()
	payload := make([]byte, 1400)
	for f := 0; f < 16; f++ {
		client := netip.AddrPortFrom(clientAddr, uint16(40000+f))
		p := nat.Parse(lab.TCPPacket(client, server, header.TCPFlagSyn, 1, 0, nil))
		g.table.Outbound(&p, now)
		r := nat.Parse(lab.TCPPacket(server, p.Src, header.TCPFlagSyn|header.TCPFlagAck, 1, 2, nil))
		g.table.Inbound(&r, now)
		for i := 0; i < 8; i++ {
			in.pkts = append(in.pkts, lab.TCPPacket(client, server, header.TCPFlagAck, 2, 2, payload))
		}
	}
	return g, in, out
}

// newGateway builds a gateway of cfg with the default policy, the system
// clock and seed 1.
func newGateway(tb testing.TB, cfg Config) *Gateway {
	tb.Helper()
	cfg.Policy, cfg.Clock, cfg.Seed = policy.Default(), session.SystemClock, 1
	g, err := New(cfg)
	if err != nil {
		tb.Fatal(err)
	}
	return g
}

// TestForwardNoAllocs proves the whole per-packet path — batch read,
// parse, translate, batch write — allocates nothing.
func TestForwardNoAllocs(t *testing.T) {
	for _, v6 := range []bool{false, true} {
		g, in, out := newReplayGateway(t, v6)
		batch := newBatch(128)
		allocs := testing.AllocsPerRun(10, func() {
			in.reads = 10
			g.forwardBatch(batch, in, out, true)
		})
		if allocs != 0 {
			t.Errorf("IPv6 %v: %v allocations per 1280 packets, want 0", v6, allocs)
		}
		if out.written == 0 {
			t.Fatalf("IPv6 %v: nothing forwarded", v6)
		}
	}
}

// TestRefusalNoAllocs: fwx's own answers on the forward path (here a
// time-exceeded error, from fwx's address of the packet's family, and a
// RST for a segment of no connection) allocate nothing either: a flood
// of packets fwx refuses costs no garbage.
func TestRefusalNoAllocs(t *testing.T) {
	for _, v6 := range []bool{false, true} {
		g, in, out := newReplayGateway(t, v6)
		client, server := netip.MustParseAddrPort("10.0.0.2:40000"), netip.MustParseAddrPort("198.51.100.2:53")
		if v6 {
			client, server = netip.MustParseAddrPort("[fd00::2]:40000"), netip.MustParseAddrPort("[2001:db8:100::2]:53")
		}
		expiring := lab.UDPPacket(client, server, []byte("x"))
		if v6 {
			expiring[7] = 1 // hop limit
		} else {
			ip := header.IPv4(expiring)
			ip.SetTTL(1)
			ip.SetChecksum(0)
			ip.SetChecksum(^ip.CalculateChecksum())
		}
		in.pkts = [][]byte{expiring, lab.TCPPacket(client, server, header.TCPFlagAck, 1, 1, nil)}
		batch := newBatch(128)
		allocs := testing.AllocsPerRun(10, func() {
			in.reads = 1
			g.forwardBatch(batch, in, out, true)
		})
		if allocs != 0 {
			t.Errorf("IPv6 %v: %v allocations per batch of refusals, want 0", v6, allocs)
		}
		if in.written != 2*11 {
			t.Fatalf("IPv6 %v: %d answers, want 2 per batch", v6, in.written)
		}
	}
}

// BenchmarkForward measures fwx's fast path from device to device, in
// packets: a batch of 128 translated 1440-byte TCP segments per read.
func BenchmarkForward(b *testing.B) { benchmarkForward(b, false) }

// BenchmarkForward6 is BenchmarkForward over IPv6.
func BenchmarkForward6(b *testing.B) { benchmarkForward(b, true) }

func benchmarkForward(b *testing.B, v6 bool) {
	g, in, out := newReplayGateway(b, v6)
	batch := newBatch(128)
	b.ReportAllocs()
	b.SetBytes(1440)
	in.reads = b.N/128 + 1
	b.ResetTimer()
	g.forwardBatch(batch, in, out, true)
	b.StopTimer()
	if out.written < b.N {
		b.Fatalf("forwarded %d packets, want %d", out.written, b.N)
	}
}
