package vnettun

import (
	"encoding/binary"
	"math/rand/v2"
	"testing"

	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/checksum"
	"gvisor.dev/gvisor/pkg/tcpip/header"
)

// spec describes a test packet.
type spec struct {
	v6      bool
	udp     bool
	optLen  int    // TCP option bytes (multiple of 4, <= 40)
	payload int    // L4 payload bytes
	mss     uint16 // GSO size; 0 builds a GSO_NONE packet
	flags   header.TCPFlags
}

func (s spec) l3Len() int {
	if s.v6 {
		return header.IPv6MinimumSize
	}
	return header.IPv4MinimumSize
}

func (s spec) l4HdrLen() int {
	if s.udp {
		return header.UDPMinimumSize
	}
	return header.TCPMinimumSize + s.optLen
}

func (s spec) proto() tcpip.TransportProtocolNumber {
	if s.udp {
		return header.UDPProtocolNumber
	}
	return header.TCPProtocolNumber
}

// build returns a packet as a TUN with TUN_F_CSUM delivers it: IP header
// complete, L4 checksum field holding the partial pseudo-header sum, and
// the matching virtio header. Addresses, ports, sequence numbers, options
// and payload come from rng.
func build(tb testing.TB, rng *rand.Rand, s spec) (Hdr, []byte) {
	tb.Helper()
	l3, l4h := s.l3Len(), s.l4HdrLen()
	pkt := make([]byte, l3+l4h+s.payload)
	fill(rng, pkt[l3+l4h:])
	src, dst := randAddr(rng, s.v6), randAddr(rng, s.v6)
	l4Len := len(pkt) - l3
	if s.v6 {
		header.IPv6(pkt).Encode(&header.IPv6Fields{
			PayloadLength: uint16(l4Len), TransportProtocol: s.proto(),
			HopLimit: 64, SrcAddr: src, DstAddr: dst,
		})
	} else {
		ip := header.IPv4(pkt)
		ip.Encode(&header.IPv4Fields{
			TotalLength: uint16(len(pkt)), ID: uint16(rng.Uint32()), TTL: 64,
			Flags: header.IPv4FlagDontFragment, Protocol: uint8(s.proto()),
			SrcAddr: src, DstAddr: dst,
		})
		ip.SetChecksum(^ip.CalculateChecksum())
	}
	sport, dport := uint16(rng.Uint32()), uint16(rng.Uint32())
	partial := header.PseudoHeaderChecksum(s.proto(), src, dst, uint16(l4Len))
	h := Hdr{Flags: FlagNeedsCsum, CsumStart: uint16(l3), HdrLen: uint16(l3 + l4h), GSOSize: s.mss}
	if s.udp {
		header.UDP(pkt[l3:]).Encode(&header.UDPFields{
			SrcPort: sport, DstPort: dport, Length: uint16(l4Len), Checksum: partial,
		})
		h.CsumOffset = udpChecksumOffset
		if s.mss > 0 {
			h.GSOType = GSOUDPL4
		}
	} else {
		opts := pkt[l3+header.TCPMinimumSize : l3+l4h]
		for i := range opts {
			opts[i] = header.TCPOptionNOP
		}
		if len(opts) >= 12 { // a timestamp option, as Linux sends
			opts[2], opts[3] = header.TCPOptionTS, header.TCPOptionTSLength
			fill(rng, opts[4:12])
		}
		flags := s.flags
		if flags == 0 {
			flags = header.TCPFlagAck | header.TCPFlagPsh
		}
		header.TCP(pkt[l3:]).Encode(&header.TCPFields{
			SrcPort: sport, DstPort: dport, SeqNum: rng.Uint32(), AckNum: rng.Uint32(),
			DataOffset: uint8(l4h), Flags: flags, WindowSize: 512, Checksum: partial,
		})
		h.CsumOffset = header.TCPChecksumOffset
		if s.mss > 0 {
			h.GSOType = GSOTCPv4
			if s.v6 {
				h.GSOType = GSOTCPv6
			}
		}
	}
	return h, pkt
}

func fill(rng *rand.Rand, b []byte) {
	for i := range b {
		b[i] = byte(rng.Uint32())
	}
}

func randAddr(rng *rand.Rand, v6 bool) tcpip.Address {
	if v6 {
		var a [16]byte
		fill(rng, a[:])
		return tcpip.AddrFrom16(a)
	}
	var a [4]byte
	fill(rng, a[:])
	return tcpip.AddrFrom4(a)
}

// addrs returns the source and destination addresses of an IP packet.
func addrs(pkt []byte) (src, dst tcpip.Address) {
	if pkt[0]>>4 == 6 {
		ip := header.IPv6(pkt)
		return ip.SourceAddress(), ip.DestinationAddress()
	}
	ip := header.IPv4(pkt)
	return ip.SourceAddress(), ip.DestinationAddress()
}

// refChecksum computes, with gVisor, the complete L4 checksum of pkt from
// scratch, ignoring what its checksum field holds. l4 is the offset of
// the L4 header.
func refChecksum(pkt []byte, l4 int) uint16 {
	src, dst := addrs(pkt)
	seg := append([]byte(nil), pkt[l4:]...)
	proto := tcpip.TransportProtocolNumber(header.TCPProtocolNumber)
	at := header.TCPChecksumOffset
	if ipProto(pkt) == uint8(header.UDPProtocolNumber) {
		proto, at = header.UDPProtocolNumber, udpChecksumOffset
	}
	seg[at], seg[at+1] = 0, 0
	xsum := header.PseudoHeaderChecksum(proto, src, dst, uint16(len(seg)))
	return ^checksum.Checksum(seg, xsum)
}

func ipProto(pkt []byte) uint8 {
	if pkt[0]>>4 == 6 {
		return pkt[6]
	}
	return pkt[9]
}

// sameChecksum reports whether two complete checksums are equal in one's
// complement, where 0x0000 and 0xffff are the same number.
func sameChecksum(a, b uint16) bool {
	return a == b || (a == 0 || a == 0xffff) && (b == 0 || b == 0xffff)
}

// field returns the L4 checksum field of pkt.
func field(h Hdr, pkt []byte) []byte {
	at := int(h.CsumStart + h.CsumOffset)
	return pkt[at : at+2]
}

func be16(b []byte) uint16 { return binary.BigEndian.Uint16(b) }

// udpChecksumOffset is where the UDP checksum field sits (RFC 768); gVisor
// does not export it.
const udpChecksumOffset = 6
