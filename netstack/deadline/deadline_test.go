package deadline_test

import (
	"testing"
	"testing/synctest"
	"time"

	"github.com/fwx-dev/fwx/netstack/deadline"
)

// TestDeadline runs a call blocked on Done against moves of the deadline,
// on fake time: it must be woken exactly when the deadline in force
// passes, never by a move, and not at all once the deadline is cleared.
func TestDeadline(t *testing.T) {
	for _, tt := range []struct {
		name string
		// moves sets the deadline at times after the call blocked.
		moves func(d *deadline.Deadline)
		// woken is when the call must wake; 0 means never (within 10 s).
		woken time.Duration
	}{
		{"passes", func(d *deadline.Deadline) { d.Set(time.Now().Add(time.Second)) }, time.Second},
		{"in the past", func(d *deadline.Deadline) { d.Set(time.Now().Add(-time.Second)) }, time.Nanosecond},
		{"extended", func(d *deadline.Deadline) {
			d.Set(time.Now().Add(time.Second))
			time.Sleep(500 * time.Millisecond)
			d.Set(time.Now().Add(2 * time.Second))
		}, 2500 * time.Millisecond},
		{"brought forward", func(d *deadline.Deadline) {
			d.Set(time.Now().Add(5 * time.Second))
			d.Set(time.Now().Add(time.Second))
		}, time.Second},
		{"cleared", func(d *deadline.Deadline) {
			d.Set(time.Now().Add(time.Second))
			d.Set(time.Time{})
		}, 0},
		{"stopped", func(d *deadline.Deadline) {
			d.Set(time.Now().Add(time.Second))
			d.Stop()
		}, 0},
	} {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				var d deadline.Deadline
				start := time.Now()
				woke := make(chan time.Duration, 1)
				go func() {
					select {
					case <-d.Done():
						woke <- max(time.Since(start), time.Nanosecond)
					case <-time.After(10 * time.Second):
						woke <- 0
					}
				}()
				synctest.Wait()
				tt.moves(&d)
				if got := <-woke; got != tt.woken {
					t.Errorf("woken after %v, want %v (0: never)", got, tt.woken)
				}
				if got, want := d.Expired(), tt.woken != 0; got != want {
					t.Errorf("Expired = %v, want %v", got, want)
				}
			})
		})
	}
}

// TestDeadlineRenewed: once passed, a deadline set again gives a fresh
// channel, so later calls block again until the new time.
func TestDeadlineRenewed(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var d deadline.Deadline
		d.Set(time.Now())
		old := d.Done()
		<-old
		d.Set(time.Now().Add(time.Second))
		if d.Expired() {
			t.Fatal("expired right after being set into the future")
		}
		start := time.Now()
		<-d.Done()
		if got := time.Since(start); got != time.Second {
			t.Errorf("renewed deadline passed after %v, want 1s", got)
		}
	})
}
