// Package deadline gives connections that block on channels the read and
// write deadlines of net.Conn: a deadline is a channel closed when its
// time passes, which a blocked call selects on beside its other events.
// fwx's netstack connections, the lab's sockets and the pipes between data
// filters all keep their deadlines with it.
package deadline

import (
	"sync"
	"time"
)

// Deadline is one direction's deadline of a connection (net.Conn's
// SetReadDeadline or SetWriteDeadline). A call blocks on [Deadline.Done]
// and fails with os.ErrDeadlineExceeded when it is closed.
//
// The channel is replaced only after it was closed, so a call blocked on
// it sees every later move of the deadline (extended, cleared) without
// being woken to fetch a new channel. Setting a deadline in the future
// starts a runtime timer (time.AfterFunc); there is no goroutine.
//
// The zero value has no deadline and is ready to use. A Deadline is safe
// for concurrent use.
type Deadline struct {
	mu    sync.Mutex
	timer *time.Timer   // pending timer that closes ch, or nil
	ch    chan struct{} // closed once the deadline has passed; nil until used
}

// Set moves the deadline to t; the zero t removes it. A t in the past
// expires it at once, waking blocked calls.
func (d *Deadline) Set(t time.Time) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.timer != nil && !d.timer.Stop() {
		<-d.ch // the timer fired: wait until its func has closed ch
	}
	d.timer = nil
	if d.ch == nil || isClosed(d.ch) {
		if t.IsZero() && d.ch == nil {
			return
		}
		d.ch = make(chan struct{})
	}
	if t.IsZero() {
		return
	}
	dur := time.Until(t)
	if dur <= 0 {
		close(d.ch)
		return
	}
	ch := d.ch
	d.timer = time.AfterFunc(dur, func() { close(ch) })
}

// Done returns a channel that is closed when the deadline passes.
func (d *Deadline) Done() <-chan struct{} {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.ch == nil {
		d.ch = make(chan struct{})
	}
	return d.ch
}

// Expired reports whether the deadline has passed.
func (d *Deadline) Expired() bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	return isClosed(d.ch)
}

// Stop releases the timer, if any, as Set(time.Time{}) does: for a
// connection that is closing.
func (d *Deadline) Stop() { d.Set(time.Time{}) }

// isClosed reports whether c is closed (false for nil).
func isClosed(c <-chan struct{}) bool {
	select {
	case <-c:
		return true
	default:
		return false
	}
}
