package lab

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"

	"gvisor.dev/gvisor/pkg/tcpip/checksum"
	"gvisor.dev/gvisor/pkg/tcpip/header"
)

// Packet builders for tests that inject raw traffic with [Segment.Inject].
// They build the packets byte by byte rather than through gVisor's
// encoders, and VerifyChecksums recomputes checksums from scratch, so the
// lab's idea of a correct packet does not share code with the stacks it
// checks. The builders panic on invalid or mixed-family addresses: they
// are meant for literals in tests.

// Fixed header fields of built packets.
const (
	builtTTL    = 64
	builtWindow = 65535
)

// IP protocol numbers (RFC 790, RFC 4443).
const (
	protoICMPv4 = 1
	protoTCP    = 6
	protoUDP    = 17
	protoICMPv6 = 58
)

// UDPPacket returns an IP packet carrying a UDP datagram from src to dst
// with payload. Both addresses must be IPv4 (giving an IPv4 packet with
// TTL 64, ID 0 and no flags) or both IPv6 (hop limit 64). Checksums are
// correct.
func UDPPacket(src, dst netip.AddrPort, payload []byte) []byte {
	pkt, l4 := ipPacket(src.Addr(), dst.Addr(), protoUDP, header.UDPMinimumSize+len(payload))
	binary.BigEndian.PutUint16(l4[0:], src.Port())
	binary.BigEndian.PutUint16(l4[2:], dst.Port())
	binary.BigEndian.PutUint16(l4[4:], uint16(len(l4)))
	copy(l4[header.UDPMinimumSize:], payload)
	sum := ^checksum.Checksum(l4, pseudoHeaderSum(src.Addr(), dst.Addr(), protoUDP, len(l4)))
	if sum == 0 {
		sum = 0xffff // RFC 768: a computed zero is sent as all ones
	}
	binary.BigEndian.PutUint16(l4[6:], sum)
	return pkt
}

// TCPPacket returns an IP packet carrying a TCP segment from src to dst
// with the given flags, sequence and acknowledgment numbers and payload, a
// 20-byte header without options, and a window of 65535. Addresses are as
// for [UDPPacket]. Checksums are correct.
func TCPPacket(src, dst netip.AddrPort, flags header.TCPFlags, seq, ack uint32, payload []byte) []byte {
	pkt, l4 := ipPacket(src.Addr(), dst.Addr(), protoTCP, header.TCPMinimumSize+len(payload))
	binary.BigEndian.PutUint16(l4[0:], src.Port())
	binary.BigEndian.PutUint16(l4[2:], dst.Port())
	binary.BigEndian.PutUint32(l4[4:], seq)
	binary.BigEndian.PutUint32(l4[8:], ack)
	l4[12] = header.TCPMinimumSize / 4 << 4
	l4[13] = uint8(flags)
	binary.BigEndian.PutUint16(l4[14:], builtWindow)
	copy(l4[header.TCPMinimumSize:], payload)
	sum := ^checksum.Checksum(l4, pseudoHeaderSum(src.Addr(), dst.Addr(), protoTCP, len(l4)))
	binary.BigEndian.PutUint16(l4[16:], sum)
	return pkt
}

// ICMPEcho returns an IPv4 packet carrying an ICMP message of type typ
// (normally [header.ICMPv4Echo] or [header.ICMPv4EchoReply]), code 0, with
// the given identifier and sequence number and no payload. Checksums are
// correct.
func ICMPEcho(src, dst netip.Addr, typ header.ICMPv4Type, id, seq uint16) []byte {
	if !src.Is4() || !dst.Is4() {
		panic(fmt.Sprintf("lab: ICMPEcho(%v, %v): addresses must be IPv4", src, dst))
	}
	pkt, l4 := ipPacket(src, dst, protoICMPv4, header.ICMPv4MinimumSize)
	l4[0] = uint8(typ)
	binary.BigEndian.PutUint16(l4[4:], id)
	binary.BigEndian.PutUint16(l4[6:], seq)
	binary.BigEndian.PutUint16(l4[2:], ^checksum.Checksum(l4, 0))
	return pkt
}

