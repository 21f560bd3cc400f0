package nat

import (
	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/checksum"
	"gvisor.dev/gvisor/pkg/tcpip/header"
)

// ChecksumValid reports whether p's transport checksum is right: what a
// receiving stack would check, for a path (fwx's netstacks) that trusts the
// checksums it is handed. It is true for a protocol no stack checks, and
// without a look when the sending kernel vouched for the checksum
// ([Packet.SetPartialChecksum], [Packet.SetChecksumVerified]).
func (p *Packet) ChecksumValid() bool {
	if p.partial || p.verified {
		return true
	}
	l4 := p.L4()
	var proto tcpip.TransportProtocolNumber
	switch {
	case p.Proto == TCP:
		proto = header.TCPProtocolNumber
	case p.Proto == UDP:
		if !p.v6 && len(l4) >= header.UDPMinimumSize && header.UDP(l4).Checksum() == 0 {
			return true // IPv4 UDP without a checksum
		}
		proto = header.UDPProtocolNumber
	case p.Proto == ICMP && p.v6:
		proto = header.ICMPv6ProtocolNumber
	case p.Proto == ICMP:
		return checksum.Checksum(l4, 0) == 0xffff // no pseudo-header
	default:
		return true
	}
	src, dst := tcpAddr(p.Src.Addr()), tcpAddr(p.Dst.Addr())
	return checksum.Checksum(l4, header.PseudoHeaderChecksum(proto, src, dst, uint16(len(l4)))) == 0xffff
}

// SetChecksumVerified says the kernel that handed fwx the packet verified
// its transport checksum already (virtio DATA_VALID), so ChecksumValid need
// not.
func (p *Packet) SetChecksumVerified(verified bool) { p.verified = verified }
