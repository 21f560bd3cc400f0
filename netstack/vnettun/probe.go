//go:build linux

package vnettun

import (
	"errors"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// Offloads is a set of TUN_F_* offload flags (include/uapi/linux/if_tun.h)
// that the kernel accepted for a [Device]: the kinds of partial-checksum
// packets and superpackets its Read may return.
type Offloads uint32

// Offload flags, as passed to TUNSETOFFLOAD.
const (
	OffloadCsum   Offloads = unix.TUN_F_CSUM    // partial checksums (NEEDS_CSUM)
	OffloadTSO4   Offloads = unix.TUN_F_TSO4    // TCP/IPv4 superpackets
	OffloadTSO6   Offloads = unix.TUN_F_TSO6    // TCP/IPv6 superpackets
	OffloadTSOECN Offloads = unix.TUN_F_TSO_ECN // TCP superpackets with CWR set
	OffloadUSO4   Offloads = unix.TUN_F_USO4    // UDP/IPv4 superpackets (Linux >= 6.2)
	OffloadUSO6   Offloads = unix.TUN_F_USO6    // UDP/IPv6 superpackets (Linux >= 6.2)
)

// offloadLadder lists the sets Create asks for, best first. TUNSETOFFLOAD
// rejects the whole set with EINVAL when one flag is unknown, so each
// rung drops what an older kernel may lack: USO came in 6.2, and TSO
// requires CSUM. The last rung (none) still works: every packet then
// arrives complete, with a zero virtio header.
var offloadLadder = [...]Offloads{
	OffloadCsum | OffloadTSO4 | OffloadTSO6 | OffloadTSOECN | OffloadUSO4 | OffloadUSO6,
	OffloadCsum | OffloadTSO4 | OffloadTSO6 | OffloadTSOECN,
	OffloadCsum | OffloadTSO4 | OffloadTSO6,
	OffloadCsum,
	0,
}

// probeOffloads sets the best offload set that the kernel accepts on the
// TUN fd and returns it. It only fails if even "no offloads" is refused,
// which means fd is not a TUN.
func probeOffloads(fd int) (Offloads, error) {
	var err error
	for _, o := range offloadLadder {
		if err = unix.IoctlSetInt(fd, unix.TUNSETOFFLOAD, int(o)); err == nil {
			return o, nil
		}
		if !errors.Is(err, unix.EINVAL) {
			break
		}
	}
	return 0, err
}

// Has reports whether o includes every flag in f.
func (o Offloads) Has(f Offloads) bool { return o&f == f }

// String returns the flags in o as the kernel names them, such as
// "csum|tso4|tso6|tso_ecn|uso4|uso6", or "none".
func (o Offloads) String() string {
	if o == 0 {
		return "none"
	}
	names := [...]struct {
		f Offloads
		s string
	}{
		{OffloadCsum, "csum"}, {OffloadTSO4, "tso4"}, {OffloadTSO6, "tso6"},
		{OffloadTSOECN, "tso_ecn"}, {OffloadUSO4, "uso4"}, {OffloadUSO6, "uso6"},
	}
	var b strings.Builder
	for _, n := range names {
		if o&n.f != 0 {
			if b.Len() > 0 {
				b.WriteByte('|')
			}
			b.WriteString(n.s)
			o &^= n.f
		}
	}
	if o != 0 {
		if b.Len() > 0 {
			b.WriteByte('|')
		}
		b.WriteString("0x")
		b.WriteString(strconv.FormatUint(uint64(o), 16))
	}
	return b.String()
}
