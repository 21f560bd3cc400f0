package netstack

// Output with GSO (Options.GSO): the link tells gVisor that the host
// segments, so gVisor's TCP sends superpackets of up to gsoMaxSize bytes,
// each with a header template and a partial checksum, and the link puts a
// virtio-net header in front of every packet it outputs. The kernel behind
// the TUN (a vnettun.Device opened with IFF_VNET_HDR) cuts each superpacket
// into MSS-sized segments and completes their checksums, so that one
// write() carries up to 45 segments (at MTU 1500) instead of one.
//
// gVisor's side (stack/registration.go GSO, transport/tcp endpoint.go
// initHostGSO, connect.go buildTCPHdr): a TCP endpoint whose route has
// HostGSOSupported marks EVERY packet it sends with GSOOptions{Type:
// GSOTCPv4 or GSOTCPv6, NeedsCsum: true, CsumOffset: 16, MSS}, and leaves in
// the TCP checksum field only the folded, non-complemented pseudo-header
// sum, which is what virtio's NEEDS_CSUM expects. Only a packet whose
// payload exceeds the MSS is a superpacket; the others (ACKs, short
// writes) still need the kernel to finish their checksum. Packets sent
// without an endpoint (a RST to a closed port) and every UDP and ICMP
// packet carry GSOOptions.Type == GSONone and complete checksums: the link
// does not claim TX checksum offload, so gVisor computes them, and their
// header is all zero.

import (
	"gvisor.dev/gvisor/pkg/tcpip/stack"

	"github.com/fwx-dev/fwx/netstack/vnettun"
)

// gsoMaxSize is the largest superpacket the link accepts from gVisor: an
// IPv4 packet's maximum, and the size of the superpackets a TUN hands
// over (vnettun.MaxPacket). gVisor's TCP keeps 160 bytes below it for
// headers (tcp sender.sendData), so IPv4 total lengths never overflow.
const gsoMaxSize = vnettun.MaxPacket

var _ stack.GSOEndpoint = (*link)(nil)

// GSOMaxSize implements stack.GSOEndpoint: the largest packet gVisor may
// hand the link, 0 without GSO.
func (l *link) GSOMaxSize() uint32 {
	if !l.gso {
		return 0
	}
	return gsoMaxSize
}

// SupportedGSO implements stack.GSOEndpoint: with GSO, the host (the
// kernel behind the TUN) segments.
func (l *link) SupportedGSO() stack.SupportedGSO {
	if !l.gso {
		return stack.GSONotSupported
	}
	return stack.HostGSOSupported
}

// virtioHdr returns the virtio-net header that tells the kernel how to
// finish pkt, a packet gVisor handed the link. It reports false if pkt
// cannot be described to the kernel: GSO options the link never asked for
// (gVisor's own segmentation, which only a GVisorGSOSupported link gets),
// or a superpacket without a partial checksum (the kernel only segments
// CHECKSUM_PARTIAL packets). gVisor sends neither to a host-GSO link.
//
// For a packet marked GSOTCPv4/GSOTCPv6 the header has NEEDS_CSUM with
// csum_start at the end of the network header and gVisor's csum_offset;
// if the payload exceeds the MSS it is also a superpacket: gso_type, and
// gso_size = MSS. hdr_len is the network plus transport header length,
// options included, taken from the packet's header views rather than
// GSOOptions.L3HdrLen, which gVisor fixes at the minimum IP header size.
// Any other packet gets the zero header: no segmentation, complete
// checksum.
func virtioHdr(pkt *stack.PacketBuffer) (vnettun.Hdr, bool) {
	gso := &pkt.GSOOptions
	var t vnettun.GSOType
	switch gso.Type {
	case stack.GSONone:
		return vnettun.Hdr{}, true
	case stack.GSOTCPv4:
		t = vnettun.GSOTCPv4
	case stack.GSOTCPv6:
		t = vnettun.GSOTCPv6
	default:
		return vnettun.Hdr{}, false
	}
	l3 := len(pkt.NetworkHeader().Slice())
	h := vnettun.Hdr{HdrLen: uint16(l3 + len(pkt.TransportHeader().Slice()))}
	if gso.NeedsCsum {
		h.Flags = vnettun.FlagNeedsCsum
		h.CsumStart = uint16(l3)
		h.CsumOffset = gso.CsumOffset
	}
	if gso.MSS > 0 && pkt.Data().Size() > int(gso.MSS) {
		if !gso.NeedsCsum {
			return vnettun.Hdr{}, false
		}
		h.GSOType = t
		h.GSOSize = gso.MSS
	}
	return h, true
}
