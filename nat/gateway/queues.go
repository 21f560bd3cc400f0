package gateway

import (
	"encoding/binary"
	"errors"

	"golang.zx2c4.com/wireguard/tun"
)

// Queues: a device may come as several queues (the file descriptors of a
// multi-queue TUN, vnettun.CreateQueues), each read by a forward loop of
// its own. The kernel hands all packets of a flow to one queue and moves
// the flow to the queue its packets are written to; so the forward loop of
// queue i writes what it forwards to queue i of the other device (and
// what it answers to its own), and a flow's two directions settle on one
// index. Packets fwx makes elsewhere (the netstacks, user-mode UDP) go to
// the queue their flow's hash picks, the same both ways.

// queues are the queues of one device; a device without queues is one.
type queues []tun.Device

// pair returns the queue of qs that the loop of queue i of the other
// device writes to: the same index, or, when the two devices have
// different numbers of queues (host mode), one of them.
func (qs queues) pair(i int) tun.Device { return qs[i%len(qs)] }

// of returns the queue of pkt's flow.
func (qs queues) of(pkt []byte) tun.Device { return qs[qs.index(pkt)] }

// index returns the index of the queue of pkt's flow.
func (qs queues) index(pkt []byte) int {
	if len(qs) == 1 {
		return 0
	}
	return int(uint64(flowHash(pkt)) * uint64(len(qs)) >> 32)
}

// close closes every queue.
func (qs queues) close() error {
	var errs []error
	for _, q := range qs {
		errs = append(errs, q.Close())
	}
	return errors.Join(errs...)
}

// flowHash hashes an IP packet's addresses, protocol and, for TCP and UDP,
// ports so that both directions of a flow hash alike (the two ends are
// combined with xor). A fragment after the first has no ports: a
// fragmented datagram's packets may hash apart, which costs nothing but
// the choice of a queue.
func flowHash(pkt []byte) uint32 {
	var h uint32
	var proto byte
	var l4 []byte
	switch {
	case len(pkt) >= 20 && pkt[0]>>4 == 4:
		proto = pkt[9]
		h = binary.BigEndian.Uint32(pkt[12:16]) ^ binary.BigEndian.Uint32(pkt[16:20])
		ihl := int(pkt[0]&0xf) * 4
		if binary.BigEndian.Uint16(pkt[6:8])&0x1fff == 0 && len(pkt) >= ihl+4 {
			l4 = pkt[ihl:]
		}
	case len(pkt) >= 40 && pkt[0]>>4 == 6:
		proto = pkt[6]
		for i := 8; i < 40; i += 4 {
			h ^= binary.BigEndian.Uint32(pkt[i : i+4])
		}
		if len(pkt) >= 44 {
			l4 = pkt[40:]
		}
	default:
		return 0
	}
	if proto == 6 || proto == 17 {
		if l4 != nil {
			h ^= uint32(binary.BigEndian.Uint16(l4[0:2]) ^ binary.BigEndian.Uint16(l4[2:4]))
		}
	}
	h ^= uint32(proto) << 24
	// Finish with a multiplicative mix (Fibonacci hashing): the caller
	// takes the high bits.
	return h * 0x9e3779b1
}

// queueWriter writes batches of packets of many flows to the queues of a
// device, each packet to its flow's queue (queues.of). It keeps a
// sub-batch per queue; one writer is used by one goroutine.
type queueWriter struct {
	qs   queues
	sub  [][][]byte
	subV [][][][]byte // writeVectors' sub-batches
}

func newQueueWriter(qs queues) *queueWriter {
	return &queueWriter{qs: qs, sub: make([][][]byte, len(qs)), subV: make([][][][]byte, len(qs))}
}

// vectorWriter is a device that writes packets held in pieces
// (vnettun.Device.WriteVectors).
type vectorWriter interface {
	WriteVectors(pkts [][][]byte, offset int) (int, error)
}

// vectors reports whether every queue of w's device writes packets in
// pieces (writeVectors).
func (w *queueWriter) vectors() bool {
	for _, q := range w.qs {
		if _, ok := q.(vectorWriter); !ok {
			return false
		}
	}
	return true
}

// writeVectors is write for packets in pieces: packet i is
// pkts[i][0][offset:] followed by pkts[i][1:]. Every queue must be a
// vectorWriter (vectors).
func (w *queueWriter) writeVectors(pkts [][][]byte, offset int) error {
	if len(w.qs) == 1 {
		_, err := w.qs[0].(vectorWriter).WriteVectors(pkts, offset)
		return err
	}
	for _, v := range pkts {
		start := v[0][offset:]
		if len(start) == 0 && len(v) > 1 {
			start = v[1] // the headers, where the flow's hash looks
		}
		i := w.qs.index(start)
		w.subV[i] = append(w.subV[i], v)
	}
	var errs []error
	for i, sub := range w.subV {
		if len(sub) > 0 {
			if _, err := w.qs[i].(vectorWriter).WriteVectors(sub, offset); err != nil {
				errs = append(errs, err)
			}
			clear(sub)
			w.subV[i] = sub[:0]
		}
	}
	return errors.Join(errs...)
}

// write writes pkts, each with the headroom offset before the packet.
func (w *queueWriter) write(pkts [][]byte, offset int) error {
	if len(w.qs) == 1 {
		_, err := w.qs[0].Write(pkts, offset)
		return err
	}
	for _, p := range pkts {
		i := w.qs.index(p[offset:])
		w.sub[i] = append(w.sub[i], p)
	}
	var errs []error
	for i, sub := range w.sub {
		if len(sub) > 0 {
			if _, err := w.qs[i].Write(sub, offset); err != nil {
				errs = append(errs, err)
			}
			clear(sub)
			w.sub[i] = sub[:0]
		}
	}
	return errors.Join(errs...)
}
