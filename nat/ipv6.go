package nat

import (
	"encoding/binary"
	"net/netip"

	"gvisor.dev/gvisor/pkg/tcpip/header"
)

// IPv6 extension headers (RFC 8200 section 4) are walked, not trusted: the
// walk follows the chain within the packet's bounds and at most
// maxExtHeaders deep, and a header fwx does not read (AH, ESP, Mobility,
// HIP, Shim6, the experimental ones) or a malformed chain makes the packet
// Invalid with [DropExtHeader], so nothing past it is ever misread as a
// port.

// IPv6 next-header values fwx walks or refuses.
const (
	nhHopByHop = 0
	nhRouting  = 43
	nhFragment = 44
	nhESP      = 50
	nhAH       = 51
	nhICMPv6   = 58
	nhNone     = 59
	nhDestOpts = 60
	nhMobility = 135
	nhHIP      = 139
	nhShim6    = 140
	nhTest1    = 253
	nhTest2    = 254
)

// maxExtHeaders bounds the walk. Real traffic carries one or two
// (hop-by-hop, a fragment header, destination options); RFC 7112 wants the
// whole chain in the first fragment, and longer chains are a known way to
// hide the transport header from filters (RFC 9098).
const maxExtHeaders = 8

// chain6 is what the walk of an IPv6 header chain finds.
type chain6 struct {
	proto  uint8    // the upper-layer protocol (next header)
	l4     int      // its offset
	routed bool     // a routing header with segments left: a source route
	frag   fragInfo // the fragment header's fields, when hdr > 0
}

// walk6 walks the extension headers of b, an IPv6 packet (at least its
// fixed header), up to the upper-layer header. quoted says b is the packet
// an ICMPv6 error quotes: it may be cut short, so the walk needs only the
// headers themselves to be present. It returns ok false, with the reason,
// for a chain fwx does not read.
func walk6(b []byte, quoted bool) (c chain6, why DropReason, ok bool) {
	nh, off := b[6], header.IPv6MinimumSize
	for n := 0; ; n++ {
		switch nh {
		case nhHopByHop, nhRouting, nhDestOpts, nhFragment:
		case nhESP, nhAH, nhMobility, nhHIP, nhShim6, nhTest1, nhTest2:
			return c, DropExtHeader, false
		case nhNone:
			return c, DropInvalid, false
		default:
			c.proto, c.l4 = nh, off
			return c, 0, true
		}
		if n == maxExtHeaders || len(b) < off+8 || (nh == nhHopByHop && n > 0) {
			return c, DropExtHeader, false
		}
		h := b[off:]
		size := (int(h[1]) + 1) * 8
		switch nh {
		case nhRouting:
			// RFC 5095: type 0 is deprecated and treated as unknown.
			if h[2] == 0 {
				return c, DropExtHeader, false
			}
			c.routed = c.routed || h[3] > 0
		case nhFragment:
			size = 8
			if c.frag.hdr > 0 {
				return c, DropExtHeader, false // two fragment headers
			}
			v := binary.BigEndian.Uint16(h[2:])
			c.frag = fragInfo{id: binary.BigEndian.Uint32(h[4:]), offset: v &^ 7, more: v&1 != 0, hdr: off}
			if c.frag.offset != 0 {
				// A later fragment: what follows is data, not headers.
				if quoted {
					return c, DropInvalid, false
				}
				c.proto, c.l4 = h[0], off+size
				return c, 0, true
			}
		}
		if len(b) < off+size {
			return c, DropExtHeader, false
		}
		nh, off = h[0], off+size
	}
}

func parse6(b []byte) Packet {
	var p Packet
	if len(b) < header.IPv6MinimumSize {
		return p
	}
	pl := int(binary.BigEndian.Uint16(b[4:]))
	if pl == 0 || header.IPv6MinimumSize+pl > len(b) {
		// A zero length is a jumbogram's (RFC 2675), which no TUN
		// carries; a longer one is truncated.
		return p
	}
	b = b[:header.IPv6MinimumSize+pl]
	c, why, ok := walk6(b, false)
	if !ok {
		p.Reason = why
		return p
	}
	p.b, p.v6, p.l4 = b, true, c.l4
	p.sourceRouted = c.routed
	p.Proto = proto6(c.proto)
	src := netip.AddrFrom16([16]byte(b[8:24]))
	dst := netip.AddrFrom16([16]byte(b[24:40]))
	if c.frag.hdr > 0 && (c.frag.more || c.frag.offset != 0) {
		// An atomic fragment (offset 0, no more, RFC 6946) is a whole
		// packet; any other is a fragment.
		p.Kind = Fragment
		p.frag = c.frag
		p.Src, p.Dst = netip.AddrPortFrom(src, 0), netip.AddrPortFrom(dst, 0)
		return p
	}
	parseTransport(&p, src, dst)
	return p
}

// proto6 maps an IPv6 upper-layer protocol to the Proto fwx knows it by:
// ICMPv6 is [ICMP]; ICMP for IPv4 carried over IPv6 is nothing fwx
// translates.
func proto6(nh uint8) Proto {
	switch nh {
	case nhICMPv6:
		return ICMP
	case uint8(ICMP):
		return 0
	}
	return Proto(nh)
}

// quoted6 parses the IPv6 header of q, the packet an ICMPv6 error quotes,
// and returns its addresses, protocol and the offset of its transport
// header.
func quoted6(q []byte) (src, dst netip.Addr, proto Proto, l4 int, ok bool) {
	if len(q) < header.IPv6MinimumSize || q[0]>>4 != 6 {
		return src, dst, 0, 0, false
	}
	c, _, ok := walk6(q, true)
	if !ok {
		return src, dst, 0, 0, false
	}
	src = netip.AddrFrom16([16]byte(q[8:24]))
	dst = netip.AddrFrom16([16]byte(q[24:40]))
	return src, dst, proto6(c.proto), c.l4, true
}
