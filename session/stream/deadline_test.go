package stream

import (
	"net"
	"os"
	"testing"
	"testing/synctest"
	"time"
)

// TestPipeDeadlines checks read and write deadlines, on fake time: a
// deadline wakes a blocked call at the right time, can be moved while a
// call is blocked, and fails calls at once once passed.
func TestPipeDeadlines(t *testing.T) {
	tests := []struct {
		name string
		// run sets deadlines and makes one call on a (b is its peer); it
		// returns the result and how long the call took.
		run      func(a, b *End) (result, time.Duration)
		want     result
		duration time.Duration
	}{
		{"read deadline wakes a blocked Read", func(a, b *End) (result, time.Duration) {
			a.SetReadDeadline(time.Now().Add(time.Second))
			return timed(func() (int, error) { return a.Read(make([]byte, 10)) })
		}, result{0, os.ErrDeadlineExceeded}, time.Second},
		{"passed deadline fails even with bytes waiting", func(a, b *End) (result, time.Duration) {
			b.Write([]byte("x"))
			a.SetReadDeadline(time.Now().Add(-time.Second))
			return timed(func() (int, error) { return a.Read(make([]byte, 10)) })
		}, result{0, os.ErrDeadlineExceeded}, 0},
		{"cleared deadline", func(a, b *End) (result, time.Duration) {
			b.Write([]byte("xy"))
			a.SetReadDeadline(time.Now())
			a.SetReadDeadline(time.Time{})
			return timed(func() (int, error) { return a.Read(make([]byte, 10)) })
		}, result{2, nil}, 0},
		{"deadline extended while blocked", func(a, b *End) (result, time.Duration) {
			a.SetReadDeadline(time.Now().Add(time.Second))
			go func() {
				time.Sleep(500 * time.Millisecond)
				a.SetReadDeadline(time.Now().Add(1500 * time.Millisecond))
			}()
			return timed(func() (int, error) { return a.Read(make([]byte, 10)) })
		}, result{0, os.ErrDeadlineExceeded}, 2 * time.Second},
		{"deadline set on a Read blocked without one", func(a, b *End) (result, time.Duration) {
			go func() {
				time.Sleep(time.Second)
				a.SetDeadline(time.Now().Add(time.Second))
			}()
			return timed(func() (int, error) { return a.Read(make([]byte, 10)) })
		}, result{0, os.ErrDeadlineExceeded}, 2 * time.Second},
		{"bytes before the deadline", func(a, b *End) (result, time.Duration) {
			a.SetReadDeadline(time.Now().Add(time.Second))
			go func() {
				time.Sleep(300 * time.Millisecond)
				b.Write([]byte("abc"))
			}()
			return timed(func() (int, error) { return a.Read(make([]byte, 10)) })
		}, result{3, nil}, 300 * time.Millisecond},
		{"write deadline on a full pipe", func(a, b *End) (result, time.Duration) {
			a.SetWriteDeadline(time.Now().Add(time.Second))
			return timed(func() (int, error) { return a.Write(make([]byte, 20)) })
		}, result{8, os.ErrDeadlineExceeded}, time.Second},
		{"write deadline removed while blocked", func(a, b *End) (result, time.Duration) {
			a.SetWriteDeadline(time.Now().Add(time.Second))
			go func() {
				time.Sleep(500 * time.Millisecond)
				a.SetWriteDeadline(time.Time{})
				time.Sleep(time.Second)
				b.Read(make([]byte, 12))
			}()
			return timed(func() (int, error) { return a.Write(make([]byte, 12)) })
		}, result{12, nil}, 1500 * time.Millisecond},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				a, b := Pipe(8)
				got, d := tt.run(a, b)
				if got.n != tt.want.n || got.err != tt.want.err {
					t.Errorf("got %d, %v; want %d, %v", got.n, got.err, tt.want.n, tt.want.err)
				}
				if d != tt.duration {
					t.Errorf("returned after %v, want %v", d, tt.duration)
				}
				if ne, ok := got.err.(net.Error); got.err != nil && (!ok || !ne.Timeout()) {
					t.Errorf("error %v is not a net.Error timeout", got.err)
				}
				a.Close()
				b.Close()
			})
		})
	}
}

// timed runs call and returns its result and how long it took (fake time
// inside a bubble).
func timed(call func() (int, error)) (result, time.Duration) {
	start := time.Now()
	n, err := call()
	return result{n, err}, time.Since(start)
}
