package lab

import (
	"sync"
)

// Options configures a [Network]. The zero value is ready to use.
type Options struct {
	// Seed seeds every random choice the hosts make (TCP initial sequence
	// numbers, ephemeral ports, IP IDs). Zero means 1.
	Seed int64

	// MTU is the MTU of every segment device and host NIC. Zero means 1500.
	MTU int

	// IPv6 enables IPv6 (and ICMPv6) in the hosts' stacks, so hosts may be
	// given IPv6 addresses. Off by default: fwx tests are IPv4 for now,
	// and without IPv6 a host never sends anything it was not asked to.
	IPv6 bool

	// Clock, if set, makes the hosts deterministic. Their stacks' TCP
	// timestamps, RTT estimates and timers (retransmission, TIME-WAIT,
	// keepalive) run on it, and pcap records ([Segment.Pcap]) are stamped
	// with it. Their TCP receive buffers are set so large (256 MiB, an
	// allowance, not an allocation) that the window they advertise does
	// not move while less than 16 KiB wait to be read: otherwise it would
	// depend on whether an application had read when an ACK was built.
	// With the same Seed, a scenario whose steps wait for one another then
	// puts the same packets on every link, byte for byte, run after run.
	// A host's timers fire only when the test advances the clock; in a lab
	// nothing is lost, so a run that does not advance it needs none. Nil
	// means real time and ordinary buffers, as a real host has.
	Clock *ManualClock

	// Logf, if set, receives one line per packet crossing a segment, in
	// either direction, decoded with [PacketString], and a line when a
	// queue drops a packet. Pass a testing.TB's Logf to see a run's
	// packets when a test fails. Logf must stay callable until
	// [Network.Close] returns.
	Logf func(format string, args ...any)
}

// Network is a set of segments and the virtual hosts on them. It owns
// every device, stack and goroutine it creates; Close releases them all.
//
// Create one with [New]. Its methods are safe for concurrent use.
type Network struct {
	opts Options

	mu struct {
		sync.Mutex
		segments []*Segment
		hosts    []*Host // in creation order; the index seeds the host
		closed   bool
	}

	// wg counts the host pump goroutines.
	wg sync.WaitGroup
}

// New returns an empty Network configured by opts.
func New(opts Options) *Network {
	if opts.Seed == 0 {
		opts.Seed = 1
	}
	if opts.MTU <= 0 {
		opts.MTU = 1500
	}
	return &Network{opts: opts}
}

// Close tears the network down: it closes every segment device (so the code
// under test sees its tun.Devices fail with os.ErrClosed), destroys every
// host's stack (aborting open connections) and waits for every goroutine
// the network started. Close is idempotent.
func (n *Network) Close() {
	n.mu.Lock()
	if n.mu.closed {
		n.mu.Unlock()
		return
	}
	n.mu.closed = true
	segments, hosts := n.mu.segments, n.mu.hosts
	n.mu.Unlock()

	// Devices first: that releases a host pump blocked in Inject because
	// nobody reads the device any more.
	for _, s := range segments {
		s.dev.Close()
	}
	for _, h := range hosts {
		h.close()
	}
	n.wg.Wait()
}

// logPacket logs pkt, decoded, as going from one party to another on a
// segment. Decoding is skipped when there is no Logf.
func (n *Network) logPacket(segment, from, to string, pkt []byte) {
	if n.opts.Logf != nil {
		n.opts.Logf("%s: %s → %s %s", segment, from, to, PacketString(pkt))
	}
}
