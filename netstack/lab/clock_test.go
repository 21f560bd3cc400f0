package lab

import (
	"sync"
	"testing"
	"time"

	"gvisor.dev/gvisor/pkg/tcpip"
)

func TestManualClock(t *testing.T) {
	start := time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)
	c := NewManualClock(start)
	if got := c.Now(); !got.Equal(start) {
		t.Fatalf("Now = %v, want %v", got, start)
	}
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for range 100 {
				c.Advance(time.Second)
				_ = c.Now()
			}
		})
	}
	wg.Wait()
	if got, want := c.Now(), start.Add(800*time.Second); !got.Equal(want) {
		t.Errorf("after 800 concurrent 1s advances Now = %v, want %v", got, want)
	}
	c.Set(start)
	if got := c.Now(); !got.Equal(start) {
		t.Errorf("after Set back, Now = %v, want %v", got, start)
	}
	c.Advance(-time.Minute)
	if got, want := c.Now(), start.Add(-time.Minute); !got.Equal(want) {
		t.Errorf("after negative Advance, Now = %v, want %v", got, want)
	}
	var zero ManualClock
	if !zero.Now().IsZero() {
		t.Errorf("zero ManualClock reads %v", zero.Now())
	}
	// The interface fwx's gateway takes.
	var _ interface{ Now() time.Time } = c
}

// TestManualClockTimers checks the tcpip.Clock side: timers fire when the
// clock moves past them, not before, once, and not after Stop.
func TestManualClockTimers(t *testing.T) {
	c := NewManualClock(time.Unix(0, 0))
	fired := make(chan string, 10)
	a := c.AfterFunc(time.Second, func() { fired <- "a" })
	b := c.AfterFunc(2*time.Second, func() { fired <- "b" })
	stopped := c.AfterFunc(time.Second, func() { fired <- "stopped" })
	if !stopped.Stop() || stopped.Stop() {
		t.Error("Stop of a pending timer = false, or a second Stop = true")
	}
	expect := func(want ...string) {
		t.Helper()
		var got []string
		for range want {
			select {
			case f := <-fired:
				got = append(got, f)
			case <-time.After(5 * time.Second):
				t.Fatalf("fired %v, want %v", got, want)
			}
		}
		select {
		case f := <-fired:
			t.Fatalf("fired %v and %s, want %v", got, f, want)
		case <-time.After(20 * time.Millisecond):
		}
	}
	c.Advance(999 * time.Millisecond)
	expect()
	c.Advance(time.Millisecond)
	expect("a")
	if a.Stop() {
		t.Error("Stop of a timer that fired = true")
	}
	a.Reset(500 * time.Millisecond) // fires again, before b
	c.Set(c.Now().Add(-time.Hour))  // back: monotonic time stays
	expect()
	if got, want := c.NowMonotonic().Sub(tcpip.MonotonicTime{}), time.Second; got != want {
		t.Errorf("NowMonotonic after moving back = %v, want %v", got, want)
	}
	c.Advance(600 * time.Millisecond) // 1.6 s of monotonic time
	expect("a")
	c.Advance(400 * time.Millisecond)
	expect("b")
	if b.Stop() {
		t.Error("Stop of a timer that fired = true")
	}
	c.AfterFunc(0, func() { fired <- "now" })
	expect("now")
}
