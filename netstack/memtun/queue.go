package memtun

import (
	"fmt"
	"io"
	"sync"
)

// queue is a bounded FIFO of packets. Each packet is copied into a buffer
// the queue owns; a buffer whose packet was read goes to a stack of spares
// and is the next one used, so the queue allocates only when it holds more
// packets (or bigger ones) than ever before, and the buffers it has are
// as many as it ever held at once. A full queue makes pushers wait:
// nothing is ever dropped.
type queue struct {
	mu       sync.Mutex
	slots    [QueueLen][]byte // slots[i] holds a packet while i is in [head, head+n)
	spare    [QueueLen][]byte // spare[:nspare] are buffers for the next packets, last freed first
	nspare   int
	head     int // index of the oldest packet
	n        int // packets queued
	closed   bool
	nonEmpty sync.Cond // signalled when n goes up or the queue closes
	nonFull  sync.Cond // signalled when n goes down or the queue closes

	// keep is the largest buffer kept as a spare: a single superpacket
	// should not pin 64 KiB forever.
	keep int
}

func (q *queue) init(mtu int) {
	q.nonEmpty.L = &q.mu
	q.nonFull.L = &q.mu
	q.keep = max(2*mtu, 16<<10)
}

// push copies pkts[i][offset:] into the queue, in order, waiting for room
// as needed. It returns how many it queued, and errClosed if the queue is
// or becomes closed before all were. The caller has checked the packets.
func (q *queue) push(pkts [][]byte, offset int) (int, error) {
	q.mu.Lock()
	defer q.mu.Unlock()
	for i, p := range pkts {
		for q.n == QueueLen && !q.closed {
			q.nonFull.Wait()
		}
		if q.closed {
			return i, errClosed
		}
		p = p[offset:]
		var b []byte
		if q.nspare > 0 {
			q.nspare--
			b, q.spare[q.nspare] = q.spare[q.nspare], nil
		}
		if cap(b) < len(p) {
			b = make([]byte, len(p), max(len(p), 2048))
		}
		b = b[:len(p)]
		copy(b, p)
		q.slots[(q.head+q.n)%QueueLen] = b
		q.n++
		q.nonEmpty.Signal()
	}
	return len(pkts), nil
}

// pop waits until a packet is queued, then copies as many queued packets as
// fit, oldest first, into bufs[i][offset:], setting sizes[i]. See
// [Device.Read] for what happens to a packet that does not fit.
func (q *queue) pop(bufs [][]byte, sizes []int, offset int) (int, error) {
	if len(bufs) == 0 {
		return 0, nil
	}
	if len(sizes) < len(bufs) {
		return 0, errShortSizes
	}
	q.mu.Lock()
	defer q.mu.Unlock()
	for q.n == 0 && !q.closed {
		q.nonEmpty.Wait()
	}
	if q.closed {
		return 0, errClosed
	}
	n := 0
	var err error
	for n < len(bufs) && q.n > 0 {
		slot := &q.slots[q.head]
		if offset < 0 || offset > len(bufs[n]) || len(*slot) > len(bufs[n])-offset {
			if n > 0 {
				break // leave it for the next Read to report
			}
			err = fmt.Errorf("memtun: read: %d-byte packet into %d-byte buffer at offset %d: %w",
				len(*slot), len(bufs[n]), offset, io.ErrShortBuffer)
		} else {
			sizes[n] = copy(bufs[n][offset:], *slot)
			n++
		}
		q.release(slot)
		if err != nil {
			break
		}
	}
	q.nonFull.Broadcast()
	return n, err
}

// release frees the oldest slot, whose packet has been read or discarded.
// The caller holds q.mu.
func (q *queue) release(slot *[]byte) {
	if cap(*slot) <= q.keep {
		q.spare[q.nspare] = *slot
		q.nspare++
	}
	*slot = nil
	q.head = (q.head + 1) % QueueLen
	q.n--
}

// close discards what is queued and wakes every waiter; later pushes and
// pops fail with errClosed. It is idempotent.
func (q *queue) close() {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.closed = true
	for q.n > 0 {
		q.release(&q.slots[q.head])
	}
	q.nonEmpty.Broadcast()
	q.nonFull.Broadcast()
}

// len reports how many packets are queued.
func (q *queue) len() int {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.n
}

// check validates a packet about to be pushed.
func check(p []byte, offset int) error {
	switch {
	case offset < 0 || offset > len(p):
		return errOffset
	case len(p) == offset:
		return errEmpty
	case len(p)-offset > maxPacket:
		return errTooBig
	}
	return nil
}
