package lab

import (
	"sync"
	"time"
)

// ManualClock is a clock that only moves when told to. Hand it to the code
// under test (fwx's gateway takes any value with a Now method) so that
// timeouts expire exactly when a test advances the clock, never because
// the machine was slow.
//
// Create one with [NewManualClock]; the zero value reads as the zero
// time.Time and is usable. A ManualClock is safe for concurrent use.
type ManualClock struct {
	mu  sync.Mutex
	now time.Time
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

// Advance moves the clock forward by d. A negative d moves it back.
func (c *ManualClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

// Set sets the clock to t, which may be earlier than the current time.
func (c *ManualClock) Set(t time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = t
}
