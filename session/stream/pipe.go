package stream

import (
	"io"
	"os"
	"sync"
	"time"

	"github.com/fwx-dev/fwx/netstack/deadline"
)

// Pipe returns the two ends of an in-memory full-duplex byte stream, used
// between two data filters: bytes written to a are read from b and bytes
// written to b are read from a. Each direction buffers at most size bytes
// (size <= 0 means [DefaultBufferSize]); a Write blocks while its direction
// is full, so the writer goes at the pace of the reader.
//
// Buffers start small and grow up to size as data waits in them; they go
// back to a pool once their direction is finished. The pipe starts no
// goroutine; deadlines use runtime timers.
func Pipe(size int) (a, b *End) {
	if size <= 0 {
		size = DefaultBufferSize
	}
	ab, ba := newHalf(size), newHalf(size)
	return &End{in: ba, out: ab}, &End{in: ab, out: ba}
}

// Interface guards: an End is a Socket, and has the deadline methods of a
// net.Conn and TCP's CloseRead.
var (
	_ Socket = (*End)(nil)
	_        = interface {
		SetDeadline(time.Time) error
		SetReadDeadline(time.Time) error
		SetWriteDeadline(time.Time) error
		CloseRead() error
	}((*End)(nil))
)

// End is one end of a [Pipe]. It implements [Socket], with TCP's
// semantics for half-close (CloseWrite, CloseRead), abort (a reset) and
// Close, and net.Conn's for deadlines.
//
// An End is safe for concurrent use. One reader and one writer may run at
// the same time, and any method may be called while they are blocked:
// Abort, Close, CloseWrite, CloseRead and the deadline setters wake them.
// Concurrent Writes are serialized, so the bytes of one Write are never
// interleaved with another's; concurrent Reads each receive a different
// part of the stream. After Close, every method returns [ErrClosed].
// The zero End is not usable: ends come in pairs from [Pipe].
//
// Each direction of the pipe (a [half]) goes through these states; "data"
// is the bytes written and not yet read:
//
//	open ──writer CloseWrite──▶ write-shut: reader gets data, then io.EOF;
//	 │                                      writer gets ErrWriteAfterCloseWrite
//	 ├───reader CloseRead─────▶ read-shut:  data dropped; writer gets ErrBrokenPipe;
//	 │                                      reader gets io.EOF
//	 └───either Abort─────────▶ reset:      data dropped; both get ErrReset
//	                                        (ErrAborted on the side that aborted)
//
// Close is CloseWrite on the outgoing direction plus CloseRead on the
// incoming one, and marks the End closed.
type End struct {
	in  *half // the direction this End reads
	out *half // the direction this End writes

	// writeMu serializes Writes: a Write that blocks part way must not let
	// another Write's bytes into the middle of its own.
	writeMu sync.Mutex

	readDeadline  deadline.Deadline
	writeDeadline deadline.Deadline
}

// half is one direction of a pipe: a bounded ring buffer with its state.
//
// Blocked calls wait on readable and writable, channels with room for one
// wake-up: a waker sends without blocking, so a wake-up sent between a
// waiter's check and its wait is kept, never lost. A reader that finds
// more to read (data, EOF or an error) than it took passes the wake-up on
// to the next reader. Writers need no such relay: End.writeMu lets one
// writer wait at a time.
type half struct {
	size     int           // the most bytes buffered at a time
	readable chan struct{} // wakes the reader: data, EOF or an error
	writable chan struct{} // wakes the writer: room or an error

	mu      sync.Mutex
	buf     *[]byte // ring buffer, nil until first written and once finished
	r, n    int     // data is n bytes from offset r, wrapping around
	peak    int     // highest n ever, for tests
	wshut   bool    // writer half-closed: reader gets io.EOF after the data
	wclosed bool    // writer End closed: its calls return ErrClosed
	rshut   bool    // reader stopped reading: data dropped, writes fail
	rclosed bool    // reader End closed: its calls return ErrClosed
	resetBy *End    // End that aborted the connection, or nil
}

func newHalf(size int) *half {
	return &half{
		size:     size,
		readable: make(chan struct{}, 1),
		writable: make(chan struct{}, 1),
	}
}

// wake sends a wake-up on c unless one is already pending.
func wake(c chan struct{}) {
	select {
	case c <- struct{}{}:
	default:
	}
}