// ICMPError returns an IPv4 packet carrying an ICMP error message of type
// typ and code (say [header.ICMPv4DstUnreachable] and
// [header.ICMPv4PortUnreachable]) that quotes quoted, normally the start of
// the packet the error is about: orig[:28] is the IP header and 8 bytes of
// an IPv4 packet without options, the minimum RFC 792 requires; Linux quotes
// up to 548 bytes. Checksums are correct; the quoted packet is copied as
// it is.
func ICMPError(src, dst netip.Addr, typ header.ICMPv4Type, code header.ICMPv4Code, quoted []byte) []byte {
	if !src.Is4() || !dst.Is4() {
		panic(fmt.Sprintf("lab: ICMPError(%v, %v): addresses must be IPv4", src, dst))
	}
	pkt, l4 := ipPacket(src, dst, protoICMPv4, header.ICMPv4MinimumSize+len(quoted))
	l4[0] = uint8(typ)
	l4[1] = uint8(code)
	copy(l4[header.ICMPv4MinimumSize:], quoted)
	binary.BigEndian.PutUint16(l4[2:], ^checksum.Checksum(l4, 0))
	return pkt
}

// ICMPv6Echo returns an IPv6 packet carrying an ICMPv6 message of type typ
// (normally [header.ICMPv6EchoRequest] or [header.ICMPv6EchoReply]), code 0,
// with the given identifier and sequence number and no payload. Checksums
// are correct.
func ICMPv6Echo(src, dst netip.Addr, typ header.ICMPv6Type, id, seq uint16) []byte {
	pkt, l4 := ipPacket(src, dst, protoICMPv6, header.ICMPv6EchoMinimumSize)
	l4[0] = uint8(typ)
	binary.BigEndian.PutUint16(l4[4:], id)
	binary.BigEndian.PutUint16(l4[6:], seq)
	binary.BigEndian.PutUint16(l4[2:], ^checksum.Checksum(l4, pseudoHeaderSum(src, dst, protoICMPv6, len(l4))))
	return pkt
}

// ICMPv6Error returns an IPv6 packet carrying an ICMPv6 error message of
// type typ and code (say [header.ICMPv6PacketTooBig], 0) that quotes
// quoted, the start of the packet the error is about, and carries info in
// its second word (the MTU of a Packet Too Big, the pointer of a Parameter
// Problem). Checksums are correct; the quoted packet is copied as it is.
func ICMPv6Error(src, dst netip.Addr, typ header.ICMPv6Type, code header.ICMPv6Code, info uint32, quoted []byte) []byte {
	pkt, l4 := ipPacket(src, dst, protoICMPv6, header.ICMPv6ErrorHeaderSize+len(quoted))
	l4[0] = uint8(typ)
	l4[1] = uint8(code)
	binary.BigEndian.PutUint32(l4[4:], info)
	copy(l4[header.ICMPv6ErrorHeaderSize:], quoted)
	binary.BigEndian.PutUint16(l4[2:], ^checksum.Checksum(l4, pseudoHeaderSum(src, dst, protoICMPv6, len(l4))))
	return pkt
}

// ipPacket returns a packet with an IP header from src to dst for a
// transport payload of l4Len bytes, and the payload part of it.
func ipPacket(src, dst netip.Addr, proto uint8, l4Len int) (pkt, l4 []byte) {
	switch {
	case src.Is4() && dst.Is4():
		pkt = make([]byte, header.IPv4MinimumSize+l4Len)
		pkt[0] = 4<<4 | header.IPv4MinimumSize/4
		binary.BigEndian.PutUint16(pkt[2:], uint16(len(pkt)))
		pkt[8] = builtTTL
		pkt[9] = proto
		s, d := src.As4(), dst.As4()
		copy(pkt[12:], s[:])
		copy(pkt[16:], d[:])
		binary.BigEndian.PutUint16(pkt[10:], ^checksum.Checksum(pkt[:header.IPv4MinimumSize], 0))
		return pkt, pkt[header.IPv4MinimumSize:]
	case src.Is6() && !src.Is4In6() && dst.Is6() && !dst.Is4In6():
		pkt = make([]byte, header.IPv6MinimumSize+l4Len)
		pkt[0] = 6 << 4
		binary.BigEndian.PutUint16(pkt[4:], uint16(l4Len))
		pkt[6] = proto
		pkt[7] = builtTTL
		s, d := src.As16(), dst.As16()
		copy(pkt[8:], s[:])
		copy(pkt[24:], d[:])
		return pkt, pkt[header.IPv6MinimumSize:]
	}
	panic(fmt.Sprintf("lab: cannot build a packet from %v to %v", src, dst))
}

