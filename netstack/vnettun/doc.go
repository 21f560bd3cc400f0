// Package vnettun is a Linux TUN device that passes GSO superpackets
// through whole, so that fwx rewrites a 64 KiB superpacket's headers once
// instead of splitting it into MTU packets and coalescing them again.
//
// A [Device] is opened with IFF_VNET_HDR and the best offloads the kernel
// accepts (TUN_F_CSUM|TSO4|TSO6|TSO_ECN, plus USO4|USO6 on Linux >= 6.2;
// see [Device.Offloads]). Its Read returns each packet or superpacket
// exactly as the kernel handed it over, with its 10-byte virtio_net_hdr
// in the caller's headroom; its Write takes the same layout and lets the
// receiving kernel segment. Between two Devices, a forwarder passes the
// buffers from one Read to the other's Write, rewriting in place:
//
//	n, err := in.Read(bufs, sizes, offset) // offset >= VirtioHdrLen
//	for i := range n {
//		pkt := bufs[i][offset : offset+sizes[i]]
//		h := vnettun.ParseHdr(bufs[i][offset-vnettun.VirtioHdrLen:])
//		rewrite(h, pkt) // NAT, see below
//		out[i] = bufs[i][:offset+sizes[i]]
//	}
//	_, err = ext.Write(out[:n], offset)
//
// Packets going anywhere else (gVisor, an in-memory device, a host socket)
// must be made ordinary first: [Finish] completes a partial checksum,
// [Split] cuts a superpacket into MTU packets with complete checksums, and
// [Join] makes a TCP superpacket one large segment for a local stack that
// trusts the checksums it is given ([Coalesce] also completes its
// checksum). The other way, [GRO] merges the TCP segments of a device
// without offloads into superpackets before they are written, and
// [CoalesceUDP] merges a flow's UDP datagrams into a USO superpacket.
// Packets the caller builds itself go to Write with a zero header
// ([ClearHdr]). A superpacket's segments are sized for the link it was
// sent on (GSOSize), so give both Devices the same MTU.
//
// # Partial checksums and NAT
//
// With TUN_F_CSUM most TCP and UDP packets, and every superpacket, arrive
// with [FlagNeedsCsum] (the kernel's CHECKSUM_PARTIAL). The L4 checksum
// field of such a packet does not hold a checksum. It holds the partial,
// NON-complemented, folded one's-complement sum of the pseudo-header
// (addresses, protocol, L4 length) only; it covers neither the ports nor
// the rest of the L4 header nor the payload. Whoever completes it (the
// far kernel, per segment, or [Finish]) sums everything from CsumStart to
// the end, the field included, and stores the complement at
// CsumStart+CsumOffset.
//
// A NAT rewriting such a packet in place must therefore:
//
//   - update the L4 field for an ADDRESS change with plain one's-complement
//     addition of (new - old) over the addresses, without complementing:
//     [UpdatePartialAddr], [UpdatePartialAddr6]. The usual RFC 1624
//     update (~(~HC + ~m + m')) is wrong here.
//   - NOT apply a PORT change to the field at all: the ports are summed
//     later, from CsumStart, with whatever value they have then.
//   - update the IPv4 header checksum as usual (it is always complete).
//
// A packet without FlagNeedsCsum carries a complete checksum and takes
// the ordinary RFC 1624 updates for both addresses and ports.
//
// The same holds per segment for a superpacket: the kernel recomputes the
// length part of the pseudo-header sum for each segment, so the rewrite
// never touches lengths.
package vnettun
