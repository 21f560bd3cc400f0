//go:build linux

package vnettun

import (
	"time"

	"golang.org/x/sys/unix"
)

// Read path: kernel → read() → [virtio header | packet] in the caller's
// buffer, at bufs[i][offset-VirtioHdrLen:]. Nothing is copied or split;
// superpackets get their HdrLen recomputed (checkGSO), nothing else.

// Read implements tun.Device. Each read() of the TUN yields one packet or
// one superpacket of up to [MaxPacket] bytes; Read stores it whole at
// bufs[i][offset:offset+sizes[i]], preceded by its virtio header at
// bufs[i][offset-VirtioHdrLen:offset] (decode it with [ParseHdr]). It does
// NOT split superpackets and does NOT complete partial checksums.
//
// Read blocks until at least one packet is available, then takes more
// only while the kernel has them queued, up to len(bufs) (and at most
// [BatchSize]), so it never waits to fill a batch. offset must be at
// least [VirtioHdrLen] ([ErrHeadroom]); bufs[0] must have room for
// offset+MaxPacket bytes ([ErrShortBuffer]), and the batch stops at the
// first later buffer that has not. len(sizes) must be >= len(bufs).
//
// A superpacket whose header contradicts the packet is dropped and
// counted in [Stats].Malformed. Read returns [ErrClosed] once the Device
// is closed.
func (d *Device) Read(bufs [][]byte, sizes []int, offset int) (int, error) {
	if offset < VirtioHdrLen {
		return 0, ErrHeadroom
	}
	limit := min(len(bufs), len(sizes), d.readBatch)
	if limit == 0 {
		return 0, nil
	}
	if len(bufs[0]) < offset+MaxPacket {
		return 0, ErrShortBuffer
	}
	d.readMu.Lock()
	defer d.readMu.Unlock()

	op := &d.rd
	*op = readOp{bufs: bufs, sizes: sizes, offset: offset, limit: limit, spin: time.Duration(d.spin.Load())}
	var start time.Time
	if op.spin > 0 {
		start = time.Now()
	}
	err := d.rc.Read(d.readFn)
	// Busy-poll in the next Read only if this one got its packets
	// within a spin: the queue is busy.
	d.recent = op.spin > 0 && time.Since(start) < op.spin
	n, gso, bad := op.n, op.gso, op.bad
	if err == nil {
		err = op.err
	}
	*op = readOp{} // drop the caller's buffers
	d.stats.packets.Add(uint64(n))
	if gso > 0 {
		d.stats.superpackets.Add(uint64(gso))
	}
	if bad > 0 {
		d.stats.malformed.Add(uint64(bad))
	}
	if err != nil {
		return n, d.ioError("read", err)
	}
	return n, nil
}

// readOp is the state of one Read, kept in the Device (guarded by readMu)
// so that the callback given to RawConn.Read is a method value made once
// at Create rather than a closure allocated per call.
type readOp struct {
	bufs        [][]byte
	sizes       []int
	offset      int
	limit       int
	n, gso, bad int
	err         error
	spin        time.Duration // see SetBusyPoll
	spinUntil   time.Time
}

// readSome is the RawConn.Read callback: it runs with the fd read-locked
// and reads into d.rd until the batch is full or the kernel queue is
// empty. Returning false parks the goroutine in the poller until the TUN
// is readable again, which Read wants only while it has nothing.
func (d *Device) readSome(fd uintptr) bool {
	op := &d.rd
	for op.n < op.limit {
		b := op.bufs[op.n]
		if len(b) < op.offset+MaxPacket {
			return true
		}
		b = b[op.offset-VirtioHdrLen:]
		m, err := read(fd, b)
		switch err {
		case nil:
		case unix.EINTR:
			continue
		case unix.EAGAIN:
			if op.n == 0 && d.recent && d.spinning(op) {
				continue
			}
			return op.n > 0
		default:
			op.err = err
			return true
		}
		isGSO, ok := accept(b[:m])
		if !ok {
			op.bad++
			continue
		}
		if isGSO {
			op.gso++
		}
		op.sizes[op.n] = m - VirtioHdrLen
		op.n++
	}
	return true
}

// spinning reports whether a Read that found the queue empty reads again
// rather than wait in the poller: while its spin lasts.
func (d *Device) spinning(op *readOp) bool {
	now := time.Now()
	if op.spinUntil.IsZero() {
		op.spinUntil = now.Add(op.spin)
	}
	return now.Before(op.spinUntil) && !d.closed.Load()
}

// accept checks one read() result, b = virtio header + packet, and
// rewrites a superpacket's HdrLen with the value computed from the
// packet. It reports whether the packet is a superpacket and whether it
// is usable.
func accept(b []byte) (isGSO, ok bool) {
	if len(b) <= VirtioHdrLen {
		return false, false
	}
	if GSOType(b[1]) == GSONone {
		return false, true // the common small-packet case: no parsing
	}
	h := ParseHdr(b)
	fixed, _, err := checkGSO(h, b[VirtioHdrLen:])
	if err != nil {
		return true, false
	}
	if fixed.HdrLen != h.HdrLen {
		fixed.Encode(b)
	}
	return true, true
}
