package vnettun

import "encoding/binary"

// GRO on write: complete IPv4 and IPv6 TCP segments (from a device without
// offloads, a VPN's peers) that continue one another are merged into one
// superpacket before they are written, so the kernel takes one write
// instead of forty and the receiving stack one segment, as the kernel's
// own GRO (net/ipv4/tcp_offload.c tcp_gro_receive) would have done. The
// rules are GRO's: same flow, the same IPv4 TOS, TTL and DF (IPv6: traffic
// class, flow label and hop limit), same TCP header but sequence, window
// and checksum, the sequence number continuing the previous segment, the
// same acknowledgement, only ACK (and PSH on the last) set, every segment
// the size of the first but the last.

// groFlows bounds the flows GRO keeps open within one batch; a batch
// with more interleaved flows merges less, never wrongly.
const groFlows = 16

// groItem is a superpacket being built: a packet of the batch that
// absorbs the segments following it. segs is 0 once it is closed.
type groItem struct {
	idx     int      // its place in the batch
	flow    [36]byte // addresses and ports
	ihl     int      // its IP header's length: 20 (IPv4) or 40 (IPv6)
	nextSeq uint32
	mss     int // the first segment's payload size
	segs    int
}

// GRO merges, in place, the TCP segments of pkts that continue one
// another and returns pkts shortened to the packets left, in their order.
// Each pkts[i] is a buffer whose packet starts at offset, with a zero
// virtio header before it (a complete packet, checksums included); a
// packet that absorbs others grows within its buffer's capacity (give
// each offset+[MaxPacket]) and gets the virtio header of a TCP
// superpacket with a partial checksum, for [Device.Write]. A segment
// whose checksum is wrong is never merged, so the kernel still sees and
// drops it. IPv4 and IPv6 segments merge alike. GRO allocates nothing.
func GRO(pkts [][]byte, offset int) [][]byte {
	var open [groFlows]groItem
	nopen, out := 0, 0
	for _, b := range pkts {
		if merge(pkts, open[:nopen], b, offset) {
			continue
		}
		pkts[out] = b
		if it, ok := startItem(b, offset, out); ok {
			slot := nopen
			for i := range open[:nopen] {
				if open[i].segs == 0 {
					slot = i
					break
				}
			}
			if slot == groFlows { // all open: the oldest is done
				finish(pkts, &open[0], offset)
				copy(open[:], open[1:])
				slot = groFlows - 1
			}
			open[slot] = it
			nopen = max(nopen, slot+1)
		}
		out++
	}
	for i := range open[:nopen] {
		finish(pkts, &open[i], offset)
	}
	return pkts[:out]
}

// tcpSegment returns the IP and TCP header lengths and the payload size of
// a packet GRO may merge: IPv4 without options or fragments, or IPv6
// without extension headers, carrying TCP with only ACK (and PSH), some
// payload, a valid checksum.
func tcpSegment(pkt []byte) (ihl, thl, payload int, ok bool) {
	var src, dst []byte
	switch {
	case len(pkt) >= 40 && pkt[0] == 0x45 && pkt[9] == protoTCP &&
		int(binary.BigEndian.Uint16(pkt[2:])) == len(pkt) && binary.BigEndian.Uint16(pkt[6:])&0x3fff == 0:
		ihl, src, dst = 20, pkt[12:16], pkt[16:20]
	case len(pkt) >= 60 && pkt[0]>>4 == 6 && pkt[6] == protoTCP &&
		int(binary.BigEndian.Uint16(pkt[4:])) == len(pkt)-40:
		ihl, src, dst = 40, pkt[8:24], pkt[24:40]
	default:
		return 0, 0, 0, false
	}
	tcp := pkt[ihl:]
	thl = int(tcp[12]>>4) * 4
	payload = len(tcp) - thl
	if thl < 20 || payload <= 0 || tcp[13]&^(tcpPSH|tcpACK) != 0 || tcp[13]&tcpACK == 0 {
		return 0, 0, 0, false
	}
	if sum(tcp, pseudoSum(src, dst, protoTCP, len(tcp))) != 0xffff {
		return 0, 0, 0, false
	}
	return ihl, thl, payload, true
}

const tcpACK = 0x10

// ipHeaderLen is the length of pkt's IP header as the items have it: 40
// for IPv6, else 20 (a packet with IPv4 options matches no item and starts
// none).
func ipHeaderLen(pkt []byte) int {
	if len(pkt) > 0 && pkt[0]>>4 == 6 {
		return 40
	}
	return 20
}