// pseudoHeaderSum returns the checksum of the pseudo-header that TCP, UDP
// and ICMPv6 checksums cover (RFC 793, RFC 768, RFC 8200 section 8.1).
func pseudoHeaderSum(src, dst netip.Addr, proto uint8, length int) uint16 {
	sum := checksum.Checksum(src.AsSlice(), 0)
	sum = checksum.Checksum(dst.AsSlice(), sum)
	var b [8]byte
	binary.BigEndian.PutUint32(b[0:], uint32(length))
	b[7] = proto
	return checksum.Checksum(b[:], sum)
}

// VerifyChecksums reports whether every checksum in pkt is correct: the
// IPv4 header checksum and, unless pkt is a fragment, the TCP, UDP, ICMPv4
// or ICMPv6 checksum. It returns nil if they are, and otherwise an error
// naming the first bad one with its expected value. It also fails if pkt
// is not a well-formed IPv4 or IPv6 packet. Transports it does not know are
// not checked. IPv6 hop-by-hop, routing, destination options and fragment
// headers are followed.
func VerifyChecksums(pkt []byte) error {
	ip, err := parseIP(pkt)
	if err != nil {
		return err
	}
	sums := checkSums(pkt, ip)
	switch {
	case !sums.ip.ok:
		return fmt.Errorf("lab: bad IPv4 header checksum %#04x, want %#04x", sums.ip.got, sums.ip.want)
	case sums.l4.truncated:
		return fmt.Errorf("lab: %s header truncated (%d bytes)", sums.l4.name, len(ip.payload))
	case !sums.l4.ok:
		return fmt.Errorf("lab: bad %s checksum %#04x, want %#04x", sums.l4.name, sums.l4.got, sums.l4.want)
	}
	return nil
}

// sumCheck is the verdict on one checksum field.
type sumCheck struct {
	name      string // "IPv4 header", "TCP", ...; empty if not checked
	truncated bool   // too short to hold the field
	ok        bool
	got, want uint16
}

func (c sumCheck) String() string {
	switch {
	case c.truncated:
		return "truncated"
	case c.ok:
		return "ok"
	}
	return fmt.Sprintf("BAD(%#04x,want %#04x)", c.got, c.want)
}

// checkSums checks the checksums of pkt, whose IP header is ip. A
// checksum that does not apply (IPv6 header, fragments, unknown
// transports) is reported ok with an empty name.
func checkSums(pkt []byte, ip ipInfo) (sums struct{ ip, l4 sumCheck }) {
	sums.ip.ok, sums.l4.ok = true, true
	if ip.v4 {
		sums.ip = checkField("IPv4 header", pkt[:ip.hdrLen], 10, 0)
	}
	if ip.fragOff != 0 || ip.more {
		return sums
	}
	l4 := ip.payload
	switch {
	case ip.proto == protoTCP:
		sums.l4 = checkField("TCP", l4, 16, pseudoHeaderSum(ip.src, ip.dst, protoTCP, len(l4)))
	case ip.proto == protoUDP:
		if ip.v4 && len(l4) >= header.UDPMinimumSize && binary.BigEndian.Uint16(l4[6:]) == 0 {
			break // no checksum: allowed for UDP over IPv4 only
		}
		sums.l4 = checkField("UDP", l4, 6, pseudoHeaderSum(ip.src, ip.dst, protoUDP, len(l4)))
	case ip.proto == protoICMPv4 && ip.v4:
		sums.l4 = checkField("ICMPv4", l4, 2, 0)
	case ip.proto == protoICMPv6 && !ip.v4:
		sums.l4 = checkField("ICMPv6", l4, 2, pseudoHeaderSum(ip.src, ip.dst, protoICMPv6, len(l4)))
	}
	return sums
}

// checkField checks the checksum field at off in b, whose sum starts at
// initial (the pseudo-header sum, or 0).
func checkField(name string, b []byte, off int, initial uint16) sumCheck {
	c := sumCheck{name: name}
	if len(b) < off+2 {
		c.truncated = true
		return c
	}
	c.got = binary.BigEndian.Uint16(b[off:])
	c.want = fieldWant(b, off, initial)
	// Compare sums rather than fields: 0x0000 and 0xffff are the same
	// value in ones' complement, and both appear on the wire.
	c.ok = checksum.Checksum(b, initial) == 0xffff
	return c
}

