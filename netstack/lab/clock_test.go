package lab

import (
	"sync"
	"testing"
	"time"
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
