package nat

import (
	"net/netip"

	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/checksum"
	"gvisor.dev/gvisor/pkg/tcpip/header"
)

// Packets fwx sends on its own behalf: echo replies, RSTs and ICMP errors,
// in the family of the packet they answer.

// replyTTL is the TTL (IPv6: hop limit) of packets fwx originates.
const replyTTL = 64

// An ICMP error quotes as much of the offending packet as lets it fit in
// the packet every host accepts: 576 bytes for IPv4 (RFC 1812 4.3.2.3),
// the minimum MTU of 1280 for IPv6 (RFC 4443 2.4(c)).
const (
	maxError4 = 576
	maxError6 = header.IPv6MinimumMTU
)

// MaxReplyLen is the largest packet the reply builders write.
const MaxReplyLen = maxError6

// ICMPError is an error fwx sends about a packet, named for what it means;
// the builder picks the ICMP or ICMPv6 type and code.
type ICMPError uint8

// Errors fwx sends.
const (
	// AdminProhibited: the policy refused the flow (ICMP 3/13, ICMPv6 1/1).
	AdminProhibited ICMPError = iota + 1
	// PortUnreachable: nothing listens there (ICMP 3/3, ICMPv6 1/4).
	PortUnreachable
	// TTLExceeded: the TTL or hop limit ran out in transit (ICMP 11/0,
	// ICMPv6 3/0).
	TTLExceeded
)

// typeCode returns the ICMP (v6 false) or ICMPv6 type and code of e.
func (e ICMPError) typeCode(v6 bool) (typ, code uint8) {
	switch {
	case v6 && e == AdminProhibited:
		return uint8(header.ICMPv6DstUnreachable), uint8(header.ICMPv6Prohibited)
	case v6 && e == PortUnreachable:
		return uint8(header.ICMPv6DstUnreachable), uint8(header.ICMPv6PortUnreachable)
	case v6:
		return uint8(header.ICMPv6TimeExceeded), uint8(header.ICMPv6HopLimitExceeded)
	case e == AdminProhibited:
		return uint8(header.ICMPv4DstUnreachable), uint8(header.ICMPv4AdminProhibited)
	case e == PortUnreachable:
		return uint8(header.ICMPv4DstUnreachable), uint8(header.ICMPv4PortUnreachable)
	}
	return uint8(header.ICMPv4TimeExceeded), uint8(header.ICMPv4TTLExceeded)
}

// EchoReply turns an ICMP or ICMPv6 echo request addressed to fwx into its
// reply, in place: addresses swapped, type changed, checksums updated.
func EchoReply(p *Packet) {
	reply := uint8(header.ICMPv4EchoReply)
	if p.v6 {
		ip := header.IPv6(p.b)
		src, dst := ip.SourceAddress(), ip.DestinationAddress()
		ip.SetSourceAddress(dst)
		ip.SetDestinationAddress(src)
		ip.SetHopLimit(replyTTL)
		reply = uint8(header.ICMPv6EchoReply)
	} else {
		ip := header.IPv4(p.b)
		src, dst := ip.SourceAddress(), ip.DestinationAddress()
		ip.SetSourceAddress(dst)
		ip.SetDestinationAddress(src)
		ip.SetTTL(replyTTL)
		ip.SetChecksum(0)
		ip.SetChecksum(^ip.CalculateChecksum())
	}
	// Swapping the addresses leaves the ICMPv6 pseudo-header's sum as
	// it was; only the type changes.
	ic := header.ICMPv4(p.b[p.l4:])
	code := uint16(p.b[p.l4+1])
	ic.SetChecksum(update16(ic.Checksum(), uint16(p.b[p.l4])<<8|code, uint16(reply)<<8|code))
	p.b[p.l4] = reply
	p.Src, p.Dst = p.Dst, p.Src
	p.ICMPType = reply
}

// BuildRST writes into b a TCP RST answering TCP packet p, as a host with no
// such connection would (RFC 9293 section 3.10.7.1), and returns its length,
// or 0 when p must not be answered (it is itself a RST) or b is too small.
func BuildRST(b []byte, p *Packet) int {
	if p.Proto != TCP || p.Kind != Transport || p.TCPFlags&header.TCPFlagRst != 0 {
		return 0
	}
	in := header.TCP(p.b[p.l4:])
	var seq, ack uint32
	flags := header.TCPFlagRst
	if p.TCPFlags&header.TCPFlagAck != 0 {
		seq = in.AckNumber()
	} else {
		flags |= header.TCPFlagAck
		ack = in.SequenceNumber() + uint32(len(p.Payload()))
		if p.TCPFlags&header.TCPFlagSyn != 0 {
			ack++
		}
		if p.TCPFlags&header.TCPFlagFin != 0 {
			ack++
		}
	}
	src, dst := tcpAddr(p.Dst.Addr()), tcpAddr(p.Src.Addr())
	hl := writeIP(b, header.TCPProtocolNumber, src, dst, header.TCPMinimumSize, replyTTL)
	if hl == 0 {
		return 0
	}
	n := hl + header.TCPMinimumSize
	t := header.TCP(b[hl:n])
	t.Encode(&header.TCPFields{
		SrcPort:    p.Dst.Port(),
		DstPort:    p.Src.Port(),
		SeqNum:     seq,
		AckNum:     ack,
		DataOffset: header.TCPMinimumSize,
		Flags:      flags,
	})
	xsum := header.PseudoHeaderChecksum(header.TCPProtocolNumber, src, dst, header.TCPMinimumSize)
	t.SetChecksum(^t.CalculateChecksum(xsum))
	return n
}

