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
	// Query is an ICMP echo request or reply.
	Query
	// Error is an ICMP error (destination unreachable, time exceeded,
	// parameter problem) that quotes the packet that caused it.
	Error
	// Fragment is a non-initial IPv4 fragment, or an initial one; fwx does
	// not reassemble yet, so fragments are dropped.
	Fragment
)

// Packet is a parsed view of an IPv4 packet held in the caller's buffer. It
// is a small value: parsing it and passing it around allocates nothing.
//
// For ICMP queries the echo identifier plays the role of a port on the side
// that asked: a request has Src.Port() = ident and Dst.Port() = 0, a reply
// has Src.Port() = 0 and Dst.Port() = ident, so both map like UDP.
type Packet struct {
	// Kind says how to treat the packet; the other fields are meaningful
	// only when it is not Invalid.
	Kind  Kind
	Proto Proto
	Src   netip.AddrPort
	Dst   netip.AddrPort
	// TCPFlags holds the flags of a TCP packet.
	TCPFlags header.TCPFlags
	// ICMPType and ICMPCode hold the type and code of an ICMP packet.
	ICMPType     header.ICMPv4Type
	ICMPCode     header.ICMPv4Code
	b            []byte       // the whole IP packet, trimmed to its total length
	partial      bool         // the L4 checksum is a partial pseudo-header sum (virtio NEEDS_CSUM)
	sourceRouted bool         // the IP header carries a source-route option (LSRR, SSRR)
	l4           int          // offset of the transport header in b
	inner        int          // offset of the quoted IP header in b (Error only)
	quoted       QuotedPacket // the packet an ICMP error quotes
}

// QuotedPacket is the packet an ICMP error quotes, parsed as far as the
// first eight bytes of its transport header: addresses, ports and protocol
// as they were in the packet that caused the error.
type QuotedPacket struct {
	Proto Proto
	Src   netip.AddrPort
	Dst   netip.AddrPort
	// ICMPType is the type of a quoted ICMP query.
	ICMPType header.ICMPv4Type
}

// Len returns the packet's length in bytes.
func (p *Packet) Len() int { return len(p.b) }

// Bytes returns the packet, trimmed to its IP total length.
func (p *Packet) Bytes() []byte { return p.b }

// Quoted returns the packet quoted by an ICMP error.
func (p *Packet) Quoted() QuotedPacket { return p.quoted }

// TTL returns the packet's time to live.
func (p *Packet) TTL() uint8 { return p.b[8] }

// tcpSeq and tcpAck return a TCP packet's sequence and acknowledgment
// numbers.
func (p *Packet) tcpSeq() uint32 { return binary.BigEndian.Uint32(p.b[p.l4+4:]) }
func (p *Packet) tcpAck() uint32 { return binary.BigEndian.Uint32(p.b[p.l4+8:]) }

// Payload returns the transport payload of a TCP or UDP packet.
func (p *Packet) Payload() []byte {
	switch p.Proto {
	case TCP:
		return p.b[p.l4+int(header.TCP(p.b[p.l4:]).DataOffset()):]
	case UDP:
		return p.b[p.l4+header.UDPMinimumSize:]
	}
	return p.b[p.l4+header.ICMPv4MinimumSize:]
}

// Parse parses an IPv4 packet in b. It checks the IP header (version,
// lengths, header checksum) and the transport header's length, but not the
// transport checksum: a translator fixes checksums incrementally and must not
// "repair" a corrupted packet.
func Parse(b []byte) Packet {
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
		return p
	}
	l4 := b[hl:]
	switch p.Proto {
	case TCP:
		if len(l4) < header.TCPMinimumSize {
			return p
		}
		t := header.TCP(l4)
		if off := int(t.DataOffset()); off < header.TCPMinimumSize || off > len(l4) {
			return p
		}
		p.Src = netip.AddrPortFrom(src, t.SourcePort())
		p.Dst = netip.AddrPortFrom(dst, t.DestinationPort())
		p.TCPFlags = t.Flags()
		p.Kind = Transport
	case UDP:
		if len(l4) < header.UDPMinimumSize {
			return p
		}
		u := header.UDP(l4)
		if n := int(u.Length()); n < header.UDPMinimumSize || n > len(l4) {
			return p
		}
		p.Src = netip.AddrPortFrom(src, u.SourcePort())
		p.Dst = netip.AddrPortFrom(dst, u.DestinationPort())
		p.Kind = Transport
	case ICMP:
		if len(l4) < header.ICMPv4MinimumSize {
			return p
		}
		ic := header.ICMPv4(l4)
		p.ICMPType, p.ICMPCode = ic.Type(), ic.Code()
		switch ic.Type() {
		case header.ICMPv4Echo:
			p.Src = netip.AddrPortFrom(src, ic.Ident())
			p.Dst = netip.AddrPortFrom(dst, 0)
			p.Kind = Query
		case header.ICMPv4EchoReply:
			p.Src = netip.AddrPortFrom(src, 0)
			p.Dst = netip.AddrPortFrom(dst, ic.Ident())
			p.Kind = Query
		case header.ICMPv4DstUnreachable, header.ICMPv4TimeExceeded, header.ICMPv4ParamProblem:
			p.Src, p.Dst = netip.AddrPortFrom(src, 0), netip.AddrPortFrom(dst, 0)
			if parseQuoted(&p, hl+header.ICMPv4MinimumSize) {
				p.Kind = Error
			}
		}
	}
	return p
}

// parseQuoted parses the packet quoted by an ICMP error at offset off of p.b:
// an IP header (options allowed and skipped, RFC 5508 REQ-3) and at least the
// first eight bytes of its transport header, which hold the ports.
func parseQuoted(p *Packet, off int) bool {
	q := p.b[off:]
	if len(q) < header.IPv4MinimumSize || q[0]>>4 != 4 {
		return false
	}
	ip := header.IPv4(q)
	hl := int(ip.HeaderLength())
	if hl < header.IPv4MinimumSize || len(q) < hl+8 || ip.FragmentOffset() != 0 {
		return false
	}
	// RFC 5508 REQ-3: a quoted header with a bad checksum is dropped.
	if !ip.IsChecksumValid() {
		return false
	}
	src := netip.AddrFrom4([4]byte(q[12:16]))
	dst := netip.AddrFrom4([4]byte(q[16:20]))
	l4 := q[hl:]
	in := QuotedPacket{Proto: Proto(ip.Protocol())}
	switch in.Proto {
	case TCP, UDP:
		in.Src = netip.AddrPortFrom(src, binary.BigEndian.Uint16(l4[0:2]))
		in.Dst = netip.AddrPortFrom(dst, binary.BigEndian.Uint16(l4[2:4]))
	case ICMP:
		ic := header.ICMPv4(l4)
		in.ICMPType = ic.Type()
		switch ic.Type() {
		case header.ICMPv4Echo:
			in.Src, in.Dst = netip.AddrPortFrom(src, ic.Ident()), netip.AddrPortFrom(dst, 0)
		case header.ICMPv4EchoReply:
			in.Src, in.Dst = netip.AddrPortFrom(src, 0), netip.AddrPortFrom(dst, ic.Ident())
		default:
			return false // an error about an error is never sent (RFC 1122)
		}
	default:
		return false
	}
	p.inner = off
	p.quoted = in
	return true
}
