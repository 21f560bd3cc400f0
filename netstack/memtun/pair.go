package memtun

import (
	"os"
	"sync"

	"golang.zx2c4.com/wireguard/tun"
)

var _ tun.Device = (*End)(nil)

// End is one end of a device pair made by [NewPair]: a tun.Device whose
// Write delivers to the other end's Read, like the two ends of a veth pair,
// with no kernel between them.
//
// Packets: an End is a TUN without offloads. Every packet is one whole IP
// packet with no virtio-net header; the pair never segments, coalesces or
// checksums, so Read returns each packet byte for byte as it was written.
// The MTU is advisory, as on a TUN with offloads: packets up to 65575 bytes
// cross, and the code on each end keeps to the MTU it was told. (fwx
// cuts a superpacket it read from a device with offloads into segments,
// checksums complete, before it writes them to a device like this one.)
//
// Batches: Write queues its packets in order; Read returns as many queued
// packets as fit in its bufs, oldest first, so the batches of the two
// sides need not match. Packets of Writes made concurrently on one end may
// interleave. Each direction queues up to [QueueLen] packets; a Write into
// a full queue waits for the reader instead of dropping, so the code on
// each end must keep reading its End.
//
// Allocation: an End allocates only while its queue grows past the depth,
// or the packet size, it had reached before; in the steady state Read and
// Write allocate nothing and copy each packet twice (into the queue and
// out of it), as a kernel TUN does.
//
// Lifecycle: both ends are up from NewPair (Events delivers [tun.EventUp]
// once) until either end is closed. Closing one end closes the pair: both
// ends' Read and Write then fail with an error wrapping [os.ErrClosed],
// including those waiting; packets still queued are discarded; both Events
// channels are closed. So whichever side stops first, the other side's
// reader sees the device go away. Close is idempotent.
//
// All methods are safe for concurrent use.
type End struct {
	name   string
	mtu    int
	in     *queue // what this end reads
	out    *queue // the other end's in
	events chan tun.Event
	pair   *pair
}

// pair is what the two ends share: closing one closes both.
type pair struct {
	once sync.Once
	ends [2]*End
}

// NewPair returns two connected devices named a and b whose MTU method
// reports mtu (a nonpositive mtu means 1500). What is written to one is
// read from the other.
//
// A program that embeds fwx gives one end to fwx as its inside (or
// outside) and the other to the code that produces and consumes those
// packets, such as wireguard-go's device:
//
//	wgTun, fwxTun := memtun.NewPair("wg0", "fwx-in", device.DefaultMTU)
//	dev := device.NewDevice(wgTun, conn.NewDefaultBind(), logger)
//	fw, err := fwx.New(fwx.Config{Inside: fwxTun, ...})
func NewPair(a, b string, mtu int) (*End, *End) {
	if mtu <= 0 {
		mtu = 1500
	}
	p := &pair{}
	var qa, qb queue
	qa.init(mtu)
	qb.init(mtu)
	p.ends[0] = &End{name: a, mtu: mtu, in: &qa, out: &qb, events: make(chan tun.Event, 1), pair: p}
	p.ends[1] = &End{name: b, mtu: mtu, in: &qb, out: &qa, events: make(chan tun.Event, 1), pair: p}
	for _, e := range p.ends {
		e.events <- tun.EventUp
	}
	return p.ends[0], p.ends[1]
}

// File implements tun.Device. It returns nil: there is no file descriptor.
func (e *End) File() *os.File { return nil }

// MTU implements tun.Device.
func (e *End) MTU() (int, error) { return e.mtu, nil }

// Name implements tun.Device.
func (e *End) Name() (string, error) { return e.name, nil }

// Events implements tun.Device. The channel delivers [tun.EventUp] once
// and is closed when the pair closes.
func (e *End) Events() <-chan tun.Event { return e.events }

// BatchSize implements tun.Device. It returns [BatchSize].
func (e *End) BatchSize() int { return BatchSize }

// Read implements tun.Device. It waits until the other end has written a
// packet, then copies as many queued packets as fit, oldest first, into
// bufs[i][offset:], setting sizes[i], and returns how many it copied. A
// packet that does not fit is handled as [Device.Read] does.
func (e *End) Read(bufs [][]byte, sizes []int, offset int) (int, error) {
	return e.in.pop(bufs, sizes, offset)
}

// Write implements tun.Device. It queues a copy of each bufs[i][offset:]
// for the other end's Read, in order, waiting while that end's queue is
// full, and returns len(bufs). The caller may reuse bufs when Write
// returns. If a packet is empty, larger than 65575 bytes or shorter than
// offset, Write queues nothing and returns 0 and an error.
func (e *End) Write(bufs [][]byte, offset int) (int, error) {
	for _, b := range bufs {
		if err := check(b, offset); err != nil {
			return 0, err
		}
	}
	return e.out.push(bufs, offset)
}

// Close implements tun.Device. It closes the pair: both ends.
func (e *End) Close() error {
	e.pair.once.Do(func() {
		for _, end := range e.pair.ends {
			end.in.close()
			close(end.events)
		}
	})
	return nil
}
