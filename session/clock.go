package session

import (
	"time"

	"gvisor.dev/gvisor/pkg/tcpip"
)

// Clock tells fwx the time: flow timers, pinhole deadlines, the firewall
// log and the filters' clock ([Session.Now]) run on it, so a test can jump
// past a timeout by advancing a manual clock. It is the one clock type of
// fwx (the root package's fwx.Clock is this type). One that also runs
// timers, as a gVisor tcpip.Clock does (the lab's ManualClock is one),
// runs the filters' timers too ([Session.AfterFunc]); for any other, they
// run on the system's timers. fwx's own netstacks keep gVisor's real
// clock: their TCP timers (retransmission, zero-window probes) must fire
// without a test moving the time.
type Clock interface{ Now() time.Time }

// SystemClock is the system's clock, used where no Clock is given.
var SystemClock Clock = systemClock{}

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
