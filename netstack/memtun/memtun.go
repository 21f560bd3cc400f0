package memtun

import (
	"errors"
	"fmt"
	"os"
	"sync"
	"sync/atomic"

	"golang.zx2c4.com/wireguard/tun"
)

const (
	// QueueLen is how many packets a Device or one direction of a pair
	// holds before Inject or Write waits for Read.
	QueueLen = 1024

	// BatchSize is the value returned by [Device.BatchSize] and
	// [End.BatchSize].
	BatchSize = 128

	// maxPacket is the largest packet Inject and End.Write accept: the largest IPv4 or
	// (non-jumbo) IPv6 packet.
	maxPacket = 65535 + 40
)

var (
	// errClosed is returned by every operation after Close. It wraps
	// os.ErrClosed, as real tun devices do, and is built once so the
	// hot path does not allocate.
	errClosed = fmt.Errorf("memtun: %w", os.ErrClosed)

	errShortSizes = errors.New("memtun: read: len(sizes) < len(bufs)")
	errEmpty      = errors.New("memtun: empty packet")
	errTooBig     = errors.New("memtun: packet larger than 65575 bytes")
	errOffset     = errors.New("memtun: offset beyond packet")
)

var _ tun.Device = (*Device)(nil)

// Device is an in-memory tun.Device. Create one with [New]; the zero value
// is not usable. All methods are safe for concurrent use.
//
// Lifecycle: a Device is up from New (Events delivers [tun.EventUp] once)
// until Close. After Close, Read, Write and Inject return an error wrapping
// [os.ErrClosed], packets still queued are discarded, and the Events
// channel is closed.
type Device struct {
	name   string
	mtu    int
	events chan tun.Event

	// output is the kernel side's receiver of written packets. It is an
	// atomic so that Write takes no lock: an output function may itself
	// call Inject on this Device (a loopback) without deadlock.
	output atomic.Pointer[func(pkt []byte)]

	// queue holds injected packets until Read.
	queue queue

	closed    atomic.Bool // set by Close; read by Write without a lock
	closeOnce sync.Once
}

// New returns a Device named name whose MTU method reports mtu. The MTU is
// advisory: Inject and Write accept larger packets, as a TUN with offloads
// would. A nonpositive mtu is replaced by 1500.
func New(name string, mtu int) *Device {
	if mtu <= 0 {
		mtu = 1500
	}
	d := &Device{
		name:   name,
		mtu:    mtu,
		events: make(chan tun.Event, 1),
	}
	d.queue.init(mtu)
	d.events <- tun.EventUp
	return d
}

// File implements tun.Device. It returns nil: there is no file descriptor.
func (d *Device) File() *os.File { return nil }

// MTU implements tun.Device.
func (d *Device) MTU() (int, error) { return d.mtu, nil }

// Name implements tun.Device.
func (d *Device) Name() (string, error) { return d.name, nil }

// Events implements tun.Device. The channel delivers [tun.EventUp] once and
// is closed by Close.
func (d *Device) Events() <-chan tun.Event { return d.events }

// BatchSize implements tun.Device. It returns [BatchSize].
func (d *Device) BatchSize() int { return BatchSize }

// Read implements tun.Device. It waits until at least one injected packet
// is queued, then copies as many queued packets as fit, oldest first, into
// bufs[i][offset:], setting sizes[i], and returns how many it copied (at
// most len(bufs)).
//
// A packet larger than len(bufs[i])-offset is not split. If it is the first
// packet, Read discards it and returns io.ErrShortBuffer (wrapped), as
// tun devices on BSD do; if it is not the first, Read returns the packets
// before it and the next Read reports it.
//
// Read returns an error wrapping os.ErrClosed once the Device is closed,
// including when Close is called while Read waits.
func (d *Device) Read(bufs [][]byte, sizes []int, offset int) (int, error) {
	return d.queue.pop(bufs, sizes, offset)
}

// Write implements tun.Device. It passes bufs[i][offset:] to the output
// function set with SetOutput, in order, synchronously, and returns
// len(bufs). Without an output function the packets are discarded.
// Write returns an error wrapping os.ErrClosed after Close.
func (d *Device) Write(bufs [][]byte, offset int) (int, error) {
	if d.closed.Load() {
		return 0, errClosed
	}
	out := d.output.Load()
	for i, b := range bufs {
		if offset < 0 || offset > len(b) {
			return i, errOffset
		}
		if out != nil {
			(*out)(b[offset:])
		}
	}
	return len(bufs), nil
}

// Close implements tun.Device. It wakes any Read or Inject that is waiting,
// discards queued packets and closes the Events channel. Close is
// idempotent and always returns nil.
func (d *Device) Close() error {
	d.closeOnce.Do(func() {
		d.closed.Store(true)
		d.queue.close()
		close(d.events)
	})
	return nil
}

// Inject queues a copy of pkt for Read, as if the kernel had routed pkt into
// the TUN. It waits while [QueueLen] packets are already queued, and returns
// an error wrapping os.ErrClosed if the Device is or becomes closed. pkt may
// be reused as soon as Inject returns.
func (d *Device) Inject(pkt []byte) error {
	if err := check(pkt, 0); err != nil {
		return err
	}
	_, err := d.queue.push([][]byte{pkt}, 0)
	return err
}

// SetOutput sets the function that receives every packet written to the
// Device, replacing any earlier one; nil discards written packets.
//
// out is called synchronously from Write, once per packet, on the writer's
// goroutine, possibly from several goroutines at once if there are several
// writers. pkt is only valid during the call: it is the writer's buffer,
// which the writer reuses when Write returns, so out must copy whatever it
// keeps. out may call Inject on the same Device, but then the test must make
// sure the queue cannot fill up while the writer is also the reader.
func (d *Device) SetOutput(out func(pkt []byte)) {
	if out == nil {
		d.output.Store(nil)
		return
	}
	d.output.Store(&out)
}

// Pending reports how many injected packets are waiting to be read.
func (d *Device) Pending() int { return d.queue.len() }
