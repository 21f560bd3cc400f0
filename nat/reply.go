package nat

import (
	"net/netip"

	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/checksum"
	"gvisor.dev/gvisor/pkg/tcpip/header"
)

// Packets fwx sends on its own behalf: echo replies, RSTs and ICMP errors.

// replyTTL is the TTL of packets fwx originates.
const replyTTL = 64

// maxQuote bounds how much of the offending packet an ICMP error quotes, so
// the error fits in the 576 bytes every host accepts (RFC 1812 4.3.2.3).
const maxQuote = 576 - header.IPv4MinimumSize - header.ICMPv4MinimumSize

// MaxReplyLen is the largest packet the reply builders write.
const MaxReplyLen = 576

// EchoReply turns an ICMP echo request addressed to fwx into its reply, in
// place: addresses swapped, type changed, checksums updated.
func EchoReply(p *Packet) {
	ip := header.IPv4(p.b)
	src, dst := ip.SourceAddress(), ip.DestinationAddress()
	ip.SetSourceAddress(dst)
	ip.SetDestinationAddress(src)
	ip.SetTTL(replyTTL)
	ip.SetChecksum(0)
	ip.SetChecksum(^ip.CalculateChecksum())
	ic := header.ICMPv4(p.b[p.l4:])
	ic.SetType(header.ICMPv4EchoReply)
	ic.SetChecksum(update16(ic.Checksum(), uint16(header.ICMPv4Echo)<<8|uint16(ic.Code()), uint16(header.ICMPv4EchoReply)<<8|uint16(ic.Code())))
	p.Src, p.Dst = p.Dst, p.Src
	p.ICMPType = header.ICMPv4EchoReply
}

// BuildRST writes into b a TCP RST answering TCP packet p, as a host with no
// such connection would (RFC 9293 section 3.10.7.1), and returns its length,
// or 0 when p must not be answered (it is itself a RST) or b is too small.
func BuildRST(b []byte, p *Packet) int {
	const n = header.IPv4MinimumSize + header.TCPMinimumSize
	if p.Proto != TCP || p.TCPFlags&header.TCPFlagRst != 0 || len(b) < n {
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
	src, dst := addr(p.Dst.Addr().As4()), addr(p.Src.Addr().As4())
	writeIPv4(b[:n], header.TCPProtocolNumber, src, dst)
	t := header.TCP(b[header.IPv4MinimumSize:n])
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

// BuildICMPError writes into b an ICMP error of the given type and code from
// fwx's address from about packet p, quoting its IP header and as much of
// its payload as fits, and returns its length. It returns 0 when p must not
// be answered with an error (RFC 1122 3.2.2: not about an ICMP error, a
// non-initial fragment, or a broadcast) or b is too small.
func BuildICMPError(b []byte, p *Packet, from tcpip.Address, typ header.ICMPv4Type, code header.ICMPv4Code) int {
	if p.Kind == Error || p.Kind == Invalid || (p.Kind == Fragment && header.IPv4(p.b).FragmentOffset() != 0) {
		return 0
	}
	if d := p.Dst.Addr(); d.IsMulticast() || d == broadcast {
		return 0
	}
	quote := p.b
	if len(quote) > maxQuote {
		quote = quote[:maxQuote]
	}
	n := header.IPv4MinimumSize + header.ICMPv4MinimumSize + len(quote)
	if len(b) < n {
		return 0
	}
	writeIPv4(b[:n], header.ICMPv4ProtocolNumber, from, addr(p.Src.Addr().As4()))
	ic := header.ICMPv4(b[header.IPv4MinimumSize:n])
	clear(ic[:header.ICMPv4MinimumSize])
	ic.SetType(typ)
	ic.SetCode(code)
	copy(ic[header.ICMPv4MinimumSize:], quote)
	ic.SetChecksum(^checksum.Checksum(ic, 0))
	return n
}

var broadcast = netip.AddrFrom4([4]byte{255, 255, 255, 255})

func addr(a [4]byte) tcpip.Address { return tcpip.AddrFrom4(a) }

// writeIPv4 writes an IPv4 header without options filling b.
func writeIPv4(b []byte, proto tcpip.TransportProtocolNumber, src, dst tcpip.Address) {
	ip := header.IPv4(b)
	ip.Encode(&header.IPv4Fields{
		TotalLength: uint16(len(b)),
		TTL:         replyTTL,
		Protocol:    uint8(proto),
		SrcAddr:     src,
		DstAddr:     dst,
	})
	ip.SetChecksum(^ip.CalculateChecksum())
}

// BuildUDP writes into b an IPv4 UDP datagram from src to dst carrying
// payload, with the given TTL and complete checksums, and returns its
// length, or 0 when b is too small or the datagram would not fit in an IPv4
// packet. The user-mode path sends what datagram filters pass on with it.
func BuildUDP(b []byte, src, dst netip.AddrPort, ttl uint8, payload []byte) int {
	n := header.IPv4MinimumSize + header.UDPMinimumSize + len(payload)
	if n > len(b) || n > 0xffff || !src.Addr().Is4() || !dst.Addr().Is4() {
		return 0
	}
	s, d := addr(src.Addr().As4()), addr(dst.Addr().As4())
	ip := header.IPv4(b[:n])
	ip.Encode(&header.IPv4Fields{
		TotalLength: uint16(n),
		TTL:         ttl,
		Protocol:    uint8(header.UDPProtocolNumber),
		SrcAddr:     s,
		DstAddr:     d,
	})
	ip.SetChecksum(^ip.CalculateChecksum())
	u := header.UDP(b[header.IPv4MinimumSize:n])
	u.Encode(&header.UDPFields{
		SrcPort: src.Port(),
		DstPort: dst.Port(),
		Length:  uint16(header.UDPMinimumSize + len(payload)),
	})
	copy(u[header.UDPMinimumSize:], payload)
	xsum := header.PseudoHeaderChecksum(header.UDPProtocolNumber, s, d, uint16(len(u)))
	xsum = checksum.Checksum(payload, xsum)
	u.SetChecksum(^u.CalculateChecksum(xsum))
	if u.Checksum() == 0 {
		u.SetChecksum(0xffff) // RFC 768: zero means no checksum
	}
	return n
}
