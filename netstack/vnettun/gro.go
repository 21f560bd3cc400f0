package vnettun

import "encoding/binary"

// GRO on write: complete IPv4 TCP segments (from a device without
// offloads, a VPN's peers) that continue one another are merged into one
// superpacket before they are written, so the kernel takes one write
// instead of forty and the receiving stack one segment, as the kernel's
// own GRO (net/ipv4/tcp_offload.c tcp_gro_receive) would have done. The
// rules are GRO's: same flow, addresses' TOS, TTL and DF, same TCP header
// but sequence, window and checksum, the sequence number continuing the
// previous segment, the same acknowledgement, only ACK (and PSH on the
// last) set, every segment the size of the first but the last.

// groFlows bounds the flows GRO keeps open within one batch; a batch
// with more interleaved flows merges less, never wrongly.
const groFlows = 16

// groItem is a superpacket being built: a packet of the batch that
// absorbs the segments following it. segs is 0 once it is closed.
type groItem struct {
	idx     int // its place in the batch
	flow    [12]byte
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
// drops it. GRO allocates nothing.
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

// tcpSegment returns the IPv4 and TCP header lengths and the payload size
// of a packet GRO may merge: IPv4 without options or fragments, TCP with
// only ACK (and PSH), some payload, a valid checksum.
func tcpSegment(pkt []byte) (thl, payload int, ok bool) {
	if len(pkt) < 40 || pkt[0] != 0x45 || pkt[9] != protoTCP ||
		int(binary.BigEndian.Uint16(pkt[2:])) != len(pkt) || binary.BigEndian.Uint16(pkt[6:])&0x3fff != 0 {
		return 0, 0, false
	}
	tcp := pkt[20:]
	thl = int(tcp[12]>>4) * 4
	payload = len(tcp) - thl
	if thl < 20 || payload <= 0 || tcp[13]&^(tcpPSH|tcpACK) != 0 || tcp[13]&tcpACK == 0 {
		return 0, 0, false
	}
	if sum(tcp, pseudoSum(pkt[12:16], pkt[16:20], protoTCP, len(tcp))) != 0xffff {
		return 0, 0, false
	}
	return thl, payload, true
}

const tcpACK = 0x10

// startItem makes b the head of a superpacket, if it is a segment that
// more can follow (not the last of a burst: no PSH).
func startItem(b []byte, offset, idx int) (groItem, bool) {
	pkt := b[offset:]
	_, payload, ok := tcpSegment(pkt)
	if !ok || pkt[33]&tcpPSH != 0 {
		return groItem{}, false
	}
	it := groItem{idx: idx, mss: payload, segs: 1}
	copy(it.flow[:], pkt[12:24]) // addresses and ports
	it.nextSeq = binary.BigEndian.Uint32(pkt[24:]) + uint32(payload)
	return it, true
}

// merge appends b to the open item of its flow if it continues it, and
// reports whether it did. A segment of an open flow that does not
// continue it closes the item.
func merge(pkts [][]byte, open []groItem, b []byte, offset int) bool {
	pkt := b[offset:]
	if len(pkt) < 40 {
		return false
	}
	for i := range open {
		it := &open[i]
		if it.segs == 0 || [12]byte(pkt[12:24]) != it.flow {
			continue
		}
		head := pkts[it.idx][offset:]
		thl, payload, ok := tcpSegment(pkt)
		switch {
		case !ok || thl != int(head[32]>>4)*4, payload > it.mss,
			binary.BigEndian.Uint32(pkt[24:]) != it.nextSeq,
			pkt[1] != head[1], pkt[8] != head[8], pkt[6]&0x40 != head[6]&0x40, // TOS, TTL, DF
			[4]byte(pkt[28:32]) != [4]byte(head[28:32]),       // ack
			string(pkt[40:20+thl]) != string(head[40:20+thl]), // options
			offset+len(head)+payload > cap(pkts[it.idx]) || len(head)+payload > MaxPacket:
			finish(pkts, it, offset) // later segments of the flow start anew
			return false
		}
		pkts[it.idx] = append(pkts[it.idx], pkt[20+thl:]...)
		it.nextSeq += uint32(payload)
		it.segs++
		if psh := pkt[33] & tcpPSH; psh != 0 || payload < it.mss {
			pkts[it.idx][offset+33] |= psh
			finish(pkts, it, offset)
		}
		return true
	}
	return false
}

// finish closes an item; one of several segments becomes a superpacket:
// lengths, IP checksum, partial TCP checksum, virtio header. A single
// segment stays as it came.
func finish(pkts [][]byte, it *groItem, offset int) {
	segs := it.segs
	it.segs = 0
	if segs < 2 {
		return
	}
	b := pkts[it.idx]
	pkt := b[offset:]
	binary.BigEndian.PutUint16(pkt[2:], uint16(len(pkt)))
	pkt[10], pkt[11] = 0, 0
	binary.BigEndian.PutUint16(pkt[10:], ^sum(pkt[:20], 0))
	thl := int(pkt[32]>>4) * 4
	binary.BigEndian.PutUint16(pkt[36:], pseudoSum(pkt[12:16], pkt[16:20], protoTCP, len(pkt)-20))
	Hdr{
		Flags:      FlagNeedsCsum,
		GSOType:    GSOTCPv4,
		HdrLen:     uint16(20 + thl),
		GSOSize:    uint16(it.mss),
		CsumStart:  20,
		CsumOffset: 16,
	}.Encode(b[offset-VirtioHdrLen:])
}
