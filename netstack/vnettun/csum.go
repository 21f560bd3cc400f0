package vnettun

import (
	"encoding/binary"
	"math/bits"
)

// Internet checksum arithmetic (RFC 1071), plus the two operations a
// pass-through forwarder needs on partial checksums.
//
// sum adds 64-bit little-endian words. The one's-complement sum is
// independent of byte order up to a final byte swap (RFC 1071 section 2(B)),
// so adding little-endian words and swapping at the end gives the
// big-endian (network order) result on every host, with wide adds.

// sum returns the 16-bit one's-complement sum, in network order, of b
// added to initial. The result is folded but not complemented.
func sum(b []byte, initial uint16) uint16 {
	acc := uint64(bits.ReverseBytes16(initial))
	var c uint64
	for len(b) >= 32 {
		acc, c = bits.Add64(acc, binary.LittleEndian.Uint64(b), 0)
		acc, c = bits.Add64(acc, binary.LittleEndian.Uint64(b[8:]), c)
		acc, c = bits.Add64(acc, binary.LittleEndian.Uint64(b[16:]), c)
		acc, c = bits.Add64(acc, binary.LittleEndian.Uint64(b[24:]), c)
		acc += c // cannot overflow: acc <= 2^64-2 after an add with carry out
		b = b[32:]
	}
	for len(b) >= 8 {
		acc, c = bits.Add64(acc, binary.LittleEndian.Uint64(b), 0)
		acc += c
		b = b[8:]
	}
	if len(b) >= 4 {
		acc, c = bits.Add64(acc, uint64(binary.LittleEndian.Uint32(b)), 0)
		acc += c
		b = b[4:]
	}
	if len(b) >= 2 {
		acc, c = bits.Add64(acc, uint64(binary.LittleEndian.Uint16(b)), 0)
		acc += c
		b = b[2:]
	}
	if len(b) == 1 {
		// The odd byte is the high byte of a big-endian word padded with
		// zero, i.e. the low byte of a little-endian one.
		acc, c = bits.Add64(acc, uint64(b[0]), 0)
		acc += c
	}
	return bits.ReverseBytes16(fold(acc))
}

// fold reduces a 64-bit one's-complement accumulator to 16 bits.
func fold(acc uint64) uint16 {
	acc = (acc >> 32) + (acc & 0xffffffff)
	acc = (acc >> 32) + (acc & 0xffffffff)
	acc = (acc >> 16) + (acc & 0xffff)
	acc = (acc >> 16) + (acc & 0xffff)
	return uint16(acc)
}

// add returns the one's-complement sum a + b.
func add(a, b uint16) uint16 {
	s := uint32(a) + uint32(b)
	return uint16(s + s>>16)
}

// pseudoSum returns the folded, non-complemented sum of an IPv4 or IPv6
// pseudo-header (RFC 793 section 3.1, RFC 8200 section 8.1) with the
// given L4 length: the value a partial checksum field holds.
func pseudoSum(src, dst []byte, proto uint8, l4Len int) uint16 {
	s := sum(src, 0)
	s = sum(dst, s)
	s = add(s, uint16(proto))
	s = add(s, uint16(l4Len))
	if l4Len > 0xffff { // IPv6 jumbograms only; kept for completeness
		s = add(s, uint16(l4Len>>16))
	}
	return s
}

// store writes the complemented checksum of s at b[:2], with the UDP rule
// that a computed zero is sent as 0xffff (RFC 768; the kernel's
// skb_checksum_help does the same for TCP, where both are equivalent).
func store(b []byte, s uint16) {
	c := ^s
	if c == 0 {
		c = 0xffff
	}
	binary.BigEndian.PutUint16(b, c)
}

// Finish completes the partial L4 checksum of a GSO_NONE packet whose
// header has [FlagNeedsCsum], in place: it sums pkt[CsumStart:] (which
// includes the partial pseudo-header sum in the checksum field) and
// stores the complement at CsumStart+CsumOffset. It is what the kernel's
// skb_checksum_help does before handing a packet to a device without
// checksum offload. After Finish the caller should clear FlagNeedsCsum
// (or the whole header) before passing the packet on.
//
// Finish does nothing and returns nil if h has no FlagNeedsCsum. It
// returns [ErrGSO] for a superpacket (use [Split]) and [ErrMalformed] if
// the checksum offsets lie outside pkt.
func Finish(h Hdr, pkt []byte) error {
	if !h.NeedsCsum() {
		return nil
	}
	if h.IsGSO() {
		return ErrGSO
	}
	start, at := int(h.CsumStart), int(h.CsumStart)+int(h.CsumOffset)
	if at+2 > len(pkt) {
		return ErrMalformed
	}
	store(pkt[at:], sum(pkt[start:], 0))
	return nil
}

// UpdatePartialAddr updates a partial (NEEDS_CSUM) checksum field, which
// holds the non-complemented pseudo-header sum, for an IPv4 address
// change from old to new. field is the 2-byte L4 checksum field.
//
// Unlike the RFC 1624 update of a complete checksum, the field is
// adjusted by plain one's-complement addition of new - old, without
// complementing. Port changes must NOT be applied to a partial field:
// ports are covered later, when the checksum is completed from
// CsumStart. See the package documentation.
func UpdatePartialAddr(field []byte, old, new [4]byte) {
	updatePartial(field, old[:], new[:])
}

// UpdatePartialAddr6 is [UpdatePartialAddr] for an IPv6 address.
func UpdatePartialAddr6(field []byte, old, new [16]byte) {
	updatePartial(field, old[:], new[:])
}

func updatePartial(field, old, new []byte) {
	s := binary.BigEndian.Uint16(field)
	s = add(s, ^sum(old, 0))
	s = add(s, sum(new, 0))
	binary.BigEndian.PutUint16(field, s)
}
