package stream

import (
	"sync"
	"time"
)

// deadline is a read or write deadline of an End: a channel that is closed
// when the deadline passes, so that blocked calls can select on it. Its
// zero value is no deadline. Setting a deadline in the future starts a
// runtime timer (time.AfterFunc); the pipe has no goroutine of its own.
//
// The channel is made on first use and replaced only after it was closed,
// so a call blocked on it sees every later move of the deadline without
// being woken to fetch a new channel.
type deadline struct {
	mu    sync.Mutex
	timer *time.Timer   // pending timer that closes done, or nil
	done  chan struct{} // closed once the deadline has passed; nil until used
}

// set moves the deadline to t; the zero t removes it. A t in the past
// expires it at once, waking blocked calls.
func (d *deadline) set(t time.Time) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.timer != nil && !d.timer.Stop() {
		<-d.done // the timer fired: wait until its func has closed done
	}
	d.timer = nil
	if d.done == nil || isClosed(d.done) {
		if t.IsZero() && d.done == nil {
			return
		}
		d.done = make(chan struct{})
	}
	if t.IsZero() {
		return
	}
	dur := time.Until(t)
	if dur <= 0 {
		close(d.done)
		return
	}
	done := d.done
	d.timer = time.AfterFunc(dur, func() { close(done) })
}

// wait returns a channel that is closed when the deadline passes.
func (d *deadline) wait() <-chan struct{} {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.done == nil {
		d.done = make(chan struct{})
	}
	return d.done
}

// expired reports whether the deadline has passed.
func (d *deadline) expired() bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	return isClosed(d.done)
}

// isClosed reports whether c is closed (false for nil).
func isClosed(c <-chan struct{}) bool {
	select {
	case <-c:
		return true
	default:
		return false
	}
}
