//go:build linux

package vnettun

import (
	"errors"
	"unsafe"

	"golang.org/x/sys/unix"
)

// maxIovecs bounds the pieces of a packet WriteVectors writes with one
// writev(); a packet in more pieces is copied into one buffer first. A
// netstack's packet is its headers and a few views of its send buffer.
const maxIovecs = 64

// WriteVectors is [Device.Write] for packets held in pieces, such as a
// netstack's views: each is written with one writev(), so it need not
// be copied into one buffer first. Packet i is pkts[i][0][offset:]
// followed by pkts[i][1:], with its virtio header at
// pkts[i][0][offset-VirtioHdrLen:offset] (offset must be at least
// [VirtioHdrLen], [ErrHeadroom]). A packet in more than 64 pieces, or
// one that must be split because the kernel refuses superpackets (see
// Write), is first copied into a buffer of the Device's. Errors and the
// count are as Write's. WriteVectors does not modify pkts.
func (d *Device) WriteVectors(pkts [][][]byte, offset int) (int, error) {
	return d.write(writeOp{vecs: pkts, offset: offset})
}

// contiguous returns packet v (header included) as one slice when it must
// or can be written with write(): it is in one piece, or in too many, or
// a superpacket of a kind the kernel refuses (then copied into d.flat).
// It returns nil for a packet to write with writeVector.
func (d *Device) contiguous(v [][]byte, offset int) []byte {
	first := v[0][offset-VirtioHdrLen:]
	if len(v) == 1 {
		return first
	}
	t := GSOType(first[1])
	if len(v) > maxIovecs || t != GSONone && d.gsoRefused(t) {
		return d.flatten(v, offset)
	}
	return nil
}

// flatten copies packet v, header included, into d.flat and returns it.
func (d *Device) flatten(v [][]byte, offset int) []byte {
	b := append(d.flat[:0], v[0][offset-VirtioHdrLen:]...)
	for _, s := range v[1:] {
		b = append(b, s...)
	}
	d.flat = b
	return b
}

// writeVector writes packet d.wr.vecs[d.wr.i] with one writev(), with the
// outcomes of writeSome's write(); it returns false if the descriptor
// is not writable (EAGAIN).
func (d *Device) writeVector(fd uintptr, op *writeOp) bool {
	v := op.vecs[op.i]
	iov := d.iov[:0]
	size := 0
	for i, s := range v {
		if i == 0 {
			s = s[op.offset-VirtioHdrLen:]
		}
		if len(s) > 0 {
			iov = append(iov, unix.Iovec{Base: &s[0], Len: uint64(len(s))})
			size += len(s)
		}
	}
	d.iov = iov
	if size <= VirtioHdrLen {
		op.errs = errors.Join(op.errs, ErrMalformed)
		return true
	}
	err := writevFull(fd, iov)
	clear(iov) // keep none of the caller's buffers
	switch {
	case err == nil:
		op.n++
	case err == unix.EAGAIN:
		return false
	case err == unix.EINVAL && GSOType(v[0][op.offset-VirtioHdrLen+1]) != GSONone:
		op.errs = errors.Join(op.errs, d.refused(fd, d.flatten(v, op.offset), &op.n))
	default:
		op.errs = errors.Join(op.errs, d.ioError("write", err))
	}
	return true
}

// writevFull writes iov as one packet with one writev(), a raw system
// call as write's (rawsys.go), retrying on EINTR.
func writevFull(fd uintptr, iov []unix.Iovec) error {
	for {
		_, _, e := unix.RawSyscall(unix.SYS_WRITEV, fd, uintptr(unsafe.Pointer(&iov[0])), uintptr(len(iov)))
		if e != unix.EINTR {
			if e != 0 {
				return e
			}
			return nil
		}
	}
}
