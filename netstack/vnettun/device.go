//go:build linux

package vnettun

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
	"golang.zx2c4.com/wireguard/tun"
)

const (
	// MaxPacket is the largest packet or superpacket Read returns: the
	// largest IPv4 packet, and the TUN's default gso_max_size (64 KiB)
	// keeps IPv6 superpackets below it too. Every buffer given to Read
	// needs offset+MaxPacket bytes.
	MaxPacket = 65535

	// BatchSize is the value returned by [Device.BatchSize], the same as
	// wireguard-go's conn.IdealBatchSize.
	BatchSize = 128

	// defaultReadBatch is how many packets one Read returns at most. One
	// read() blocks for the first packet; the rest are taken only while
	// the kernel has them queued (see Read).
	defaultReadBatch = BatchSize

	tunDevice = "/dev/net/tun"
)

var _ tun.Device = (*Device)(nil)

// Device is a Linux TUN device opened with IFF_VNET_HDR and every offload
// the kernel accepts, which Read and Write pass through whole: a
// superpacket read from one Device can be rewritten once and written to
// another, and the far kernel segments it. Create one with [Create]; the
// zero value is not usable.
//
// Device implements wireguard-go's tun.Device, with one difference that
// matters to callers: Read does not split superpackets and does not
// complete partial checksums, and Write expects a virtio header in the
// headroom of every packet (see [Device.Read], [Device.Write]). A caller
// that hands packets to anything but another Device uses [Finish] or
// [Split].
//
// Read and Write are safe for concurrent use with each other and with
// Close; concurrent Reads are serialized, as are concurrent Writes.
//
// Lifecycle: Events delivers [tun.EventUp] once, at Create; the Device
// does not watch the link afterwards (it may live in another network
// namespace, where its name means nothing to this process). After Close,
// Read and Write return [ErrClosed] and the Events channel is closed.
type Device struct {
	file      *os.File
	rc        syscall.RawConn
	name      string
	mtu       int
	offloads  Offloads
	readBatch int
	events    chan tun.Event
	closeOnce sync.Once
	closed    atomic.Bool // set before the file is closed, see ioError

	// readMu serializes Read and guards rd and recent (the last Read
	// had its packets within a spin, see SetBusyPoll); readFn is
	// d.readSome.
	readMu sync.Mutex
	rd     readOp
	readFn func(fd uintptr) bool
	recent bool
	spin   atomic.Int64 // time.Duration

	// writeMu serializes Write and guards wr and scratch, the buffer
	// used to split superpackets when the kernel refuses them
	// (writeSplit); writeFn is d.writeSome.
	writeMu sync.Mutex
	wr      writeOp
	scratch []byte
	writeFn func(fd uintptr) bool
	// iov and flat are WriteVectors' (writev.go), also guarded by
	// writeMu: the iovecs of a packet, and a packet copied into one
	// piece.
	iov  []unix.Iovec
	flat []byte

	// noTSO and noUSO are set once the kernel refused a valid TCP or UDP
	// superpacket with EINVAL (see Write); Write then splits them.
	noTSO, noUSO atomic.Bool

	stats struct {
		packets, superpackets, malformed, splitWrites atomic.Uint64
	}
}

// Stats are a Device's counters since Create.
type Stats struct {
	Packets      uint64 // packets and superpackets returned by Read
	Superpackets uint64 // of which GSO superpackets
	Malformed    uint64 // superpackets Read dropped: header and packet disagree
	SplitWrites  uint64 // superpackets Write had to split (kernel refused GSO)
}

// Create creates the TUN device name, or attaches to it if it exists and
// is a TUN without packet information, opens it with IFF_VNET_HDR,
// enables the best offloads the kernel accepts (see [Device.Offloads])
// and sets its MTU (mtu 0 leaves the device's, which needs no privilege).
// A name such as "tun%d" lets the kernel pick the
// number. Create does not bring the link up or configure addresses.
func Create(name string, mtu int) (*Device, error) {
	return open(name, mtu, 0)
}

// CreateQueues is Create for a multi-queue TUN (IFF_MULTI_QUEUE): it
// creates the device name, or attaches to it, with n queues, and returns
// one Device per queue, each with a file descriptor of its own, to be
// read and written by goroutines of their own. The kernel hands a flow's
// packets to one queue: by a hash of its addresses and ports at first,
// then to the queue the flow's packets were last written to (so a
// forwarder that writes each flow's packets back to the queue it read
// them from keeps both directions of the flow on that queue; the kernel
// remembers up to 4096 flows per device). Closing the last queue removes
// a non-persistent device.
//
// n <= 1 is Create. A persistent TUN made without multi_queue (ip tuntap
// add ... without multi_queue) cannot take more queues; CreateQueues then
// attaches its one queue, as Create would, and returns one Device.
func CreateQueues(name string, mtu, n int) ([]*Device, error) {
	if n <= 1 {
		d, err := Create(name, mtu)
		if err != nil {
			return nil, err
		}
		return []*Device{d}, nil
	}
	first, err := open(name, mtu, unix.IFF_MULTI_QUEUE)
	if errors.Is(err, unix.EINVAL) {
		// An existing device without IFF_MULTI_QUEUE refuses the flag.
		if d, err1 := Create(name, mtu); err1 == nil {
			return []*Device{d}, nil
		}
	}
	if err != nil {
		return nil, err
	}
	qs := []*Device{first}
	for len(qs) < n {
		// The kernel named the device at the first queue ("tun%d").
		q, err := open(first.name, 0, unix.IFF_MULTI_QUEUE)
		if err != nil {
			for _, q := range qs {
				q.Close()
			}
			return nil, fmt.Errorf("vnettun: %s: queue %d: %w", first.name, len(qs), err)
		}
		qs = append(qs, q)
	}
	return qs, nil
}