// Read reads bytes written to the other End. It blocks until there are
// some, and returns io.EOF once the other End half-closed or closed and
// every byte written before was read. After either End aborted it returns
// [ErrReset] or [ErrAborted] (both wrap syscall.ECONNRESET), dropping
// bytes not yet read; after CloseRead it returns io.EOF, after Close
// [ErrClosed], and once the read deadline has passed
// os.ErrDeadlineExceeded.
//
// Read implements [Socket].
func (e *End) Read(p []byte) (int, error) {
	h := e.in
	for {
		if e.readDeadline.Expired() {
			return 0, os.ErrDeadlineExceeded
		}
		h.mu.Lock()
		if err := h.readErrLocked(e); err != nil {
			h.mu.Unlock()
			wake(h.readable) // for the next blocked reader
			return 0, err
		}
		if len(p) == 0 {
			h.mu.Unlock()
			return 0, nil
		}
		if h.n > 0 {
			c := h.takeLocked(p)
			more := h.n > 0 || h.wshut
			if h.n == 0 && h.wshut {
				h.releaseLocked() // nothing will be written or read again
			}
			h.mu.Unlock()
			wake(h.writable)
			if more {
				wake(h.readable)
			}
			return c, nil
		}
		if h.wshut {
			h.mu.Unlock()
			wake(h.readable)
			return 0, io.EOF
		}
		h.mu.Unlock()
		select {
		case <-h.readable:
		case <-e.readDeadline.Done():
		}
	}
}

// readErrLocked returns the error a read on h by e gets before looking at
// the data, or nil.
func (h *half) readErrLocked(e *End) error {
	switch {
	case h.rclosed:
		return ErrClosed
	case h.resetBy == e:
		return ErrAborted
	case h.resetBy != nil:
		return ErrReset
	case h.rshut:
		return io.EOF
	}
	return nil
}

// Write writes all of p toward the other End, blocking while the
// direction's buffer is full, and returns len(p) and nil once every byte
// is buffered. Otherwise it returns the bytes buffered so far and why it
// stopped: [ErrBrokenPipe] after the other End closed or stopped reading,
// [ErrWriteAfterCloseWrite] after CloseWrite (both wrap syscall.EPIPE),
// [ErrReset] or [ErrAborted] after an abort (syscall.ECONNRESET),
// [ErrClosed] after Close, os.ErrDeadlineExceeded once the write deadline
// has passed. Writing 0 bytes does nothing and returns 0, nil.
//
// Write implements [Socket].
func (e *End) Write(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	e.writeMu.Lock()
	defer e.writeMu.Unlock()
	h := e.out
	n := 0
	for {
		if e.writeDeadline.Expired() {
			return n, os.ErrDeadlineExceeded
		}
		h.mu.Lock()
		if err := h.writeErrLocked(e); err != nil {
			h.mu.Unlock()
			return n, err
		}
		if c := h.putLocked(p[n:]); c > 0 {
			n += c
			h.mu.Unlock()
			wake(h.readable)
			if n == len(p) {
				return n, nil
			}
			continue
		}
		h.mu.Unlock()
		select {
		case <-h.writable:
		case <-e.writeDeadline.Done():
		}
	}
}

// writeErrLocked returns the error a write on h by e gets, or nil.
func (h *half) writeErrLocked(e *End) error {
	switch {
	case h.wclosed:
		return ErrClosed
	case h.resetBy == e:
		return ErrAborted
	case h.resetBy != nil:
		return ErrReset
	case h.wshut:
		return ErrWriteAfterCloseWrite
	case h.rshut:
		return ErrBrokenPipe
	}
	return nil
}

// CloseWrite half-closes the End (a FIN): the other End reads io.EOF after
// the bytes already written, and may go on writing. A Write blocked on
// this End returns [ErrWriteAfterCloseWrite] with the bytes it buffered.
// Calling it again does nothing.
//
// CloseWrite implements [Socket].
func (e *End) CloseWrite() error {
	h := e.out
	h.mu.Lock()
	defer h.mu.Unlock()
	if err := h.writeErrLocked(e); err != nil && err != ErrWriteAfterCloseWrite && err != ErrBrokenPipe {
		return err
	}
	h.shutWriteLocked()
	return nil
}

// shutWriteLocked ends the writing side of h and wakes both sides.
func (h *half) shutWriteLocked() {
	h.wshut = true
	if h.n == 0 {
		h.releaseLocked()
	}
	wake(h.readable)
	wake(h.writable)
}

// CloseRead stops reading: bytes not yet read are dropped, the other End's
// writes fail with [ErrBrokenPipe], and this End's reads return io.EOF.
// Writing goes on. Calling it again does nothing.
func (e *End) CloseRead() error {
	h := e.in
	h.mu.Lock()
	defer h.mu.Unlock()
	if err := h.readErrLocked(e); err != nil && err != io.EOF {
		return err
	}
	h.shutReadLocked()
	return nil
}

