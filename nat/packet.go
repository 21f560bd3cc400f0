package nat

import (
	"encoding/binary"
	"net/netip"

	"gvisor.dev/gvisor/pkg/tcpip/header"
)

// Kind classifies a parsed packet by how the NAT must treat it.
type Kind uint8

// Kinds of packets.
const (
	// Invalid packets are malformed or of a kind fwx does not forward.
	Invalid Kind = iota
	// Transport is a TCP or UDP packet.
	Transport
	// Query is an ICMP or ICMPv6 echo request or reply.
	Query
	// Error is an ICMP error (destination unreachable, time exceeded,
	// parameter problem; for ICMPv6 also packet too big) that quotes the
	// packet that caused it.
	Error
	// Fragment is a fragment of an IPv4 or IPv6 packet, the first one
	// included.
	Fragment
)

// Packet is a parsed view of an IPv4 or IPv6 packet held in the caller's
// buffer. It is a small value: parsing it and passing it around allocates
// nothing.
//
// For ICMP queries the echo identifier plays the role of a port on the side
// that asked: a request has Src.Port() = ident and Dst.Port() = 0, a reply
// has Src.Port() = 0 and Dst.Port() = ident, so both map like UDP.
type Packet struct {
	// Kind says how to treat the packet; the other fields are meaningful
	// only when it is not Invalid.
	Kind Kind
	// Proto is the transport protocol. ICMPv6 is [ICMP] too: the
	// addresses' family tells the two apart.
	Proto Proto
	Src   netip.AddrPort
	Dst   netip.AddrPort
	// TCPFlags holds the flags of a TCP packet.
	TCPFlags header.TCPFlags
	// ICMPType and ICMPCode hold the type and code of an ICMP or ICMPv6
	// message, as on the wire (header.ICMPv4Type or header.ICMPv6Type).
	ICMPType, ICMPCode uint8
	// Reason says why an Invalid packet is invalid: [DropInvalid], or
	// [DropExtHeader] for an IPv6 extension header fwx does not read.
	Reason DropReason

	b            []byte       // the whole IP packet, trimmed to its length
	v6           bool         // an IPv6 packet
	partial      bool         // the L4 checksum is a partial pseudo-header sum (virtio NEEDS_CSUM)
	verified     bool         // the kernel verified the L4 checksum (virtio DATA_VALID)
	sourceRouted bool         // the IP header carries a source route (IPv4 LSRR, SSRR)
	l4           int          // offset of the transport header in b
	inner        int          // offset of the quoted IP header in b (Error only)
	frag         fragInfo     // Fragment only
	quoted       QuotedPacket // the packet an ICMP error quotes
}

// fragInfo describes a fragment.
type fragInfo struct {
	id     uint32 // the identification (16 bits in IPv4)
	offset uint16 // in bytes
	more   bool   // more fragments follow
	hdr    int    // IPv6: offset of the fragment header in b
}

// QuotedPacket is the packet an ICMP error quotes, parsed as far as the
// first eight bytes of its transport header: addresses, ports and protocol
// as they were in the packet that caused the error.
type QuotedPacket struct {
	Proto Proto
	Src   netip.AddrPort
	Dst   netip.AddrPort
	// ICMPType is the type of a quoted ICMP or ICMPv6 query.
	ICMPType uint8
	l4       int // offset of the quoted transport header from the quoted IP header
}

// Len returns the packet's length in bytes.
func (p *Packet) Len() int { return len(p.b) }

// Bytes returns the packet, trimmed to its IP length.
func (p *Packet) Bytes() []byte { return p.b }

// Is6 reports whether the packet is an IPv6 packet.
func (p *Packet) Is6() bool { return p.v6 }

// Quoted returns the packet quoted by an ICMP error.
func (p *Packet) Quoted() QuotedPacket { return p.quoted }

// TTL returns the packet's time to live (IPv6: hop limit).
func (p *Packet) TTL() uint8 {
	if p.v6 {
		return p.b[7]
	}
	return p.b[8]
}

// tcpSeq and tcpAck return a TCP packet's sequence and acknowledgment
// numbers.
func (p *Packet) tcpSeq() uint32 { return binary.BigEndian.Uint32(p.b[p.l4+4:]) }
func (p *Packet) tcpAck() uint32 { return binary.BigEndian.Uint32(p.b[p.l4+8:]) }

