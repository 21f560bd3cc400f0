package vnettun

import "encoding/binary"

// Segmentation of a superpacket into the packets the kernel's GSO would
// have produced (net/ipv4/tcp_offload.c tcp_gso_segment,
// net/ipv4/udp_offload.c __udp_gso_segment): the L3+L4 headers are
// copied into every segment, then per segment the IPv4 ID, total length
// and header checksum, or the IPv6 payload length, the TCP sequence
// number and flags or the UDP length, and a complete L4 checksum.

const (
	protoTCP = 6
	protoUDP = 17

	tcpFIN = 0x01
	tcpPSH = 0x08
	tcpCWR = 0x80
)

// segmenter is a validated superpacket, ready to be cut into segments.
type segmenter struct {
	pkt    []byte
	l4     int // CsumStart: start of the L4 header
	hdrLen int // L3+L4 header bytes, recomputed from the packet
	mss    int // GSOSize: payload bytes per segment
	n      int // number of segments
	proto  uint8
	v6     bool
}

// checkGSO validates superpacket pkt against h and returns h with HdrLen
// recomputed from the packet: the kernel's value is only a hint (on the
// forwarding path it can cover the whole first segment, as wireguard-go's
// handleVirtioRead notes), and [Split] and the far kernel both rely on it.
func checkGSO(h Hdr, pkt []byte) (Hdr, segmenter, error) {
	s := segmenter{pkt: pkt, l4: int(h.CsumStart), mss: int(h.GSOSize)}
	if len(pkt) < 20 || s.mss == 0 {
		return h, s, ErrMalformed
	}
	version := pkt[0] >> 4
	switch h.GSOType.Base() {
	case GSOTCPv4:
		s.proto = protoTCP
		if version != 4 {
			return h, s, ErrMalformed
		}
	case GSOTCPv6:
		s.proto, s.v6 = protoTCP, true
		if version != 6 {
			return h, s, ErrMalformed
		}
	case GSOUDPL4:
		s.proto, s.v6 = protoUDP, version == 6
		if version != 4 && version != 6 {
			return h, s, ErrMalformed
		}
	default:
		return h, s, ErrMalformed
	}
	if s.v6 {
		// A larger CsumStart means extension headers, which are copied
		// into every segment unchanged.
		if s.l4 < 40 || (s.l4 == 40 && pkt[6] != s.proto) {
			return h, s, ErrMalformed
		}
	} else if ihl := int(pkt[0]&0xf) * 4; ihl < 20 || s.l4 != ihl || pkt[9] != s.proto {
		return h, s, ErrMalformed
	}
	switch s.proto {
	case protoTCP:
		if h.CsumOffset != 16 || len(pkt) < s.l4+20 {
			return h, s, ErrMalformed
		}
		thl := int(pkt[s.l4+12]>>4) * 4
		if thl < 20 {
			return h, s, ErrMalformed
		}
		s.hdrLen = s.l4 + thl
	case protoUDP:
		if h.CsumOffset != 6 {
			return h, s, ErrMalformed
		}
		s.hdrLen = s.l4 + 8
	}
	if len(pkt) < s.hdrLen {
		return h, s, ErrMalformed
	}
	s.n = max(1, (len(pkt)-s.hdrLen+s.mss-1)/s.mss)
	h.HdrLen = uint16(s.hdrLen)
	return h, s, nil
}

// segLen returns the length of segment i.
func (s *segmenter) segLen(i int) int {
	return s.hdrLen + min(s.mss, len(s.pkt)-s.hdrLen-i*s.mss)
}

// segment writes segment i (0 <= i < s.n) into dst, which must hold
// s.segLen(i) bytes, and returns its length.
func (s *segmenter) segment(i int, dst []byte) int {
	start := s.hdrLen + i*s.mss
	end := min(start+s.mss, len(s.pkt))
	n := s.hdrLen + end - start
	dst = dst[:n]
	copy(dst, s.pkt[:s.hdrLen])
	copy(dst[s.hdrLen:], s.pkt[start:end])

	var src, dstAddr []byte
	if s.v6 {
		binary.BigEndian.PutUint16(dst[4:], uint16(n-40))
		src, dstAddr = dst[8:24], dst[24:40]
	} else {
		id := binary.BigEndian.Uint16(dst[4:])
		binary.BigEndian.PutUint16(dst[4:], id+uint16(i))
		binary.BigEndian.PutUint16(dst[2:], uint16(n))
		dst[10], dst[11] = 0, 0
		binary.BigEndian.PutUint16(dst[10:], ^sum(dst[:s.l4], 0))
		src, dstAddr = dst[12:16], dst[16:20]
	}

	l4 := dst[s.l4:]
	var field []byte
	if s.proto == protoTCP {
		seq := binary.BigEndian.Uint32(l4[4:])
		binary.BigEndian.PutUint32(l4[4:], seq+uint32(i*s.mss))
		if i < s.n-1 {
			l4[13] &^= tcpFIN | tcpPSH
		}
		if i > 0 {
			l4[13] &^= tcpCWR
		}
		field = l4[16:18]
	} else {
		binary.BigEndian.PutUint16(l4[4:], uint16(len(l4)))
		field = l4[6:8]
	}
	field[0], field[1] = 0, 0
	store(field, sum(l4, pseudoSum(src, dstAddr, s.proto, len(l4))))
	return n
}

