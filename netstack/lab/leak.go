package lab

import (
	"context"
	"runtime"
	"testing"
	"time"
)

// leakWait bounds how long CheckGoroutines waits for goroutines that were
// told to stop: generous, since under the race detector on a loaded
// machine closing a lab's stacks can take seconds.
const leakWait = 15 * time.Second

// CheckGoroutines fails tb if, at the end of the test, more goroutines run
// than when it was called. It registers a cleanup; cleanups run last
// registered first, so call it before anything whose cleanup stops
// goroutines (the lab's hosts, fwx): the count is then taken after those
// ran. Goroutines take a moment to exit after being told to, so the
// check retries for a while before it fails, with every goroutine's stack.
func CheckGoroutines(tb testing.TB) {
	tb.Helper()
	before := runtime.NumGoroutine()
	tb.Cleanup(func() {
		deadline := time.Now().Add(leakWait)
		for {
			after := runtime.NumGoroutine()
			if after <= before {
				return
			}
			if time.Now().After(deadline) {
				buf := make([]byte, 1<<20)
				buf = buf[:runtime.Stack(buf, true)]
				tb.Errorf("goroutine leak: %d goroutines before, %d after:\n%s", before, after, buf)
				return
			}
			time.Sleep(5 * time.Millisecond)
		}
	})
}

// Context returns a context that ends after d or when the test ends,
// whichever comes first: what a test's dials, reads and pings wait on.
func Context(tb testing.TB, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	tb.Cleanup(cancel)
	return ctx
}