// open opens one queue of the TUN device name with the IFF flags extra
// besides IFF_TUN|IFF_NO_PI|IFF_VNET_HDR, and sets its MTU unless mtu is
// 0.
func open(name string, mtu int, extra uint16) (*Device, error) {
	fd, err := unix.Open(tunDevice, unix.O_RDWR|unix.O_CLOEXEC|unix.O_NONBLOCK, 0)
	if err != nil {
		return nil, fmt.Errorf("vnettun: open %s: %w", tunDevice, err)
	}
	d, err := setup(fd, name, mtu, extra)
	if err != nil {
		unix.Close(fd)
		return nil, err
	}
	// From here the fd belongs to the os.File, which registers it with
	// the runtime poller because it is non-blocking.
	d.file = os.NewFile(uintptr(fd), tunDevice)
	if d.rc, err = d.file.SyscallConn(); err != nil {
		d.file.Close()
		return nil, fmt.Errorf("vnettun: %s: %w", d.name, err)
	}
	d.events <- tun.EventUp
	return d, nil
}

// setup configures the raw TUN fd and returns the Device around it,
// without its file.
func setup(fd int, name string, mtu int, extra uint16) (*Device, error) {
	ifr, err := unix.NewIfreq(name)
	if err != nil {
		return nil, fmt.Errorf("vnettun: interface name %q: %w", name, err)
	}
	ifr.SetUint16(unix.IFF_TUN | unix.IFF_NO_PI | unix.IFF_VNET_HDR | extra)
	if err := unix.IoctlIfreq(fd, unix.TUNSETIFF, ifr); err != nil {
		return nil, fmt.Errorf("vnettun: create %q: %w", name, err)
	}
	if err := unix.IoctlIfreq(fd, unix.TUNGETIFF, ifr); err != nil {
		return nil, fmt.Errorf("vnettun: %q: TUNGETIFF: %w", name, err)
	}
	d := &Device{
		name:      ifr.Name(),
		mtu:       mtu,
		readBatch: defaultReadBatch,
		events:    make(chan tun.Event, 1),
	}
	d.readFn, d.writeFn = d.readSome, d.writeSome
	// An attached persistent device may have been given another header
	// size or byte order; Read and Write assume the legacy 10-byte
	// little-endian header. TUNSETVNETLE exists on every kernel with
	// vnet headers but only matters on big-endian hosts.
	if err := unix.IoctlSetPointerInt(fd, unix.TUNSETVNETHDRSZ, VirtioHdrLen); err != nil {
		return nil, fmt.Errorf("vnettun: %s: TUNSETVNETHDRSZ: %w", d.name, err)
	}
	if err := unix.IoctlSetPointerInt(fd, unix.TUNSETVNETLE, 1); err != nil && !littleEndianHost() {
		return nil, fmt.Errorf("vnettun: %s: TUNSETVNETLE: %w", d.name, err)
	}
	if d.offloads, err = probeOffloads(fd); err != nil {
		return nil, fmt.Errorf("vnettun: %s: TUNSETOFFLOAD: %w", d.name, err)
	}
	if mtu > 0 {
		if err := setMTU(d.name, mtu); err != nil {
			return nil, err
		}
	} else if d.mtu, err = getMTU(d.name); err != nil {
		// Setting an MTU needs CAP_NET_ADMIN; an unprivileged user
		// attached to a persistent device takes the one it has.
		return nil, err
	}
	return d, nil
}

func littleEndianHost() bool {
	return binary.NativeEndian.Uint16([]byte{1, 0}) == 1
}

// getMTU returns the MTU of the interface name; it needs no privilege.
func getMTU(name string) (int, error) {
	s, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return 0, fmt.Errorf("vnettun: %s: get MTU: %w", name, err)
	}
	defer unix.Close(s)
	ifr, err := unix.NewIfreq(name)
	if err != nil {
		return 0, fmt.Errorf("vnettun: %s: get MTU: %w", name, err)
	}
	if err := unix.IoctlIfreq(s, unix.SIOCGIFMTU, ifr); err != nil {
		return 0, fmt.Errorf("vnettun: %s: get MTU: %w", name, err)
	}
	return int(ifr.Uint32()), nil
}