// Split cuts the packet pkt, whose virtio header is h, into the packets a
// device without offloads would carry, with complete IP and L4
// checksums, for consumers that need MTU-sized packets (gVisor, fwx's
// in-memory devices, host sockets). Segment i goes to out[i][offset:]
// and its length to sizes[i]; when offset >= [VirtioHdrLen], a zero
// virtio header is also written at out[i][offset-VirtioHdrLen:offset], so
// the segments can go straight to [Device.Write]. It returns the number
// of packets produced. pkt is not modified.
//
// A GSO_NONE packet yields one packet, its checksum completed as by
// [Finish]. TCP (TSO4/TSO6, with or without ECN) and UDP (USO) are
// supported; UFO ([GSOUDP]) is not. Split returns [ErrTooManySegments]
// if out or sizes is too short for every segment, [ErrShortBuffer] if a
// buffer cannot hold its segment, and [ErrMalformed] if h does not
// describe pkt; out is then partly written.
func Split(h Hdr, pkt []byte, out [][]byte, sizes []int, offset int) (int, error) {
	if len(out) == 0 || len(sizes) == 0 {
		return 0, ErrTooManySegments
	}
	if !h.IsGSO() {
		if len(out[0]) < offset+len(pkt) {
			return 0, ErrShortBuffer
		}
		dst := out[0][offset : offset+len(pkt)]
		copy(dst, pkt)
		if err := Finish(h, dst); err != nil {
			return 0, err
		}
		clearHeadroom(out[0], offset)
		sizes[0] = len(pkt)
		return 1, nil
	}
	_, s, err := checkGSO(h, pkt)
	if err != nil {
		return 0, err
	}
	if s.n > len(out) || s.n > len(sizes) {
		return 0, ErrTooManySegments
	}
	for i := range s.n {
		if len(out[i]) < offset+s.segLen(i) {
			return i, ErrShortBuffer
		}
		sizes[i] = s.segment(i, out[i][offset:])
		clearHeadroom(out[i], offset)
	}
	return s.n, nil
}

// clearHeadroom zeroes the virtio header in front of offset, if there is
// room for one.
func clearHeadroom(buf []byte, offset int) {
	if offset >= VirtioHdrLen {
		ClearHdr(buf[offset-VirtioHdrLen : offset])
	}
}

// Coalesce makes the TCP superpacket pkt, whose virtio header is h, one
// large, complete segment in place: the IP length fields cover the whole
// packet, and the IP and TCP checksums are computed from scratch. It is
// what GRO hands a local TCP stack that checks checksums: one segment of
// 64 KiB costs it one pass instead of forty-odd ([Join] for one that
// does not). A
// GSO_NONE packet has its checksum completed as by [Finish]. UDP
// superpackets cannot be one datagram and return [ErrGSO]; a header that
// does not describe pkt returns [ErrMalformed].
func Coalesce(h Hdr, pkt []byte) error {
	if !h.IsGSO() {
		return Finish(h, pkt)
	}
	s, err := join(h, pkt)
	if err != nil {
		return err
	}
	src, dst := pkt[12:16], pkt[16:20]
	if s.v6 {
		src, dst = pkt[8:24], pkt[24:40]
	}
	l4 := pkt[s.l4:]
	l4[16], l4[17] = 0, 0
	store(l4[16:18], sum(l4, pseudoSum(src, dst, protoTCP, len(l4))))
	return nil
}

// Join is Coalesce for a receiver that does not check the TCP checksum (a
// stack that trusts the local kernel, RX checksum offload): it makes the
// TCP superpacket pkt one large segment in place, its IP length fields
// covering the whole packet, and leaves the TCP checksum field as it is,
// partial. A GSO_NONE packet is left as it is. Join returns the errors
// Coalesce does.
func Join(h Hdr, pkt []byte) error {
	if !h.IsGSO() {
		return nil
	}
	_, err := join(h, pkt)
	return err
}

// join checks the TCP superpacket pkt and sets its IP length fields (and
// the IPv4 header checksum) for one segment.
func join(h Hdr, pkt []byte) (segmenter, error) {
	_, s, err := checkGSO(h, pkt)
	if err != nil {
		return s, err
	}
	if s.proto != protoTCP {
		return s, ErrGSO
	}
	if s.v6 {
		binary.BigEndian.PutUint16(pkt[4:], uint16(len(pkt)-40))
	} else {
		binary.BigEndian.PutUint16(pkt[2:], uint16(len(pkt)))
		pkt[10], pkt[11] = 0, 0
		binary.BigEndian.PutUint16(pkt[10:], ^sum(pkt[:s.l4], 0))
	}
	return s, nil
}
