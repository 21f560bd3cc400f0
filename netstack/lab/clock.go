package lab

import (
	"slices"
	"sync"
	"time"

	"gvisor.dev/gvisor/pkg/tcpip"
)

var _ tcpip.Clock = (*ManualClock)(nil)

// ManualClock is a clock that only moves when told to. Hand it to the code
// under test (fwx.Config.Clock, a session.Clock, takes it) so that
// timeouts expire exactly when a test advances the clock, never because
// the machine was slow. Given as [Options.Clock], it is the hosts' clock
// too: it is a gVisor tcpip.Clock whose timers fire when Advance or Set
// moves it past them.
//
// Create one with [NewManualClock]; the zero value reads as the zero
// time.Time and is usable. A ManualClock is safe for concurrent use.
type ManualClock struct {
	mu     sync.Mutex
	now    time.Time
	mono   time.Duration // how far the clock has moved forward in all
	timers []*manualTimer
}

// NewManualClock returns a ManualClock reading start.
func NewManualClock(start time.Time) *ManualClock {
	return &ManualClock{now: start}
}

// Now returns the clock's current time.
func (c *ManualClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

// NowMonotonic implements tcpip.Clock: the time the clock has moved
// forward since it was made. Moving it back does not move this back.
func (c *ManualClock) NowMonotonic() tcpip.MonotonicTime {
	c.mu.Lock()
	defer c.mu.Unlock()
	return tcpip.MonotonicTime{}.Add(c.mono)
}

// Advance moves the clock forward by d and fires the timers that are then
// due. A negative d moves it back (see NowMonotonic).
func (c *ManualClock) Advance(d time.Duration) {
	c.mu.Lock()
	c.move(c.now.Add(d))
}

// Set sets the clock to t, which may be earlier than the current time, and
// fires the timers that are then due.
func (c *ManualClock) Set(t time.Time) {
	c.mu.Lock()
	c.move(t)
}

// move sets the time to t and fires the due timers, each on a goroutine of
// its own as time.AfterFunc does, earliest first. It is called with c.mu
// held and releases it.
func (c *ManualClock) move(t time.Time) {
	if d := t.Sub(c.now); d > 0 {
		c.mono += d
	}
	c.now = t
	var due []*manualTimer
	c.timers = slices.DeleteFunc(c.timers, func(mt *manualTimer) bool {
		if mt.when > c.mono {
			return false
		}
		due = append(due, mt)
		return true
	})
	slices.SortStableFunc(due, func(a, b *manualTimer) int { return int(a.when - b.when) })
	c.mu.Unlock()
	for _, mt := range due {
		go mt.f()
	}
}

// AfterFunc implements tcpip.Clock: f runs on its own goroutine once the
// clock has moved d forward from now.
func (c *ManualClock) AfterFunc(d time.Duration, f func()) tcpip.Timer {
	mt := &manualTimer{c: c, f: f}
	mt.Reset(d)
	return mt
}

// manualTimer is a timer of a ManualClock; it is pending while it is in
// the clock's list.
type manualTimer struct {
	c    *ManualClock
	f    func()
	when time.Duration // on the clock's monotonic scale
}

// Stop implements tcpip.Timer. It reports whether the timer was pending.
func (mt *manualTimer) Stop() bool {
	c := mt.c
	c.mu.Lock()
	defer c.mu.Unlock()
	n := len(c.timers)
	c.timers = slices.DeleteFunc(c.timers, func(t *manualTimer) bool { return t == mt })
	return len(c.timers) < n
}

// Reset implements tcpip.Timer: the timer fires d after the clock's
// current time, whether or not it was pending or has fired; at once, as
// time.AfterFunc would, if d is not positive.
func (mt *manualTimer) Reset(d time.Duration) {
	c := mt.c
	c.mu.Lock()
	defer c.mu.Unlock()
	c.timers = slices.DeleteFunc(c.timers, func(t *manualTimer) bool { return t == mt })
	if d <= 0 {
		go mt.f()
		return
	}
	mt.when = c.mono + d
	c.timers = append(c.timers, mt)
}
