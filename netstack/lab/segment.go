package lab

import (
	"fmt"
	"net/netip"
	"sync"
	"sync/atomic"

	"github.com/fwx-dev/fwx/netstack/memtun"
	"golang.zx2c4.com/wireguard/tun"
)

// captureLen is how many unowned packets a segment keeps for Captured.
const captureLen = 1024

// Segment is one link of the code under test: the network behind one of
// its tun.Devices. Packets the code writes to [Segment.Device] go to the
// host on the segment that owns their destination address, or to
// [Segment.Captured] if no host does; packets the hosts send go to the
// device, to be read by the code under test.
//
// A Segment is created by [Network.NewSegment] and is safe for concurrent
// use.
type Segment struct {
	net  *Network
	name string
	dev  *memtun.Device

	capture chan []byte
	pcap    atomic.Pointer[pcap] // the recording Pcap started, if any

	mu struct {
		sync.RWMutex
		owners map[netip.Addr]*Host
	}

	stats struct {
		fromHosts, toHosts, captured, captureDrops, closedDrops atomic.Uint64
	}
}

// SegmentStats counts the packets that crossed a segment.
type SegmentStats struct {
	// FromHosts counts packets sent by hosts or injected with
	// [Segment.Inject] and handed to the device.
	FromHosts uint64
	// ToHosts counts packets written to the device and delivered to a host.
	ToHosts uint64
	// Captured counts packets written to the device that no host owns,
	// including ones that were not valid IP packets.
	Captured uint64
	// CaptureDrops counts captured packets discarded because nobody
	// drained [Segment.Captured] and it was full.
	CaptureDrops uint64
	// ClosedDrops counts packets lost to a closed party: written to the
	// device for a host that was closed, or sent by a host after the code
	// under test closed the device.
	ClosedDrops uint64
}

// NewSegment adds a segment named name. The name shows in logs and is the
// device's name.
func (n *Network) NewSegment(name string) *Segment {
	s := &Segment{
		net:     n,
		name:    name,
		dev:     memtun.New(name, n.opts.MTU),
		capture: make(chan []byte, captureLen),
	}
	s.mu.owners = make(map[netip.Addr]*Host)
	s.dev.SetOutput(s.deliver)

	n.mu.Lock()
	defer n.mu.Unlock()
	if n.mu.closed {
		s.dev.Close()
		return s
	}
	n.mu.segments = append(n.mu.segments, s)
	return s
}

// Name returns the segment's name.
func (s *Segment) Name() string { return s.name }

// Device returns the tun.Device to hand to the code under test. It is a
// [memtun.Device]: Events delivers tun.EventUp once; it closes with the
// Network.
func (s *Segment) Device() tun.Device { return s.dev }

// Inject hands pkt to the device as if a host on the segment had sent it,
// for tests that need packets no real stack would send. It copies pkt.
// Inject waits if the device's queue is full (see [memtun.Device.Inject]),
// and fails once the network is closed.
func (s *Segment) Inject(pkt []byte) error {
	return s.inject(pkt, "inject")
}

// inject hands pkt to the device; from names the sender in the log.
func (s *Segment) inject(pkt []byte, from string) error {
	s.net.logPacket(s.name, from, "fwx", pkt)
	s.record(pkt)
	if err := s.dev.Inject(pkt); err != nil {
		return fmt.Errorf("lab: segment %s: %w", s.name, err)
	}
	s.stats.fromHosts.Add(1)
	return nil
}

// Captured returns the channel of packets written to the device whose
// destination no host on the segment owns, in the order they were written.
// Each is a copy the receiver may keep. The channel holds up to 1024
// packets; further ones are dropped and counted in
// [SegmentStats.CaptureDrops], so that code under test is never blocked by
// a test that does not look. The channel is never closed.
func (s *Segment) Captured() <-chan []byte { return s.capture }

// Stats returns the segment's packet counters.
func (s *Segment) Stats() SegmentStats {
	return SegmentStats{
		FromHosts:    s.stats.fromHosts.Load(),
		ToHosts:      s.stats.toHosts.Load(),
		Captured:     s.stats.captured.Load(),
		CaptureDrops: s.stats.captureDrops.Load(),
		ClosedDrops:  s.stats.closedDrops.Load(),
	}
}

// deliver is the device's output function: it runs on the goroutine of
// the code under test that called Write, and pkt is only valid until it
// returns.
func (s *Segment) deliver(pkt []byte) {
	s.record(pkt)
	if h := s.owner(pkt); h != nil {
		s.net.logPacket(s.name, "fwx", h.name, pkt)
		if h.deliver(pkt) {
			s.stats.toHosts.Add(1)
		} else {
			s.stats.closedDrops.Add(1)
		}
		return
	}
	s.net.logPacket(s.name, "fwx", "capture", pkt)
	s.stats.captured.Add(1)
	select {
	case s.capture <- append([]byte(nil), pkt...):
	default:
		s.stats.captureDrops.Add(1)
		s.net.logPacket(s.name, "fwx", "capture (queue full, dropped)", pkt)
	}
}

// record adds pkt to the segment's pcap, if one is being recorded.
func (s *Segment) record(pkt []byte) {
	if p := s.pcap.Load(); p != nil {
		p.record(pkt)
	}
}

// owner returns the host that owns pkt's destination address, or nil.
func (s *Segment) owner(pkt []byte) *Host {
	dst, ok := dstAddr(pkt)
	if !ok {
		return nil
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.mu.owners[dst]
}

// claim records that h owns addr. It fails if another host does.
func (s *Segment) claim(addr netip.Addr, h *Host) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if other, ok := s.mu.owners[addr]; ok {
		return fmt.Errorf("lab: segment %s: %v already belongs to host %s", s.name, addr, other.name)
	}
	s.mu.owners[addr] = h
	return nil
}

// release undoes claim.
func (s *Segment) release(addr netip.Addr) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.mu.owners, addr)
}

// dstAddr returns the destination address of an IPv4 or IPv6 packet.
func dstAddr(pkt []byte) (netip.Addr, bool) {
	if len(pkt) == 0 {
		return netip.Addr{}, false
	}
	switch pkt[0] >> 4 {
	case 4:
		if len(pkt) < 20 {
			return netip.Addr{}, false
		}
		return netip.AddrFrom4([4]byte(pkt[16:20])), true
	case 6:
		if len(pkt) < 40 {
			return netip.Addr{}, false
		}
		return netip.AddrFrom16([16]byte(pkt[24:40])), true
	}
	return netip.Addr{}, false
}