// shutReadLocked ends the reading side of h and wakes both sides.
func (h *half) shutReadLocked() {
	h.rshut = true
	h.releaseLocked()
	wake(h.readable)
	wake(h.writable)
}

// Abort resets the connection (a RST): bytes not yet read, in both
// directions, are dropped; the other End's reads and writes fail with
// [ErrReset], this End's with [ErrAborted] (both wrap syscall.ECONNRESET),
// and blocked calls on either End return those errors. Aborting again, or
// after the other End aborted, does nothing. Close is still allowed and
// makes the End's methods return [ErrClosed].
//
// Abort implements [Socket].
func (e *End) Abort() error {
	for _, h := range [2]*half{e.out, e.in} {
		h.mu.Lock()
		if h == e.out && h.wclosed {
			h.mu.Unlock()
			return ErrClosed
		}
		if h.resetBy == nil {
			h.resetBy = e
			h.releaseLocked()
		}
		h.mu.Unlock()
		wake(h.readable)
		wake(h.writable)
	}
	return nil
}

// Close closes both directions: the other End reads io.EOF after the bytes
// already written and its writes fail with [ErrBrokenPipe]; calls blocked
// on this End return [ErrClosed], and so does every later call, Close
// included. Deadline timers are stopped.
//
// Close implements [Socket].
func (e *End) Close() error {
	h := e.out
	h.mu.Lock()
	if h.wclosed {
		h.mu.Unlock()
		return ErrClosed
	}
	h.wclosed = true
	h.shutWriteLocked()
	h.mu.Unlock()

	h = e.in
	h.mu.Lock()
	h.rclosed = true
	h.shutReadLocked()
	h.mu.Unlock()

	e.readDeadline.Set(time.Time{})
	e.writeDeadline.Set(time.Time{})
	return nil
}

// SetReadDeadline sets the time after which Read fails with
// os.ErrDeadlineExceeded, including a Read already blocked; the zero time
// means none. As with net.Conn, a passed deadline makes Read fail even
// when bytes are waiting.
func (e *End) SetReadDeadline(t time.Time) error {
	e.readDeadline.Set(t)
	return nil
}

// SetWriteDeadline sets the time after which Write fails with
// os.ErrDeadlineExceeded, including a Write already blocked (which returns
// the bytes it buffered); the zero time means none.
func (e *End) SetWriteDeadline(t time.Time) error {
	e.writeDeadline.Set(t)
	return nil
}

// SetDeadline sets both the read and the write deadline.
func (e *End) SetDeadline(t time.Time) error {
	e.SetReadDeadline(t)
	return e.SetWriteDeadline(t)
}

// Buffered returns the number of bytes waiting to be read from e: written
// by the other End and not read yet. It is never more than the pipe's
// size.
func (e *End) Buffered() int {
	h := e.in
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.n
}

// putLocked copies as much of p as fits into the buffer and returns how
// much it copied.
func (h *half) putLocked(p []byte) int {
	room := h.size - h.n
	if room <= 0 {
		return 0
	}
	if len(p) > room {
		p = p[:room]
	}
	h.growLocked(h.n + len(p))
	buf := *h.buf
	tail := h.r + h.n
	if tail >= len(buf) {
		tail -= len(buf)
	}
	c := copy(buf[tail:], p)
	copy(buf, p[c:]) // the rest wraps around; growLocked made room for it
	h.n += len(p)
	h.peak = max(h.peak, h.n)
	return len(p)
}

// takeLocked moves up to len(p) buffered bytes into p and returns how many.
func (h *half) takeLocked(p []byte) int {
	buf := *h.buf
	m := min(len(p), h.n)
	c := copy(p[:m], buf[h.r:])
	copy(p[c:m], buf)
	h.r += m
	if h.r >= len(buf) {
		h.r -= len(buf)
	}
	h.n -= m
	if h.n == 0 {
		h.r = 0 // keep the next writes contiguous
	}
	return m
}

// growLocked makes the buffer at least need bytes long, doubling it at
// least, but no longer than the pipe's size calls for.
func (h *half) growLocked(need int) {
	if h.buf != nil && len(*h.buf) >= need {
		return
	}
	if h.buf != nil {
		need = max(need, min(2*len(*h.buf), h.size))
	}
	nb := getBuf(need)
	if old := h.buf; old != nil {
		ob := *old
		c := copy(*nb, ob[h.r:min(h.r+h.n, len(ob))])
		copy((*nb)[c:h.n], ob)
		putBuf(old)
	}
	h.buf, h.r = nb, 0
}

// releaseLocked drops the buffered bytes and gives the buffer back.
func (h *half) releaseLocked() {
	if h.buf != nil {
		putBuf(h.buf)
		h.buf = nil
	}
	h.r, h.n = 0, 0
}
