package nat

import (
	"encoding/binary"
	"net/netip"

	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/checksum"
	"gvisor.dev/gvisor/pkg/tcpip/header"
)

// The rewrites below change a packet in its own buffer and update every
// checksum incrementally (RFC 1624), so their cost does not grow with the
// payload. Only ICMP errors, which are rare and short, are re-summed whole.
// IPv6 has no header checksum, but its addresses are in the pseudo-header
// of ICMPv6 as well as of TCP and UDP.

// SetSource rewrites the packet's source address and port (for an ICMP echo
// request, its identifier). The address must be of the packet's family.
func (p *Packet) SetSource(ap netip.AddrPort) {
	if p.Src.Addr() != ap.Addr() {
		old, addr := tcpAddr(p.Src.Addr()), tcpAddr(ap.Addr())
		if p.v6 {
			header.IPv6(p.b).SetSourceAddress(addr)
		} else {
			header.IPv4(p.b).SetSourceAddressWithChecksumUpdate(addr)
		}
		p.pseudoHeaderChanged(old, addr)
	}
	if p.Src.Port() != ap.Port() {
		p.setPort(true, ap.Port())
	}
	p.Src = ap
}

// SetDestination rewrites the packet's destination address and port (for an
// ICMP echo reply, its identifier).
func (p *Packet) SetDestination(ap netip.AddrPort) {
	if p.Dst.Addr() != ap.Addr() {
		old, addr := tcpAddr(p.Dst.Addr()), tcpAddr(ap.Addr())
		if p.v6 {
			header.IPv6(p.b).SetDestinationAddress(addr)
		} else {
			header.IPv4(p.b).SetDestinationAddressWithChecksumUpdate(addr)
		}
		p.pseudoHeaderChanged(old, addr)
	}
	if p.Dst.Port() != ap.Port() {
		p.setPort(false, ap.Port())
	}
	p.Dst = ap
}

// tcpAddr converts a for gVisor's header code: 4 or 16 bytes, no copy to
// the heap.
func tcpAddr(a netip.Addr) tcpip.Address {
	if a.Is4() {
		return tcpip.AddrFrom4(a.As4())
	}
	return tcpip.AddrFrom16(a.As16())
}

// SetPartialChecksum says the packet's TCP or UDP checksum field holds a
// partial pseudo-header sum, to be completed by whoever segments or sends
// it (a virtio NEEDS_CSUM packet from a TUN with offloads). Rewrites then
// update that sum for address changes only, with no complement: the ports
// are not in it yet, they are summed later from the transport header.
func (p *Packet) SetPartialChecksum(partial bool) { p.partial = partial }

// pseudoHeaderChanged updates a TCP, UDP or ICMPv6 checksum for an address
// change. ICMPv4 has no pseudo-header. A fragment other than the first
// holds no transport header: its checksum is the reassembled packet's, and
// the first fragment carries the update.
func (p *Packet) pseudoHeaderChanged(old, addr tcpip.Address) {
	if p.Kind == Fragment && p.frag.offset != 0 {
		return
	}
	switch p.Proto {
	case TCP:
		header.TCP(p.b[p.l4:]).UpdateChecksumPseudoHeaderAddress(old, addr, !p.partial)
	case UDP:
		header.UDP(p.b[p.l4:]).UpdateChecksumPseudoHeaderAddress(old, addr, !p.partial)
	case ICMP:
		if p.v6 {
			header.ICMPv6(p.b[p.l4:]).UpdateChecksumPseudoHeaderAddress(old, addr)
		}
	}
}

func (p *Packet) setPort(src bool, port uint16) {
	l4 := p.b[p.l4:]
	if p.partial && (p.Proto == TCP || p.Proto == UDP) {
		// The partial sum does not cover the ports.
		if src {
			binary.BigEndian.PutUint16(l4[0:], port)
		} else {
			binary.BigEndian.PutUint16(l4[2:], port)
		}
		return
	}
	switch p.Proto {
	case TCP:
		if src {
			header.TCP(l4).SetSourcePortWithChecksumUpdate(port)
		} else {
			header.TCP(l4).SetDestinationPortWithChecksumUpdate(port)
		}
	case UDP:
		if src {
			header.UDP(l4).SetSourcePortWithChecksumUpdate(port)
		} else {
			header.UDP(l4).SetDestinationPortWithChecksumUpdate(port)
		}
	case ICMP:
		// Only a query has a port-like field, its identifier, at the
		// same place in ICMP and ICMPv6.
		if p.Kind == Query {
			header.ICMPv4(l4).SetIdentWithChecksumUpdate(port)
		}
	}
}