// L4 returns the transport header and what follows it: a whole UDP
// datagram, TCP segment or ICMP message.
func (p *Packet) L4() []byte { return p.b[p.l4:] }

// Payload returns the transport payload of a TCP or UDP packet, and the
// body of an ICMP message after its first eight bytes.
func (p *Packet) Payload() []byte {
	switch p.Proto {
	case TCP:
		return p.b[p.l4+int(header.TCP(p.b[p.l4:]).DataOffset()):]
	case UDP:
		return p.b[p.l4+header.UDPMinimumSize:]
	}
	return p.b[p.l4+header.ICMPv4MinimumSize:]
}

// echoRequest reports whether the packet is an ICMP or ICMPv6 echo request.
func (p *Packet) echoRequest() bool {
	if p.v6 {
		return p.ICMPType == uint8(header.ICMPv6EchoRequest)
	}
	return p.ICMPType == uint8(header.ICMPv4Echo)
}

// Parse parses an IPv4 or IPv6 packet in b. It checks the IP header (version,
// lengths, the IPv4 header checksum, IPv6 extension headers) and the
// transport header's length, but not the transport checksum: a translator
// fixes checksums incrementally and must not "repair" a corrupted packet.
// A packet that does not parse is [Invalid], with the reason in
// Packet.Reason.
func Parse(b []byte) Packet {
	if len(b) > 0 && b[0]>>4 == 6 {
		return parse6(b)
	}
	return parse4(b)
}

func parse4(b []byte) Packet {
	var p Packet
	if len(b) < header.IPv4MinimumSize || b[0]>>4 != 4 {
		return p
	}
	ip := header.IPv4(b)
	hl := int(ip.HeaderLength())
	tl := int(ip.TotalLength())
	if hl < header.IPv4MinimumSize || tl < hl || tl > len(b) {
		return p
	}
	b = b[:tl]
	ip = header.IPv4(b)
	if !ip.IsChecksumValid() {
		return p
	}
	if hl > header.IPv4MinimumSize {
		routed, ok := sourceRouted(b[header.IPv4MinimumSize:hl])
		if !ok {
			return p
		}
		p.sourceRouted = routed
	}
	p.b = b
	p.l4 = hl
	p.Proto = Proto(ip.Protocol())
	src := netip.AddrFrom4([4]byte(b[12:16]))
	dst := netip.AddrFrom4([4]byte(b[16:20]))
	if ip.More() || ip.FragmentOffset() != 0 {
		p.Kind = Fragment
		p.Src, p.Dst = netip.AddrPortFrom(src, 0), netip.AddrPortFrom(dst, 0)
		p.frag = fragInfo{id: uint32(ip.ID()), offset: ip.FragmentOffset(), more: ip.More()}
		return p
	}
	parseTransport(&p, src, dst)
	return p
}

// parseTransport parses the transport header at p.l4, whose addresses are
// src and dst, and sets the packet's kind.
func parseTransport(p *Packet, src, dst netip.Addr) {
	l4 := p.b[p.l4:]
	switch p.Proto {
	case TCP:
		if len(l4) < header.TCPMinimumSize {
			return
		}
		t := header.TCP(l4)
		if off := int(t.DataOffset()); off < header.TCPMinimumSize || off > len(l4) {
			return
		}
		p.Src = netip.AddrPortFrom(src, t.SourcePort())
		p.Dst = netip.AddrPortFrom(dst, t.DestinationPort())
		p.TCPFlags = t.Flags()
		p.Kind = Transport
	case UDP:
		if len(l4) < header.UDPMinimumSize {
			return
		}
		u := header.UDP(l4)
		if n := int(u.Length()); n < header.UDPMinimumSize || n > len(l4) {
			return
		}
		p.Src = netip.AddrPortFrom(src, u.SourcePort())
		p.Dst = netip.AddrPortFrom(dst, u.DestinationPort())
		p.Kind = Transport
	case ICMP:
		if len(l4) < header.ICMPv4MinimumSize {
			return
		}
		p.ICMPType, p.ICMPCode = l4[0], l4[1]
		ident := binary.BigEndian.Uint16(l4[4:])
		switch icmpClass(p.v6, p.ICMPType) {
		case echoRequest:
			p.Src = netip.AddrPortFrom(src, ident)
			p.Dst = netip.AddrPortFrom(dst, 0)
			p.Kind = Query
		case echoReply:
			p.Src = netip.AddrPortFrom(src, 0)
			p.Dst = netip.AddrPortFrom(dst, ident)
			p.Kind = Query
		case icmpError:
			p.Src, p.Dst = netip.AddrPortFrom(src, 0), netip.AddrPortFrom(dst, 0)
			if parseQuoted(p, p.l4+header.ICMPv4MinimumSize) {
				p.Kind = Error
			}
		}
	}
}

