package gateway

import (
	"net/netip"

	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/checksum"
	"gvisor.dev/gvisor/pkg/tcpip/header"

	"github.com/fwx-dev/fwx/nat"
	"github.com/fwx-dev/fwx/netstack/vnettun"
)

// The netstacks trust the checksums of what fwx delivers to them (their
// link claims RX checksum offload, netstack.Stack.Deliver): a packet the
// local kernel sent into a vnettun device with a partial checksum
// (NEEDS_CSUM) or a checksum it already verified (DATA_VALID) is taken as
// it is, and a TCP superpacket becomes one segment without a pass over
// its 64 KiB to compute a checksum the stack would then verify with
// another. Any other packet bound for a netstack is checked here, once.
// The IPv4 header checksum was checked by nat.Parse.

// trusted reports whether the kernel vouches for a packet's transport
// checksum: it left it partial, to be completed by hardware, or verified it.
func trusted(h vnettun.Hdr) bool {
	return h.NeedsCsum() || h.Flags&vnettun.FlagDataValid != 0
}

// checksumValid reports whether p's transport checksum is right; true for
// a protocol fwx does not check (no netstack reads it).
func checksumValid(p *nat.Packet) bool {
	l4 := p.L4()
	var proto tcpip.TransportProtocolNumber
	switch {
	case p.Proto == nat.TCP:
		proto = header.TCPProtocolNumber
	case p.Proto == nat.UDP:
		if !p.Is6() && len(l4) >= header.UDPMinimumSize && header.UDP(l4).Checksum() == 0 {
			return true // IPv4 UDP without a checksum
		}
		proto = header.UDPProtocolNumber
	case p.Proto == nat.ICMP && p.Is6():
		proto = header.ICMPv6ProtocolNumber
	case p.Proto == nat.ICMP:
		return checksum.Checksum(l4, 0) == 0xffff // no pseudo-header
	default:
		return true
	}
	src, dst := tcpipAddr(p.Src.Addr()), tcpipAddr(p.Dst.Addr())
	return checksum.Checksum(l4, header.PseudoHeaderChecksum(proto, src, dst, uint16(len(l4)))) == 0xffff
}

// tcpipAddr converts a, without allocating.
func tcpipAddr(a netip.Addr) tcpip.Address {
	if a.Is4() {
		return tcpip.AddrFrom4(a.As4())
	}
	return tcpip.AddrFrom16(a.As16())
}
