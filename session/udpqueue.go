package session

import (
	"sync"
	"sync/atomic"
)

// Receive buffers of user-mode UDP connections: how many payload bytes may
// wait for the connection's datagram filters. A datagram is taken while
// fewer bytes wait than the buffer holds, as a Linux socket takes one while
// its receive queue is under SO_RCVBUF; the others are dropped, as a UDP
// socket's are.
const (
	// rcvbufDefault is a connection's receive buffer.
	rcvbufDefault = 32 << 10
	// rcvbufIncreased is the buffer of a grant made with
	// IncreaseReceiveBuffer: 64 KiB, as ISA's FWX_INCREASE_RECEIVE_BUFFER.
	rcvbufIncreased = 64 << 10
)

// queued is a datagram waiting for its connection's goroutine: a copy of
// its payload in a pooled buffer.
type queued struct {
	buf        *[]byte
	n          int
	fromInside bool
	ttl        uint8
}

func (d *queued) payload() []byte { return (*d.buf)[:d.n] }

// Payload buffers, in two sizes: most datagrams are small, and a large
// buffer for each would make a full queue cost 64 KiB per datagram.
const smallBuf = 2048

var (
	smallBufs = sync.Pool{New: func() any { b := make([]byte, smallBuf); return &b }}
	largeBufs = sync.Pool{New: func() any { b := make([]byte, 65535); return &b }}
)

func getBuf(n int) *[]byte {
	if n <= smallBuf {
		return smallBufs.Get().(*[]byte)
	}
	return largeBufs.Get().(*[]byte)
}

func putBuf(b *[]byte) {
	if len(*b) == smallBuf {
		smallBufs.Put(b)
	} else {
		largeBufs.Put(b)
	}
}

// datagramQueue holds a connection's datagrams between the forward loop,
// which must never wait, and the connection's goroutine. It is bounded by
// the receive buffer; its zero value is not usable (see newDatagramQueue).
type datagramQueue struct {
	ready chan struct{} // holds a token when items may be waiting
	limit int
	drops atomic.Uint64

	mu struct {
		sync.Mutex
		items  []queued
		bytes  int
		closed bool
	}
}

func newDatagramQueue(limit int) *datagramQueue {
	return &datagramQueue{ready: make(chan struct{}, 1), limit: limit}
}

// push queues a copy of payload, or drops it when the buffer is full or
// the queue closed. It never blocks.
func (q *datagramQueue) push(payload []byte, fromInside bool, ttl uint8) {
	q.mu.Lock()
	if q.mu.closed || q.mu.bytes >= q.limit {
		full := !q.mu.closed
		q.mu.Unlock()
		if full {
			q.drops.Add(1)
		}
		return
	}
	b := getBuf(len(payload))
	n := copy(*b, payload)
	q.mu.items = append(q.mu.items, queued{buf: b, n: n, fromInside: fromInside, ttl: ttl})
	q.mu.bytes += n
	q.mu.Unlock()
	select {
	case q.ready <- struct{}{}:
	default:
	}
}

// pop waits for datagrams and moves them into into[:0], which it returns;
// it returns nil once the queue is closed. The caller puts each buffer
// back with putBuf.
func (q *datagramQueue) pop(into []queued) []queued {
	for {
		q.mu.Lock()
		if q.mu.closed {
			q.mu.Unlock()
			return nil
		}
		if len(q.mu.items) > 0 {
			into = append(into[:0], q.mu.items...)
			clear(q.mu.items)
			q.mu.items = q.mu.items[:0]
			q.mu.bytes = 0
			q.mu.Unlock()
			return into
		}
		q.mu.Unlock()
		<-q.ready
	}
}

// close stops the queue: waiting datagrams are dropped, pop returns nil.
// It is idempotent.
func (q *datagramQueue) close() {
	q.mu.Lock()
	if !q.mu.closed {
		q.mu.closed = true
		for _, d := range q.mu.items {
			putBuf(d.buf)
		}
		q.mu.items = nil
	}
	q.mu.Unlock()
	select {
	case q.ready <- struct{}{}:
	default:
	}
}
