package vnettun

import "encoding/binary"

// UDP coalescing on write: datagrams of one flow that come in a train
// (iperf3, QUIC, RTP, a tunnel's packets), read one by one from a Device,
// are merged into one USO superpacket (GSO_UDP_L4) before they are
// written to another Device, which takes it with one write() and whose
// kernel cuts it into the same datagrams again (the receiving socket gets
// them one by one, or whole with UDP_GRO). The rules are those of the
// kernel's UDP GRO (net/ipv4/udp_offload.c udp_gro_receive_segment): the
// same flow, IPv4 TOS, TTL and DF (IPv6: traffic class, flow label, hop
// limit), every datagram the size of the first but the last, which may be
// shorter and ends the superpacket.
//
// Only datagrams with a partial checksum (FlagNeedsCsum, no GSO) merge:
// those a local socket sent, whose checksum the kernel computes anyway.
// A datagram with a complete checksum could be wrong; merging it would
// hide that from the receiver.

// udpMaxSegs bounds the datagrams of one superpacket, well below the
// kernel's limits (UDP_MAX_SEGMENTS).
const udpMaxSegs = 64

// udpItem is a superpacket being built: a datagram of the batch that
// absorbs the ones following it. segs is 0 once it is closed.
type udpItem struct {
	idx  int      // its place in the batch
	flow [36]byte // addresses and ports
	ihl  int
	size int // the first datagram's payload size
	segs int
}

// CoalesceUDP merges, in place, the UDP datagrams of pkts that may form
// one superpacket with the one of their flow before them, and returns
// pkts shortened to the packets left, in their order within each flow.
// Each pkts[i] is a buffer whose packet starts at offset, with its virtio
// header before it, as [Device.Read] left it and a NAT rewrote it; a
// packet that absorbs others grows within its buffer's capacity (give
// each offset+[MaxPacket]) and gets the virtio header of a UDP
// superpacket with a partial checksum. Use it only for a Device whose
// [Device.Offloads] has OffloadUSO4 and OffloadUSO6. CoalesceUDP
// allocates nothing.
func CoalesceUDP(pkts [][]byte, offset int) [][]byte {
	var open [groFlows]udpItem
	nopen, out := 0, 0
	for _, b := range pkts {
		if mergeUDP(pkts, open[:nopen], b, offset) {
			continue
		}
		pkts[out] = b
		if ihl, payload, ok := udpDatagram(b, offset); ok {
			slot := nopen
			for i := range open[:nopen] {
				if open[i].segs == 0 {
					slot = i
					break
				}
			}
			if slot == groFlows { // all open: the oldest is done
				finishUDP(pkts, &open[0], offset)
				copy(open[:], open[1:])
				slot = groFlows - 1
			}
			open[slot] = udpItem{idx: out, flow: flowOf(b[offset:], ihl), ihl: ihl, size: payload, segs: 1}
			nopen = max(nopen, slot+1)
		}
		out++
	}
	for i := range open[:nopen] {
		finishUDP(pkts, &open[i], offset)
	}
	return pkts[:out]
}

// udpDatagram returns the IP header length and payload size of a packet
// that may merge: a UDP datagram with a partial checksum and no GSO,
// IPv4 without options or fragments or IPv6 without extension headers,
// with a payload.
func udpDatagram(b []byte, offset int) (ihl, payload int, ok bool) {
	pkt := b[offset:]
	h := ParseHdr(b[offset-VirtioHdrLen:])
	switch {
	case len(pkt) >= 28 && pkt[0] == 0x45 && pkt[9] == protoUDP &&
		int(binary.BigEndian.Uint16(pkt[2:])) == len(pkt) && binary.BigEndian.Uint16(pkt[6:])&0x3fff == 0:
		ihl = 20
	case len(pkt) >= 48 && pkt[0]>>4 == 6 && pkt[6] == protoUDP && int(binary.BigEndian.Uint16(pkt[4:])) == len(pkt)-40:
		ihl = 40
	default:
		return 0, 0, false
	}
	if h.Flags != FlagNeedsCsum || h.GSOType != GSONone || int(h.CsumStart) != ihl || h.CsumOffset != 6 ||
		int(binary.BigEndian.Uint16(pkt[ihl+4:])) != len(pkt)-ihl || len(pkt) == ihl+8 {
		return 0, 0, false
	}
	return ihl, len(pkt) - ihl - 8, true
}

// mergeUDP appends b to the open item of its flow if it may follow it, and
// reports whether it did. A datagram of an open flow that may not closes
// the item.
func mergeUDP(pkts [][]byte, open []udpItem, b []byte, offset int) bool {
	pkt := b[offset:]
	ihl := ipHeaderLen(pkt)
	if len(pkt) < ihl+8 {
		return false
	}
	flow := flowOf(pkt, ihl) // once, not once per open item
	for i := range open {
		it := &open[i]
		if it.segs == 0 || it.ihl != ihl || it.flow != flow {
			continue
		}
		head := pkts[it.idx][offset:]
		ihl, payload, ok := udpDatagram(b, offset)
		switch {
		case !ok || ihl != it.ihl || payload > it.size || !sameIP(pkt, head, ihl),
			offset+len(head)+payload > cap(pkts[it.idx]) || len(head)+payload > MaxPacket:
			finishUDP(pkts, it, offset) // later datagrams of the flow start anew
			return false
		}
		pkts[it.idx] = append(pkts[it.idx], pkt[ihl+8:]...)
		it.segs++
		if payload < it.size || it.segs == udpMaxSegs {
			finishUDP(pkts, it, offset)
		}
		return true
	}
	return false
}

// finishUDP closes an item; one of several datagrams becomes a
// superpacket: lengths, IPv4 checksum, partial UDP checksum, virtio
// header. A single datagram stays as it came.
func finishUDP(pkts [][]byte, it *udpItem, offset int) {
	segs := it.segs
	it.segs = 0
	if segs < 2 {
		return
	}
	b := pkts[it.idx]
	pkt := b[offset:]
	ihl := it.ihl
	src, dst := pkt[12:16], pkt[16:20]
	if ihl == 40 {
		src, dst = pkt[8:24], pkt[24:40]
		binary.BigEndian.PutUint16(pkt[4:], uint16(len(pkt)-40))
	} else {
		binary.BigEndian.PutUint16(pkt[2:], uint16(len(pkt)))
		pkt[10], pkt[11] = 0, 0
		binary.BigEndian.PutUint16(pkt[10:], ^sum(pkt[:20], 0))
	}
	binary.BigEndian.PutUint16(pkt[ihl+4:], uint16(len(pkt)-ihl))
	binary.BigEndian.PutUint16(pkt[ihl+6:], pseudoSum(src, dst, protoUDP, len(pkt)-ihl))
	Hdr{
		Flags:      FlagNeedsCsum,
		GSOType:    GSOUDPL4,
		HdrLen:     uint16(ihl + 8),
		GSOSize:    uint16(it.size),
		CsumStart:  uint16(ihl),
		CsumOffset: 6,
	}.Encode(b[offset-VirtioHdrLen:])
}
