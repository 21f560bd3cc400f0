//go:build linux

package vnettun

import (
	"errors"

	"golang.org/x/sys/unix"
)

// Write path: caller's buffer [virtio header | packet] → write() → kernel,
// which segments a superpacket itself. Only if the kernel refuses
// superpackets (the TUN GRO write bug of some LTS kernels, see
// tailscale/tailscale#13041) does Write split them, into scratch.

// Write implements tun.Device. It writes each bufs[i][offset-VirtioHdrLen:]
// with one write(): the virtio header the caller left in the headroom,
// then the packet. A packet read from another [Device] already has its
// header there (kept through an in-place rewrite, see the package
// documentation for partial checksums); for a packet the caller built,
// the header must be zero ([ClearHdr]): GSO_NONE, no NEEDS_CSUM.
//
// A write that fails does not stop the others. Write returns the number
// of packets written and the failures joined. If the kernel refuses a
// superpacket with EINVAL but accepts its segments, Write splits that
// kind of superpacket (TCP or UDP) from then on, counted in
// [Stats].SplitWrites, so callers never see the kernel's limitation.
// offset must be at least [VirtioHdrLen] ([ErrHeadroom]). Write does not
// modify bufs.
func (d *Device) Write(bufs [][]byte, offset int) (int, error) {
	return d.write(writeOp{bufs: bufs, offset: offset})
}

// write runs the Write or WriteVectors op.
func (d *Device) write(op0 writeOp) (int, error) {
	if op0.offset < VirtioHdrLen {
		return 0, ErrHeadroom
	}
	d.writeMu.Lock()
	defer d.writeMu.Unlock()

	op := &d.wr
	*op = op0
	err := d.rc.Write(d.writeFn)
	n, errs := op.n, op.errs
	*op = writeOp{} // drop the caller's buffers
	if err != nil {
		return n, d.ioError("write", err)
	}
	return n, errs
}

// writeOp is the state of one Write, kept in the Device (guarded by
// writeMu) for the same reason as readOp.
type writeOp struct {
	bufs   [][]byte
	vecs   [][][]byte // WriteVectors' packets, instead of bufs
	offset int
	i, n   int // next packet, packets written
	errs   error
}

// writeSome is the RawConn.Write callback: it writes d.wr.bufs from
// d.wr.i on, with the fd write-locked.
func (d *Device) writeSome(fd uintptr) bool {
	op := &d.wr
	for ; op.i < len(op.bufs)+len(op.vecs); op.i++ {
		var b []byte
		if op.vecs == nil {
			b = op.bufs[op.i][op.offset-VirtioHdrLen:]
		} else if b = d.contiguous(op.vecs[op.i], op.offset); b == nil {
			if !d.writeVector(fd, op) {
				return false // resume at packet i when writable
			}
			continue
		}
		if len(b) <= VirtioHdrLen {
			op.errs = errors.Join(op.errs, ErrMalformed)
			continue
		}
		gso := GSOType(b[1]) != GSONone
		if gso && d.gsoRefused(GSOType(b[1])) {
			op.errs = errors.Join(op.errs, d.writeSplit(fd, b, &op.n))
			continue
		}
		err := writeFull(fd, b)
		switch {
		case err == nil:
			op.n++
		case err == unix.EAGAIN:
			return false // resume at packet i when writable
		case err == unix.EINVAL && gso:
			op.errs = errors.Join(op.errs, d.refused(fd, b, &op.n))
		default:
			op.errs = errors.Join(op.errs, d.ioError("write", err))
		}
	}
	return true
}

// writeFull writes b with one write(), retrying on EINTR.
func writeFull(fd uintptr, b []byte) error {
	for {
		err := write(fd, b)
		if err != unix.EINTR {
			return err
		}
	}
}

// gsoRefused reports whether superpackets of type t must be split.
func (d *Device) gsoRefused(t GSOType) bool {
	if t.Base() == GSOUDPL4 {
		return d.noUSO.Load()
	}
	return d.noTSO.Load()
}

// refused handles EINVAL for superpacket b: if its segments are accepted,
// the kernel cannot take superpackets of this kind, and later ones are
// split; if not, the packet itself was bad and nothing is remembered.
func (d *Device) refused(fd uintptr, b []byte, n *int) error {
	before := *n
	err := d.writeSplit(fd, b, n)
	if err == nil && *n > before {
		if GSOType(b[1]).Base() == GSOUDPL4 {
			d.noUSO.Store(true)
		} else {
			d.noTSO.Store(true)
		}
	}
	return err
}

// writeSplit writes superpacket b (header + packet) as its segments, one
// write() each, and counts it in *n once if all were written.
func (d *Device) writeSplit(fd uintptr, b []byte, n *int) error {
	_, s, err := checkGSO(ParseHdr(b), b[VirtioHdrLen:])
	if err != nil {
		return err
	}
	if d.scratch == nil {
		d.scratch = make([]byte, VirtioHdrLen+MaxPacket)
	}
	ClearHdr(d.scratch)
	for i := range s.n {
		m := s.segment(i, d.scratch[VirtioHdrLen:])
		if err := writeFull(fd, d.scratch[:VirtioHdrLen+m]); err != nil {
			return d.ioError("write segment", err)
		}
	}
	d.stats.splitWrites.Add(1)
	*n++
	return nil
}