// BuildICMPError writes into b error e from fwx's address from about packet
// p, quoting its IP header and as much of its payload as fits, and returns
// its length: an ICMP error for an IPv4 packet, an ICMPv6 one for IPv6
// (from must be of the same family). It returns 0 when p must not be
// answered with an error (RFC 1122 3.2.2, RFC 4443 2.4(e): not about an
// ICMP error, a fragment other than the first, a packet to a multicast or
// broadcast address or from one that cannot be answered) or b is too
// small.
func BuildICMPError(b []byte, p *Packet, from netip.Addr, e ICMPError) int {
	if p.Kind == Error || p.Kind == Invalid || (p.Kind == Fragment && p.frag.offset != 0) ||
		p.v6 != from.Is6() || (p.Proto == ICMP && p.Kind != Query) {
		return 0
	}
	if d, s := p.Dst.Addr(), p.Src.Addr(); d.IsMulticast() || d == broadcast || s.IsMulticast() || s.IsUnspecified() {
		return 0
	}
	limit, proto := maxError4, header.ICMPv4ProtocolNumber
	if p.v6 {
		limit, proto = maxError6, header.ICMPv6ProtocolNumber
	}
	hl := header.IPv4MinimumSize
	if p.v6 {
		hl = header.IPv6MinimumSize
	}
	quote := p.b[:min(len(p.b), limit-hl-header.ICMPv4MinimumSize)]
	src, dst := tcpAddr(from), tcpAddr(p.Src.Addr())
	if writeIP(b, proto, src, dst, header.ICMPv4MinimumSize+len(quote), replyTTL) == 0 {
		return 0
	}
	n := hl + header.ICMPv4MinimumSize + len(quote)
	ic := b[hl:n]
	clear(ic[:header.ICMPv4MinimumSize])
	ic[0], ic[1] = e.typeCode(p.v6)
	copy(ic[header.ICMPv4MinimumSize:], quote)
	var sum uint16
	if p.v6 {
		sum = header.PseudoHeaderChecksum(proto, src, dst, uint16(len(ic)))
	}
	header.ICMPv4(ic).SetChecksum(^checksum.Checksum(ic, sum))
	return n
}

var broadcast = netip.AddrFrom4([4]byte{255, 255, 255, 255})

// writeIP writes at the start of b an IPv4 header without options, or an
// IPv6 header without extensions, for a payload of n bytes, and returns
// its length; 0 when the packet would not fit in b or in an IP packet.
func writeIP(b []byte, proto tcpip.TransportProtocolNumber, src, dst tcpip.Address, n int, ttl uint8) int {
	if src.Len() == 16 {
		if header.IPv6MinimumSize+n > len(b) || n > 0xffff {
			return 0
		}
		header.IPv6(b).Encode(&header.IPv6Fields{
			PayloadLength:     uint16(n),
			TransportProtocol: proto,
			HopLimit:          ttl,
			SrcAddr:           src,
			DstAddr:           dst,
		})
		return header.IPv6MinimumSize
	}
	if header.IPv4MinimumSize+n > len(b) || header.IPv4MinimumSize+n > 0xffff {
		return 0
	}
	ip := header.IPv4(b)
	ip.Encode(&header.IPv4Fields{
		TotalLength: uint16(header.IPv4MinimumSize + n),
		TTL:         ttl,
		Protocol:    uint8(proto),
		SrcAddr:     src,
		DstAddr:     dst,
	})
	ip.SetChecksum(^ip.CalculateChecksum())
	return header.IPv4MinimumSize
}

// BuildUDP writes into b a UDP datagram from src to dst carrying payload,
// in an IPv4 or IPv6 packet as the addresses are, with the given TTL and
// complete checksums, and returns its length, or 0 when b is too small,
// the datagram would not fit in an IP packet or the addresses' families
// differ. The user-mode path sends what datagram filters pass on with it.
func BuildUDP(b []byte, src, dst netip.AddrPort, ttl uint8, payload []byte) int {
	if src.Addr().Is4() != dst.Addr().Is4() || !src.Addr().IsValid() || !dst.Addr().IsValid() {
		return 0
	}
	ul := header.UDPMinimumSize + len(payload)
	s, d := tcpAddr(src.Addr()), tcpAddr(dst.Addr())
	hl := writeIP(b, header.UDPProtocolNumber, s, d, ul, ttl)
	if hl == 0 {
		return 0
	}
	u := header.UDP(b[hl : hl+ul])
	u.Encode(&header.UDPFields{
		SrcPort: src.Port(),
		DstPort: dst.Port(),
		Length:  uint16(ul),
	})
	copy(u[header.UDPMinimumSize:], payload)
	xsum := header.PseudoHeaderChecksum(header.UDPProtocolNumber, s, d, uint16(ul))
	xsum = checksum.Checksum(payload, xsum)
	u.SetChecksum(^u.CalculateChecksum(xsum))
	if u.Checksum() == 0 {
		u.SetChecksum(0xffff) // RFC 768: zero means no checksum
	}
	return hl + ul
}
