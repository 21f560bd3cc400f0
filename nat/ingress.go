package nat

import (
	"net/netip"

	"gvisor.dev/gvisor/pkg/tcpip/header"
)

// Ingress hygiene: what no honest host sends is dropped before it is
// looked up, with a counted reason. BCP 38 (RFC 2827) for sources: from the
// inside only the inside networks' addresses, from the outside none of
// them and none of fwx's own; RFC 6890 for the special-purpose addresses
// that are never a source or are not forwarded as a destination; RFC 7126
// for source-route options; and the flag sets conntrack calls invalid.

// special reports whether a is in a block that is never a unicast host on
// the networks fwx joins: for IPv4 0.0.0.0/8 ("this network"), 127.0.0.0/8
// (loopback), 224.0.0.0/4 (multicast) and 240.0.0.0/4 (reserved, and the
// limited broadcast 255.255.255.255); for IPv6 the unspecified and
// loopback addresses, multicast (ff00::/8), link-local unicast (fe80::/10:
// a router never forwards it, RFC 4291 2.5.6) and the IPv4-mapped and
// IPv4-compatible blocks (::ffff:0:0/96, ::/96), which never appear on the
// wire (RFC 4291 2.5.5).
func special(a netip.Addr) bool {
	if a.Is6() {
		b := a.As16()
		return a.IsMulticast() || a.IsLinkLocalUnicast() || a.Is4In6() ||
			[12]byte(b[:12]) == [12]byte{} // ::/96, with :: and ::1
	}
	b := a.As4()
	return b[0] == 0 || b[0] == 127 || b[0] >= 224
}

// ingress holds the address sets the checks need, fixed at New.
type ingress struct {
	// inside lists the inside networks; empty means any unicast source
	// may come from the inside.
	inside []netip.Prefix
	// broadcasts are the inside networks' directed broadcast addresses.
	broadcasts []netip.Addr
	// forward lists the special destinations that may be forwarded.
	forward []netip.Prefix
}

func newIngress(inside, special []netip.Prefix) *ingress {
	g := &ingress{forward: special}
	for _, p := range inside {
		p = p.Masked()
		g.inside = append(g.inside, p)
		if p.Addr().Is4() && p.Bits() < 31 {
			b := p.Addr().As4()
			host := ^uint32(0) >> p.Bits()
			b[0] |= byte(host >> 24)
			b[1] |= byte(host >> 16)
			b[2] |= byte(host >> 8)
			b[3] |= byte(host)
			g.broadcasts = append(g.broadcasts, netip.AddrFrom4(b))
		}
	}
	return g
}

func contains(ps []netip.Prefix, a netip.Addr) bool {
	for _, p := range ps {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// broadcast reports whether a is a broadcast address: the limited one or
// an inside network's.
func (g *ingress) broadcast(a netip.Addr) bool {
	if a == broadcast {
		return true
	}
	for _, b := range g.broadcasts {
		if a == b {
			return true
		}
	}
	return false
}

// fromInside checks a packet read from the inside and returns why it must
// be dropped, or false.
func (t *Table) fromInside(p *Packet) (DropReason, bool) {
	src, dst := p.Src.Addr(), p.Dst.Addr()
	g := t.ingress.Load()
	switch {
	case p.sourceRouted:
		return DropSourceRoute, true
	case special(src) || g.broadcast(src):
		return DropMartianSource, true
	case t.ownsOutside(src) || t.IsInternal(src):
		// A spoofed packet, or a routing loop (in host mode, fwx's own
		// sockets routed back into its TUN): passing it on would feed
		// the loop.
		return DropOwnAddress, true
	case len(g.inside) > 0 && !contains(g.inside, src):
		return DropSpoofedSource, true
	case (special(dst) || g.broadcast(dst)) && !contains(g.forward, dst):
		return DropMartianDestination, true
	case p.Kind == Transport && p.Proto == TCP && !validTCPFlags(p.TCPFlags):
		return DropBadTCPFlags, true
	}
	return 0, false
}

// fromOutside checks a packet read from the outside and returns why it
// must be dropped, or false.
func (t *Table) fromOutside(p *Packet) (DropReason, bool) {
	src := p.Src.Addr()
	switch {
	case p.sourceRouted:
		return DropSourceRoute, true
	case special(src):
		return DropMartianSource, true
	case t.ownsOutside(src) || t.IsInternal(src):
		return DropOwnAddress, true
	case contains(t.ingress.Load().inside, src):
		return DropSpoofedSource, true
	case p.Kind == Transport && p.Proto == TCP && !validTCPFlags(p.TCPFlags):
		return DropBadTCPFlags, true
	}
	return 0, false
}

// validFlags marks the combinations of SYN, ACK, FIN, RST and URG that a
// TCP connection sends; PSH, ECE and CWR may come with any of them. It is
// Linux conntrack's list: SYN+FIN, SYN+RST, FIN without ACK and a segment
// with no flag at all are scans or forgeries.
var validFlags = func() (v [64]bool) {
	const (
		syn, ack, fin = header.TCPFlagSyn, header.TCPFlagAck, header.TCPFlagFin
		rst, urg      = header.TCPFlagRst, header.TCPFlagUrg
	)
	for _, f := range []header.TCPFlags{syn, syn | urg, syn | ack, rst, rst | ack, fin | ack, fin | ack | urg, ack, ack | urg} {
		v[f] = true
	}
	return v
}()

func validTCPFlags(f header.TCPFlags) bool {
	const relevant = header.TCPFlagSyn | header.TCPFlagAck | header.TCPFlagFin | header.TCPFlagRst | header.TCPFlagUrg
	return validFlags[f&relevant]
}

// sourceRouted reports whether IP options opts hold a source route (LSRR
// or SSRR, RFC 791), and ok false when they are malformed.
func sourceRouted(opts []byte) (routed, ok bool) {
	const (
		end, nop   = 0, 1
		lsrr, ssrr = 0x83, 0x89
	)
	for i := 0; i < len(opts); {
		switch opts[i] {
		case end:
			return false, true
		case nop:
			i++
			continue
		case lsrr, ssrr:
			return true, true
		}
		if i+1 >= len(opts) || opts[i+1] < 2 || i+int(opts[i+1]) > len(opts) {
			return false, false
		}
		i += int(opts[i+1])
	}
	return false, true
}