// DecrementTTL lowers the time to live (IPv6: hop limit) by one, as a
// router must. It reports false, leaving the packet unchanged, when the TTL
// is too small for the packet to be forwarded.
func (p *Packet) DecrementTTL() bool {
	if p.v6 {
		if p.b[7] <= 1 {
			return false
		}
		p.b[7]--
		return true
	}
	ttl := p.b[8]
	if ttl <= 1 {
		return false
	}
	ip := header.IPv4(p.b)
	old := uint16(ttl)<<8 | uint16(p.b[9])
	p.b[8] = ttl - 1
	ip.SetChecksum(update16(ip.Checksum(), old, old-0x100))
	return true
}

// SetQuotedSource rewrites the source of the packet quoted by an ICMP error
// and fixes the quoted checksums and the ICMP checksum. The outer header is
// left to [Packet.SetSource] and [Packet.SetDestination].
func (p *Packet) SetQuotedSource(ap netip.AddrPort) { p.setQuoted(true, ap) }

// SetQuotedDestination is the destination counterpart of
// [Packet.SetQuotedSource].
func (p *Packet) SetQuotedDestination(ap netip.AddrPort) { p.setQuoted(false, ap) }

func (p *Packet) setQuoted(src bool, ap netip.AddrPort) {
	q := p.b[p.inner:]
	l4 := q[p.quoted.l4:]
	cur := p.quoted.Dst
	if src {
		cur = p.quoted.Src
	}
	old, addr := tcpAddr(cur.Addr()), tcpAddr(ap.Addr())
	switch {
	case p.v6 && src:
		header.IPv6(q).SetSourceAddress(addr)
	case p.v6:
		header.IPv6(q).SetDestinationAddress(addr)
	case src:
		header.IPv4(q).SetSourceAddressWithChecksumUpdate(addr)
	default:
		header.IPv4(q).SetDestinationAddressWithChecksumUpdate(addr)
	}
	if src {
		p.quoted.Src = ap
	} else {
		p.quoted.Dst = ap
	}
	// The quoted transport header is often cut short, so a checksum is
	// updated only when the quote holds it.
	switch p.quoted.Proto {
	case UDP:
		u := header.UDP(l4)
		u.UpdateChecksumPseudoHeaderAddress(old, addr, true)
		if src {
			u.SetSourcePortWithChecksumUpdate(ap.Port())
		} else {
			u.SetDestinationPortWithChecksumUpdate(ap.Port())
		}
	case TCP:
		if len(l4) >= header.TCPMinimumSize {
			t := header.TCP(l4)
			t.UpdateChecksumPseudoHeaderAddress(old, addr, true)
			if src {
				t.SetSourcePortWithChecksumUpdate(ap.Port())
			} else {
				t.SetDestinationPortWithChecksumUpdate(ap.Port())
			}
		} else if src {
			header.TCP(l4).SetSourcePort(ap.Port())
		} else {
			header.TCP(l4).SetDestinationPort(ap.Port())
		}
	case ICMP:
		ic := header.ICMPv4(l4) // the identifier and checksum sit alike in ICMPv6
		if p.v6 {
			header.ICMPv6(l4).UpdateChecksumPseudoHeaderAddress(old, addr)
		}
		if ap.Port() != 0 && ic.Ident() != ap.Port() {
			ic.SetIdentWithChecksumUpdate(ap.Port())
		}
	}
	p.fixICMPChecksum()
}

// fixICMPChecksum recomputes the checksum of the packet's ICMP or ICMPv6
// message.
func (p *Packet) fixICMPChecksum() {
	ic := header.ICMPv4(p.b[p.l4:])
	ic.SetChecksum(0)
	var sum uint16
	if p.v6 {
		sum = header.PseudoHeaderChecksum(header.ICMPv6ProtocolNumber, tcpAddr(p.Src.Addr()), tcpAddr(p.Dst.Addr()), uint16(len(ic)))
	}
	ic.SetChecksum(^checksum.Checksum(ic, sum))
}

// update16 returns checksum xsum updated for a 16-bit word of the summed data
// changing from old to new (RFC 1624, equation 3).
func update16(xsum, old, new uint16) uint16 {
	s := uint32(^xsum) + uint32(^old) + uint32(new)
	s = s&0xffff + s>>16
	s = s&0xffff + s>>16
	return ^uint16(s)
}
