package stream

import (
	"context"
	"fmt"
	"io"
	"sync"
)

// Relay copies bytes both ways between a and b until both directions are
// done, then closes both and returns the bytes copied each way. It is the
// pass-through data filter, and what [Chain] runs when there are no stages.
//
// Each direction copies through its own buffer of bufSize bytes (0 means
// [DefaultBufferSize]) taken from a pool. The two directions end
// separately:
//
//   - half-close: when a read returns io.EOF, Relay half-closes the other
//     socket (CloseWrite) and the opposite direction goes on;
//   - abort: when a read fails otherwise, or a write or CloseWrite fails,
//     Relay aborts both sockets, so each peer sees a reset, and finishes;
//     it returns that first error, with its direction ("a→b" or "b→a");
//   - cancel: when ctx is done, Relay aborts both sockets and returns
//     ctx.Err().
//
// It returns nil when both directions ended with io.EOF. a and b must allow
// Abort while a Read or Write is blocked (see [Socket]). Relay starts one
// goroutine and joins it before returning.
func Relay(ctx context.Context, a, b Socket, bufSize int) (aToB, bToA int64, err error) {
	if bufSize <= 0 {
		bufSize = DefaultBufferSize
	}
	r := &relay{a: a, b: b}
	stop := context.AfterFunc(ctx, r.abort)
	var wg sync.WaitGroup
	wg.Go(func() { bToA = r.copy(a, b, bufSize, "b→a") })
	aToB = r.copy(b, a, bufSize, "a→b")
	wg.Wait()
	canceled := !stop()
	a.Close()
	b.Close()
	if canceled {
		return aToB, bToA, ctx.Err()
	}
	return aToB, bToA, r.firstErr()
}

// relay is the state shared by the two directions of a Relay.
type relay struct {
	a, b Socket

	mu  sync.Mutex
	err error // the first failure
}

// copy copies src to dst until src ends, then half-closes dst. On any
// other failure it aborts both sockets. It returns the bytes written.
func (r *relay) copy(dst, src Socket, size int, dir string) int64 {
	bp := getBuf(size)
	defer putBuf(bp)
	buf := (*bp)[:size]
	var total int64
	for {
		n, rerr := src.Read(buf)
		if n > 0 {
			w, werr := dst.Write(buf[:n])
			total += int64(w)
			if werr != nil {
				r.fail(fmt.Errorf("stream: relay %s: write: %w", dir, werr))
				return total
			}
		}
		switch {
		case rerr == io.EOF:
			if err := dst.CloseWrite(); err != nil {
				r.fail(fmt.Errorf("stream: relay %s: close write: %w", dir, err))
			}
			return total
		case rerr != nil:
			r.fail(fmt.Errorf("stream: relay %s: read: %w", dir, rerr))
			return total
		}
	}
}

// fail records err if it is the first failure, and aborts both sockets:
// the failing one too, so that its peer learns of the reset, and the other
// direction's blocked calls return.
func (r *relay) fail(err error) {
	r.mu.Lock()
	if r.err == nil {
		r.err = err
	}
	r.mu.Unlock()
	r.abort()
}

func (r *relay) abort() {
	r.a.Abort()
	r.b.Abort()
}

func (r *relay) firstErr() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.err
}