// setMTU sets the MTU of the interface name in the caller's network
// namespace.
func setMTU(name string, mtu int) error {
	s, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("vnettun: %s: set MTU: %w", name, err)
	}
	defer unix.Close(s)
	ifr, err := unix.NewIfreq(name)
	if err != nil {
		return fmt.Errorf("vnettun: %s: set MTU: %w", name, err)
	}
	ifr.SetUint32(uint32(mtu))
	if err := unix.IoctlIfreq(s, unix.SIOCSIFMTU, ifr); err != nil {
		return fmt.Errorf("vnettun: %s: set MTU %d: %w", name, mtu, err)
	}
	return nil
}

// TxQueueLen is the transmit queue length fwx gives its TUN devices
// ([Device.RaiseTxQueueLen]): the packets the kernel holds for a queue's
// reader. The kernel's default for a TUN, 500, is a few milliseconds of
// small packets: a reader descheduled that long on a busy machine loses
// packets that a forwarder in the kernel, which runs in the sender's own
// context, would not. 4096 covers about 30 ms of 64-byte packets at 130k
// packets/s. (A TUN never stops its transmit queue: when the ring is
// full the kernel drops, so the qdisc does not hold packets either.)
const TxQueueLen = 4096

// RaiseTxQueueLen raises the transmit queue length of the device, each
// of its queues' ring of packets waiting to be read, to n, unless it is
// at least n already (SIOCGIFTXQLEN, SIOCSIFTXQLEN, in the caller's
// network namespace; setting needs CAP_NET_ADMIN).
func (d *Device) RaiseTxQueueLen(n int) error {
	s, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("vnettun: %s: txqueuelen: %w", d.name, err)
	}
	defer unix.Close(s)
	ifr, err := unix.NewIfreq(d.name)
	if err != nil {
		return fmt.Errorf("vnettun: %s: txqueuelen: %w", d.name, err)
	}
	if err := unix.IoctlIfreq(s, unix.SIOCGIFTXQLEN, ifr); err != nil {
		return fmt.Errorf("vnettun: %s: get txqueuelen: %w", d.name, err)
	}
	if int(ifr.Uint32()) >= n {
		return nil
	}
	ifr.SetUint32(uint32(n))
	if err := unix.IoctlIfreq(s, unix.SIOCSIFTXQLEN, ifr); err != nil {
		return fmt.Errorf("vnettun: %s: set txqueuelen %d: %w", d.name, n, err)
	}
	return nil
}

// Name implements tun.Device. It returns the interface name the kernel
// gave the device at Create; it never fails.
func (d *Device) Name() (string, error) { return d.name, nil }

// MTU implements tun.Device. It returns the MTU set at Create, or the
// device's own when Create left it alone; the Device does not track later
// changes.
func (d *Device) MTU() (int, error) { return d.mtu, nil }

// File implements tun.Device.
func (d *Device) File() *os.File { return d.file }

// Events implements tun.Device. See [Device] for what it delivers.
func (d *Device) Events() <-chan tun.Event { return d.events }

// BatchSize implements tun.Device. It returns [BatchSize].
func (d *Device) BatchSize() int { return BatchSize }

// SetBusyPoll makes Read busy-poll for up to spin: when the kernel queue
// is empty, Read reads again and again for up to spin before it waits in
// the runtime's poller, but only while packets are arriving closely,
// that is when the last Read had its packets within spin. A packet that
// arrives during the spin is read without a trip through the poller and
// the scheduler (two thread wake-ups on a machine with idle cores); a
// spin that finds nothing costs up to spin of CPU. An idle device never
// spins: its Reads wait long. spin 0, the default, never spins.
func (d *Device) SetBusyPoll(spin time.Duration) { d.spin.Store(int64(max(spin, 0))) }

// Offloads returns the offloads the kernel accepted at Create.
func (d *Device) Offloads() Offloads { return d.offloads }

// Stats returns the Device's counters.
func (d *Device) Stats() Stats {
	return Stats{
		Packets:      d.stats.packets.Load(),
		Superpackets: d.stats.superpackets.Load(),
		Malformed:    d.stats.malformed.Load(),
		SplitWrites:  d.stats.splitWrites.Load(),
	}
}

// Close implements tun.Device. It closes the file descriptor, which
// removes a non-persistent TUN from whatever namespace it is in, wakes a
// blocked Read, and closes the Events channel.
func (d *Device) Close() error {
	var err error
	d.closeOnce.Do(func() {
		d.closed.Store(true)
		err = d.file.Close()
		close(d.events)
	})
	if err != nil {
		return fmt.Errorf("vnettun: close %s: %w", d.name, err)
	}
	return nil
}

// ioError converts an error from the file or a syscall on it. RawConn
// reports a closed file with an unexported error of package poll, not
// os.ErrClosed, hence the closed flag.
func (d *Device) ioError(op string, err error) error {
	if d.closed.Load() || errors.Is(err, os.ErrClosed) || errors.Is(err, unix.EBADFD) {
		return ErrClosed
	}
	return fmt.Errorf("vnettun: %s: %w", op, err)
}
