package netstack

import (
	"sync"
	"time"
)

// deadline is one direction's deadline of a connection (net.Conn's
// SetReadDeadline or SetWriteDeadline): a channel that is closed when the
// deadline passes. Setting a new deadline replaces the channel if the old
// one already fired, so an operation that started earlier keeps waiting
// on the channel it took. The zero value has no deadline and is ready to
// use; it is safe for concurrent use.
type deadline struct {
	mu    sync.Mutex
	ch    chan struct{} // nil until first needed
	timer *time.Timer
}

// done returns the channel that is closed when the deadline passes.
func (d *deadline) done() <-chan struct{} {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.ch == nil {
		d.ch = make(chan struct{})
	}
	return d.ch
}

// set sets the deadline to t; the zero t means none.
func (d *deadline) set(t time.Time) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.timer != nil && !d.timer.Stop() {
		// The timer fired (or is firing): its channel is closed or about
		// to be; later operations need a fresh one.
		d.ch = nil
	}
	d.timer = nil
	if d.ch != nil {
		select {
		case <-d.ch:
			d.ch = nil // closed by an earlier deadline in the past
		default:
		}
	}
	if d.ch == nil {
		d.ch = make(chan struct{})
	}
	if t.IsZero() {
		return
	}
	ch := d.ch
	dur := time.Until(t)
	if dur <= 0 {
		close(ch)
		return
	}
	d.timer = time.AfterFunc(dur, func() { close(ch) })
}

// stop releases the timer, if any.
func (d *deadline) stop() {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.timer != nil {
		d.timer.Stop()
	}
}
