package nat

import (
	"encoding/binary"

	"gvisor.dev/gvisor/pkg/tcpip/header"
)

// Refragment cuts pkt, a datagram [Table.Reassemble] returned and the table
// translated, into fragments of at most mtu bytes, as it arrived. It
// writes fragment i into bufs[i][offset:] and its length into sizes[i],
// and returns how many it wrote: 1 when pkt fits in mtu, and 0 when the
// fragments would not fit in bufs or mtu leaves no room for data.
//
// An IPv4 fragment after the first carries only the options marked to be
// copied (RFC 791); an IPv6 datagram must hold its fragment header (the
// atomic fragment Reassemble leaves), whose identification every fragment
// carries, after the headers that stay unfragmented.
func Refragment(pkt []byte, mtu int, bufs [][]byte, sizes []int, offset int) int {
	if len(pkt) <= mtu {
		if len(bufs) == 0 || len(bufs[0]) < offset+len(pkt) {
			return 0
		}
		sizes[0] = copy(bufs[0][offset:], pkt)
		return 1
	}
	if len(pkt) > 0 && pkt[0]>>4 == 6 {
		return refragment6(pkt, mtu, bufs, sizes, offset)
	}
	return refragment4(pkt, mtu, bufs, sizes, offset)
}

func refragment4(pkt []byte, mtu int, bufs [][]byte, sizes []int, offset int) int {
	if len(pkt) < header.IPv4MinimumSize {
		return 0
	}
	hl := int(header.IPv4(pkt).HeaderLength())
	if hl < header.IPv4MinimumSize || hl > len(pkt) {
		return 0
	}
	chunk := (mtu - hl) &^ 7
	if chunk <= 0 {
		return 0
	}
	// The header of the fragments after the first: the options marked
	// "copied" only, padded to a multiple of four bytes.
	var later [60]byte
	ll := copy(later[:], pkt[:header.IPv4MinimumSize])
	for o := header.IPv4MinimumSize; o < hl; {
		typ := pkt[o]
		if typ == 0 {
			break // end of options
		}
		n := 1
		if typ != 1 { // every option but NOP has a length
			if o+1 >= hl || pkt[o+1] < 2 || o+int(pkt[o+1]) > hl {
				return 0
			}
			n = int(pkt[o+1])
		}
		if typ&0x80 != 0 {
			ll += copy(later[ll:], pkt[o:o+n])
		}
		o += n
	}
	for ll%4 != 0 {
		later[ll] = 0
		ll++
	}
	later[0] = 4<<4 | byte(ll/4)
	data := pkt[hl:]
	n := 0
	for at := 0; at < len(data); n++ {
		if n == len(bufs) {
			return 0
		}
		head := pkt[:hl]
		if at > 0 {
			head = later[:ll]
		}
		size := min(chunk, len(data)-at)
		if len(bufs[n]) < offset+len(head)+size {
			return 0
		}
		b := bufs[n][offset:]
		copy(b, head)
		copy(b[len(head):], data[at:at+size])
		ip := header.IPv4(b[:len(head)+size])
		var flags uint8
		if at+size < len(data) {
			flags = header.IPv4FlagMoreFragments
		}
		ip.SetTotalLength(uint16(len(head) + size))
		ip.SetFlagsFragmentOffset(flags, uint16(at))
		ip.SetChecksum(0)
		ip.SetChecksum(^ip.CalculateChecksum())
		sizes[n] = len(head) + size
		at += size
	}
	return n
}

func refragment6(pkt []byte, mtu int, bufs [][]byte, sizes []int, offset int) int {
	if len(pkt) < header.IPv6MinimumSize {
		return 0
	}
	c, _, ok := walk6(pkt, false)
	if !ok || c.frag.hdr == 0 {
		return 0
	}
	head := pkt[:c.frag.hdr+8] // the unfragmented headers and the fragment header
	data := pkt[len(head):]
	chunk := (mtu - len(head)) &^ 7
	if chunk <= 0 {
		return 0
	}
	n := 0
	for at := 0; at < len(data); n++ {
		size := min(chunk, len(data)-at)
		if n == len(bufs) || len(bufs[n]) < offset+len(head)+size {
			return 0
		}
		b := bufs[n][offset:]
		copy(b, head)
		copy(b[len(head):], data[at:at+size])
		binary.BigEndian.PutUint16(b[4:], uint16(len(head)+size-header.IPv6MinimumSize))
		v := uint16(at)
		if at+size < len(data) {
			v |= 1 // more fragments
		}
		binary.BigEndian.PutUint16(b[c.frag.hdr+2:], v)
		sizes[n] = len(head) + size
		at += size
	}
	return n
}

// Fragment6 cuts pkt, an IPv6 packet with no extension header (as
// [BuildUDP] makes), into fragments of at most mtu bytes that carry a
// fragment header with identification id, as an IPv6 source must (routers
// never fragment), writing them as [Refragment] does. It returns 0 when
// pkt has an extension header, or the fragments would not fit in bufs or
// mtu leaves no room for data; 1, a copy, when pkt fits in mtu.
func Fragment6(pkt []byte, mtu int, id uint32, bufs [][]byte, sizes []int, offset int) int {
	if len(pkt) < header.IPv6MinimumSize || pkt[0]>>4 != 6 {
		return 0
	}
	switch pkt[6] {
	case nhHopByHop, nhRouting, nhFragment, nhDestOpts, nhAH, nhESP:
		return 0
	}
	if len(pkt) <= mtu {
		return Refragment(pkt, mtu, bufs, sizes, offset)
	}
	const hl = header.IPv6MinimumSize + 8 // the fixed header and the fragment header
	data := pkt[header.IPv6MinimumSize:]
	chunk := (mtu - hl) &^ 7
	if chunk <= 0 {
		return 0
	}
	n := 0
	for at := 0; at < len(data); n++ {
		size := min(chunk, len(data)-at)
		if n == len(bufs) || len(bufs[n]) < offset+hl+size {
			return 0
		}
		b := bufs[n][offset:]
		copy(b, pkt[:header.IPv6MinimumSize])
		b[6] = nhFragment
		fh := b[header.IPv6MinimumSize:hl]
		fh[0], fh[1] = pkt[6], 0
		v := uint16(at)
		if at+size < len(data) {
			v |= 1 // more fragments
		}
		binary.BigEndian.PutUint16(fh[2:], v)
		binary.BigEndian.PutUint32(fh[4:], id)
		copy(b[hl:], data[at:at+size])
		binary.BigEndian.PutUint16(b[4:], uint16(hl+size-header.IPv6MinimumSize))
		sizes[n] = hl + size
		at += size
	}
	return n
}