// icmpKind sorts ICMP and ICMPv6 messages by what the NAT does with them.
type icmpKind uint8

const (
	icmpOther   icmpKind = iota // not forwarded: router and neighbor discovery, MLD, timestamps, ...
	echoRequest                 // a query, mapped like a UDP flow by its identifier
	echoReply
	icmpError // quotes the packet it is about
)

// icmpClass returns the kind of an ICMP (v6 false) or ICMPv6 message of
// type typ. Neighbor discovery never crosses fwx: a TUN has no link layer,
// and the kernel on either side answers its own.
func icmpClass(v6 bool, typ uint8) icmpKind {
	if v6 {
		switch header.ICMPv6Type(typ) {
		case header.ICMPv6EchoRequest:
			return echoRequest
		case header.ICMPv6EchoReply:
			return echoReply
		case header.ICMPv6DstUnreachable, header.ICMPv6PacketTooBig, header.ICMPv6TimeExceeded, header.ICMPv6ParamProblem:
			return icmpError
		}
		return icmpOther
	}
	switch header.ICMPv4Type(typ) {
	case header.ICMPv4Echo:
		return echoRequest
	case header.ICMPv4EchoReply:
		return echoReply
	case header.ICMPv4DstUnreachable, header.ICMPv4TimeExceeded, header.ICMPv4ParamProblem:
		return icmpError
	}
	return icmpOther
}

// parseQuoted parses the packet quoted by an ICMP error at offset off of p.b:
// an IP header of the error's family (IPv4 options and IPv6 extension
// headers allowed and skipped, RFC 5508 REQ-3) and at least the first eight
// bytes of its transport header, which hold the ports.
func parseQuoted(p *Packet, off int) bool {
	q := p.b[off:]
	var src, dst netip.Addr
	var proto Proto
	var hl int
	if p.v6 {
		var ok bool
		if src, dst, proto, hl, ok = quoted6(q); !ok {
			return false
		}
	} else {
		if len(q) < header.IPv4MinimumSize || q[0]>>4 != 4 {
			return false
		}
		ip := header.IPv4(q)
		hl = int(ip.HeaderLength())
		if hl < header.IPv4MinimumSize || len(q) < hl || ip.FragmentOffset() != 0 {
			return false
		}
		// RFC 5508 REQ-3: a quoted header with a bad checksum is dropped.
		if !ip.IsChecksumValid() {
			return false
		}
		src, dst = netip.AddrFrom4([4]byte(q[12:16])), netip.AddrFrom4([4]byte(q[16:20]))
		proto = Proto(ip.Protocol())
	}
	if len(q) < hl+8 {
		return false
	}
	l4 := q[hl:]
	in := QuotedPacket{Proto: proto, l4: hl}
	switch in.Proto {
	case TCP, UDP:
		in.Src = netip.AddrPortFrom(src, binary.BigEndian.Uint16(l4[0:2]))
		in.Dst = netip.AddrPortFrom(dst, binary.BigEndian.Uint16(l4[2:4]))
	case ICMP:
		in.ICMPType = l4[0]
		ident := binary.BigEndian.Uint16(l4[4:])
		switch icmpClass(p.v6, l4[0]) {
		case echoRequest:
			in.Src, in.Dst = netip.AddrPortFrom(src, ident), netip.AddrPortFrom(dst, 0)
		case echoReply:
			in.Src, in.Dst = netip.AddrPortFrom(src, 0), netip.AddrPortFrom(dst, ident)
		default:
			return false // an error about an error is never sent (RFC 1122, RFC 4443 2.4)
		}
	default:
		return false
	}
	p.inner = off
	p.quoted = in
	return true
}
