package session

import (
	"time"

	"gvisor.dev/gvisor/pkg/tcpip"
)

// Clock tells the time; pinhole deadlines run on it. One that also runs
// timers, as a gVisor tcpip.Clock does (the lab's ManualClock is one),
// runs the filters' timers too ([Session.AfterFunc]); for any other, they
// run on the system's timers.
type Clock interface{ Now() time.Time }

// timerClock is a Clock that runs timers: a tcpip.Clock's AfterFunc.
type timerClock interface {
	AfterFunc(d time.Duration, f func()) tcpip.Timer
}

type systemClock struct{}

func (systemClock) Now() time.Time { return time.Now() }

// Now returns the time on fwx's clock: the time pinhole deadlines, flow
// timers and the firewall log run on. Filters read the time here, so that
// what they time (an idle transfer, an unanswered call) agrees with what
// fwx times, also on a test's manual clock.
func (s *Session) Now() time.Time { return s.mgr.cfg.Clock.Now() }

// AfterFunc runs f on a goroutine of its own once d has passed on fwx's
// clock (see [Clock]), unless the session has ended by then: a filter's
// timers live no longer than its session, and the session's end waits for
// a timer's f that is running. f must not end the session. stop cancels
// the timer and reports whether it did so before f ran.
func (s *Session) AfterFunc(d time.Duration, f func()) (stop func() bool) {
	run := func() { s.spawn(f) }
	if c, ok := s.mgr.cfg.Clock.(timerClock); ok {
		return c.AfterFunc(d, run).Stop
	}
	return time.AfterFunc(d, run).Stop
}