// flowOf copies a segment's addresses and ports into a flow key.
func flowOf(pkt []byte, ihl int) (f [36]byte) {
	// (ihl is 20 or 40: the items hold packets without IP options.)
	if ihl == 20 {
		copy(f[:], pkt[12:24])
	} else {
		copy(f[:], pkt[8:44])
	}
	return f
}

// startItem makes b the head of a superpacket, if it is a segment that
// more can follow (not the last of a burst: no PSH).
func startItem(b []byte, offset, idx int) (groItem, bool) {
	pkt := b[offset:]
	ihl, _, payload, ok := tcpSegment(pkt)
	if !ok || pkt[ihl+13]&tcpPSH != 0 {
		return groItem{}, false
	}
	it := groItem{idx: idx, flow: flowOf(pkt, ihl), ihl: ihl, mss: payload, segs: 1}
	it.nextSeq = binary.BigEndian.Uint32(pkt[ihl+4:]) + uint32(payload)
	return it, true
}

// sameIP reports whether segment pkt's IP header matches the head's in
// what GRO keeps: IPv4 TOS, TTL and DF; IPv6 traffic class, flow label
// and hop limit.
func sameIP(pkt, head []byte, ihl int) bool {
	if ihl == 20 {
		return pkt[1] == head[1] && pkt[8] == head[8] && pkt[6]&0x40 == head[6]&0x40
	}
	return [4]byte(pkt[:4]) == [4]byte(head[:4]) && pkt[7] == head[7]
}

// merge appends b to the open item of its flow if it continues it, and
// reports whether it did. A segment of an open flow that does not
// continue it closes the item.
func merge(pkts [][]byte, open []groItem, b []byte, offset int) bool {
	pkt := b[offset:]
	ihl := ipHeaderLen(pkt)
	if len(pkt) < ihl+20 {
		return false
	}
	flow := flowOf(pkt, ihl) // once, not once per open item
	for i := range open {
		it := &open[i]
		if it.segs == 0 || it.ihl != ihl || it.flow != flow {
			continue
		}
		head := pkts[it.idx][offset:]
		sihl, thl, payload, ok := tcpSegment(pkt)
		switch {
		case !ok || sihl != ihl || thl != int(head[ihl+12]>>4)*4, payload > it.mss,
			binary.BigEndian.Uint32(pkt[ihl+4:]) != it.nextSeq,
			!sameIP(pkt, head, ihl),
			[4]byte(pkt[ihl+8:ihl+12]) != [4]byte(head[ihl+8:ihl+12]),   // ack
			string(pkt[ihl+20:ihl+thl]) != string(head[ihl+20:ihl+thl]), // options
			offset+len(head)+payload > cap(pkts[it.idx]) || len(head)+payload > MaxPacket:
			finish(pkts, it, offset) // later segments of the flow start anew
			return false
		}
		pkts[it.idx] = append(pkts[it.idx], pkt[ihl+thl:]...)
		it.nextSeq += uint32(payload)
		it.segs++
		if psh := pkt[ihl+13] & tcpPSH; psh != 0 || payload < it.mss {
			pkts[it.idx][offset+ihl+13] |= psh
			finish(pkts, it, offset)
		}
		return true
	}
	return false
}

// finish closes an item; one of several segments becomes a superpacket:
// lengths, IPv4 checksum, partial TCP checksum, virtio header. A single
// segment stays as it came.
func finish(pkts [][]byte, it *groItem, offset int) {
	segs := it.segs
	it.segs = 0
	if segs < 2 {
		return
	}
	b := pkts[it.idx]
	pkt := b[offset:]
	ihl := it.ihl
	thl := int(pkt[ihl+12]>>4) * 4
	gso, src, dst := GSOTCPv4, pkt[12:16], pkt[16:20]
	if ihl == 40 {
		gso, src, dst = GSOTCPv6, pkt[8:24], pkt[24:40]
		binary.BigEndian.PutUint16(pkt[4:], uint16(len(pkt)-40))
	} else {
		binary.BigEndian.PutUint16(pkt[2:], uint16(len(pkt)))
		pkt[10], pkt[11] = 0, 0
		binary.BigEndian.PutUint16(pkt[10:], ^sum(pkt[:20], 0))
	}
	binary.BigEndian.PutUint16(pkt[ihl+16:], pseudoSum(src, dst, protoTCP, len(pkt)-ihl))
	Hdr{
		Flags:      FlagNeedsCsum,
		GSOType:    gso,
		HdrLen:     uint16(ihl + thl),
		GSOSize:    uint16(it.mss),
		CsumStart:  uint16(ihl),
		CsumOffset: 16,
	}.Encode(b[offset-VirtioHdrLen:])
}