// fieldWant returns the value the 16-bit checksum field at off in b should
// have.
func fieldWant(b []byte, off int, initial uint16) uint16 {
	c := append([]byte(nil), b...)
	c[off], c[off+1] = 0, 0
	return ^checksum.Checksum(c, initial)
}

// ipInfo is what parseIP finds in an IP header.
type ipInfo struct {
	v4       bool
	hdrLen   int
	proto    uint8
	src, dst netip.Addr
	ttl      uint8
	id       uint16
	fragOff  uint16 // in bytes
	more     bool   // more fragments follow
	df       bool
	total    int    // length by the header
	payload  []byte // transport header and data, cut to the header's length
}

var errNotIP = errors.New("lab: not an IPv4 or IPv6 packet")

// parseIP parses the IP header of pkt, checking its lengths.
func parseIP(pkt []byte) (ipInfo, error) {
	if len(pkt) == 0 {
		return ipInfo{}, errNotIP
	}
	switch pkt[0] >> 4 {
	case 4:
		if len(pkt) < header.IPv4MinimumSize {
			return ipInfo{}, fmt.Errorf("lab: IPv4 packet truncated (%d bytes)", len(pkt))
		}
		ip := ipInfo{
			v4:     true,
			hdrLen: int(pkt[0]&0xf) * 4,
			total:  int(binary.BigEndian.Uint16(pkt[2:])),
			id:     binary.BigEndian.Uint16(pkt[4:]),
			ttl:    pkt[8],
			proto:  pkt[9],
			src:    netip.AddrFrom4([4]byte(pkt[12:16])),
			dst:    netip.AddrFrom4([4]byte(pkt[16:20])),
		}
		ff := binary.BigEndian.Uint16(pkt[6:])
		ip.df = ff&0x4000 != 0
		ip.more = ff&0x2000 != 0
		ip.fragOff = (ff & 0x1fff) * 8
		switch {
		case ip.hdrLen < header.IPv4MinimumSize:
			return ip, fmt.Errorf("lab: IPv4 header length %d < 20", ip.hdrLen)
		case ip.total < ip.hdrLen:
			return ip, fmt.Errorf("lab: IPv4 total length %d < header length %d", ip.total, ip.hdrLen)
		case ip.total > len(pkt):
			return ip, fmt.Errorf("lab: IPv4 total length %d > packet length %d", ip.total, len(pkt))
		}
		ip.payload = pkt[ip.hdrLen:ip.total]
		return ip, nil
	case 6:
		if len(pkt) < header.IPv6MinimumSize {
			return ipInfo{}, fmt.Errorf("lab: IPv6 packet truncated (%d bytes)", len(pkt))
		}
		ip := ipInfo{
			hdrLen: header.IPv6MinimumSize,
			total:  header.IPv6MinimumSize + int(binary.BigEndian.Uint16(pkt[4:])),
			proto:  pkt[6],
			ttl:    pkt[7],
			src:    netip.AddrFrom16([16]byte(pkt[8:24])),
			dst:    netip.AddrFrom16([16]byte(pkt[24:40])),
		}
		if ip.total > len(pkt) {
			return ip, fmt.Errorf("lab: IPv6 payload length %d > %d bytes present", ip.total-ip.hdrLen, len(pkt)-ip.hdrLen)
		}
		// Extension headers: hop-by-hop, routing, destination options
		// and fragment are followed to the transport header.
		for ip.fragOff == 0 {
			var size int
			switch ip.proto {
			case 0, 43, 60:
				if ip.total < ip.hdrLen+8 {
					return ip, errors.New("lab: IPv6 extension header truncated")
				}
				size = (int(pkt[ip.hdrLen+1]) + 1) * 8
			case 44:
				if ip.total < ip.hdrLen+8 {
					return ip, errors.New("lab: IPv6 fragment header truncated")
				}
				size = 8
				ff := binary.BigEndian.Uint16(pkt[ip.hdrLen+2:])
				ip.fragOff, ip.more = ff&^7, ff&1 != 0
				ip.id = uint16(binary.BigEndian.Uint32(pkt[ip.hdrLen+4:]))
			}
			if size == 0 {
				break
			}
			if ip.total < ip.hdrLen+size {
				return ip, errors.New("lab: IPv6 extension header truncated")
			}
			ip.proto = pkt[ip.hdrLen]
			ip.hdrLen += size
		}
		ip.payload = pkt[ip.hdrLen:ip.total]
		return ip, nil
	}
	return ipInfo{}, errNotIP
}
