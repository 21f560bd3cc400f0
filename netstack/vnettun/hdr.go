package vnettun

import (
	"encoding/binary"
	"strconv"
)

// Virtio net header constants, from the Linux UAPI header
// include/uapi/linux/virtio_net.h and the virtio specification
// (VIRTIO 1.2, section 5.1.6 "Device Operation", struct virtio_net_hdr).
const (
	// VirtioHdrLen is the length of the legacy virtio_net_hdr that a TUN
	// opened with IFF_VNET_HDR puts before every packet (the default
	// TUNSETVNETHDRSZ). Read and Write need at least this much headroom.
	VirtioHdrLen = 10

	// FlagNeedsCsum (VIRTIO_NET_HDR_F_NEEDS_CSUM) says the L4 checksum is
	// partial: the field at CsumStart+CsumOffset holds the folded,
	// non-complemented pseudo-header sum, and the receiver must add the
	// one's-complement sum of everything from CsumStart to the end.
	FlagNeedsCsum uint8 = 1
	// FlagDataValid (VIRTIO_NET_HDR_F_DATA_VALID) says the checksum was
	// already verified. A TUN never sets it on read.
	FlagDataValid uint8 = 2
)

// GSOType is the gso_type of a virtio_net_hdr: how the receiver must
// segment the packet. The [GSOECN] bit may be or-ed into a TCP type.
type GSOType uint8

// GSO types (VIRTIO_NET_HDR_GSO_*).
const (
	GSONone  GSOType = 0    // one packet, no segmentation
	GSOTCPv4 GSOType = 1    // TSO over IPv4
	GSOUDP   GSOType = 3    // UFO (IP fragmentation); never produced by fwx's TUNs
	GSOTCPv6 GSOType = 4    // TSO over IPv6
	GSOUDPL4 GSOType = 5    // USO: UDP segmentation, IPv4 or IPv6
	GSOECN   GSOType = 0x80 // TCP with ECN: CWR only on the first segment
)

// Base returns t without the [GSOECN] bit.
func (t GSOType) Base() GSOType { return t &^ GSOECN }

// String returns the kernel's name for t, such as "tcpv4" or "tcpv6|ecn".
func (t GSOType) String() string {
	var s string
	switch t.Base() {
	case GSONone:
		s = "none"
	case GSOTCPv4:
		s = "tcpv4"
	case GSOUDP:
		s = "udp"
	case GSOTCPv6:
		s = "tcpv6"
	case GSOUDPL4:
		s = "udp_l4"
	default:
		s = "GSOType(" + strconv.Itoa(int(t.Base())) + ")"
	}
	if t&GSOECN != 0 {
		s += "|ecn"
	}
	return s
}

// Hdr is a decoded virtio_net_hdr. The zero value is the header of an
// ordinary packet: no segmentation and a complete checksum (if any), which
// is what a caller puts in front of a packet it built itself.
//
// The fields are in host order; on the wire they are little-endian (the
// Device sets TUNSETVNETLE so that holds on big-endian hosts too).
type Hdr struct {
	Flags      uint8   // FlagNeedsCsum, FlagDataValid
	GSOType    GSOType // segmentation to perform
	HdrLen     uint16  // L3+L4 header bytes per segment; Read recomputes it for superpackets
	GSOSize    uint16  // L4 payload bytes per segment, all but the last
	CsumStart  uint16  // offset of the L4 header from the packet start
	CsumOffset uint16  // offset of the checksum field from CsumStart
}

// ParseHdr decodes the first [VirtioHdrLen] bytes of b. It panics if b is
// shorter, like binary.LittleEndian does; it validates nothing else, as
// the values only mean something together with the packet.
func ParseHdr(b []byte) Hdr {
	_ = b[VirtioHdrLen-1]
	return Hdr{
		Flags:      b[0],
		GSOType:    GSOType(b[1]),
		HdrLen:     binary.LittleEndian.Uint16(b[2:]),
		GSOSize:    binary.LittleEndian.Uint16(b[4:]),
		CsumStart:  binary.LittleEndian.Uint16(b[6:]),
		CsumOffset: binary.LittleEndian.Uint16(b[8:]),
	}
}

// Encode writes h into the first [VirtioHdrLen] bytes of b. It panics if b
// is shorter.
func (h Hdr) Encode(b []byte) {
	_ = b[VirtioHdrLen-1]
	b[0] = h.Flags
	b[1] = uint8(h.GSOType)
	binary.LittleEndian.PutUint16(b[2:], h.HdrLen)
	binary.LittleEndian.PutUint16(b[4:], h.GSOSize)
	binary.LittleEndian.PutUint16(b[6:], h.CsumStart)
	binary.LittleEndian.PutUint16(b[8:], h.CsumOffset)
}

// NeedsCsum reports whether the packet's L4 checksum is partial (see the
// package documentation for what that means to a NAT).
func (h Hdr) NeedsCsum() bool { return h.Flags&FlagNeedsCsum != 0 }

// IsGSO reports whether the packet is a superpacket that the receiver
// must segment.
func (h Hdr) IsGSO() bool { return h.GSOType.Base() != GSONone }

// ClearHdr zeroes the virtio header in b[:VirtioHdrLen]: GSO_NONE, no
// NEEDS_CSUM. Callers writing a packet they built themselves (with a
// complete checksum) use it to fill the headroom.
func ClearHdr(b []byte) { clear(b[:VirtioHdrLen]) }
