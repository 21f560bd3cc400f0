package logq

import (
	"bytes"
	"encoding/json"
	"errors"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// gate is a destination that blocks every Write until opened.
type gate struct {
	open    chan struct{}
	mu      sync.Mutex
	buf     bytes.Buffer
	entered chan struct{}
}

func newGate() *gate { return &gate{open: make(chan struct{}), entered: make(chan struct{}, 1)} }

func (g *gate) Write(p []byte) (int, error) {
	select {
	case g.entered <- struct{}{}:
	default:
	}
	<-g.open
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.buf.Write(p)
}

func (g *gate) records(t *testing.T) []map[string]any {
	t.Helper()
	g.mu.Lock()
	defer g.mu.Unlock()
	var out []map[string]any
	for _, line := range strings.Split(strings.TrimSpace(g.buf.String()), "\n") {
		var rec map[string]any
		if err := json.Unmarshal([]byte(line), &rec); err != nil {
			t.Fatalf("line %q: %v", line, err)
		}
		out = append(out, rec)
	}
	return out
}

// TestBlockedDestination: with a destination that takes nothing, Write
// keeps returning at once, the overflow is counted, and once the
// destination moves a record says how many were dropped.
func TestBlockedDestination(t *testing.T) {
	g := newGate()
	w := New(g, Options{Size: 8})
	rec := []byte(`{"event":"x"}` + "\n")
	w.Write(rec)
	<-g.entered // the goroutine holds one record, blocked
	const n = 1000
	start := time.Now()
	for range n {
		if k, err := w.Write(rec); k != len(rec) || err != nil {
			t.Fatalf("Write = %d, %v", k, err)
		}
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("writes into a blocked log took %v", d)
	}
	s := w.Stats()
	if s.Dropped != n-8 || s.Written != 0 {
		t.Fatalf("stats %+v, want %d dropped and none written", s, n-8)
	}
	close(g.open)
	if err := w.Close(5 * time.Second); err != nil {
		t.Fatal(err)
	}
	recs := g.records(t)
	if len(recs) != 1+8+1 {
		t.Fatalf("%d records written, want the 9 queued and one notice", len(recs))
	}
	last := recs[len(recs)-1]
	if last["event"] != "log-dropped" || last["dropped"] != float64(n-8) {
		t.Errorf("notice %v, want log-dropped with dropped=%d", last, n-8)
	}
	if s := w.Stats(); s.Written != 9 || s.Dropped != n-8 {
		t.Errorf("stats after close %+v", s)
	}
}

// TestCloseBlocked: Close gives up on a destination that never returns.
func TestCloseBlocked(t *testing.T) {
	g := newGate()
	w := New(g, Options{})
	w.Write([]byte("{}\n"))
	w.Write([]byte("{}\n"))
	<-g.entered
	err := w.Close(50 * time.Millisecond)
	if !errors.Is(err, ErrBlocked) {
		t.Fatalf("Close = %v, want ErrBlocked", err)
	}
	if _, err := w.Write([]byte("{}\n")); err != nil {
		t.Fatal(err)
	}
	if s := w.Stats(); s.Lost != 1 {
		t.Errorf("a write after Close: stats %+v, want 1 lost", s)
	}
	close(g.open)
	w.Wait()
}

type failing struct {
	mu sync.Mutex
	n  int
}

func (f *failing) Write(p []byte) (int, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.n++
	return 0, syscall.EPIPE
}

// TestDestinationFails: a broken pipe ends the log, reported once, and
// later records are counted as lost without reaching the destination.
func TestDestinationFails(t *testing.T) {
	dst := &failing{}
	errs := make(chan error, 10)
	w := New(dst, Options{OnError: func(err error) { errs <- err }})
	for range 100 {
		w.Write([]byte("{}\n"))
	}
	if err := w.Close(5 * time.Second); err != nil {
		t.Fatal(err)
	}
	if err := <-errs; !errors.Is(err, syscall.EPIPE) {
		t.Errorf("OnError got %v", err)
	}
	if len(errs) != 0 {
		t.Errorf("OnError called %d more times", len(errs))
	}
	s := w.Stats()
	if dst.n != 1 || !errors.Is(s.Failed, syscall.EPIPE) || s.Written != 0 || s.Lost+s.Dropped != 100 {
		t.Errorf("destination written %d times, stats %+v; want one attempt and 100 lost or dropped", dst.n, s)
	}
}

// TestRateLimit: beyond the burst, records are suppressed until the clock
// refills the bucket, and a notice counts them.
func TestRateLimit(t *testing.T) {
	var mu sync.Mutex
	now := time.Date(2026, 12, 6, 10, 0, 0, 0, time.UTC)
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	var buf syncBuffer
	w := New(&buf, Options{Rate: 10, Burst: 20, Now: clock, NoticeInterval: time.Millisecond})
	for range 50 {
		w.Write([]byte(`{"event":"x"}` + "\n"))
	}
	mu.Lock()
	now = now.Add(time.Second) // 10 more tokens
	mu.Unlock()
	for range 50 {
		w.Write([]byte(`{"event":"y"}` + "\n"))
	}
	if err := w.Close(5 * time.Second); err != nil {
		t.Fatal(err)
	}
	counts := map[string]int{}
	suppressed := 0.0
	for _, line := range strings.Split(strings.TrimSpace(buf.String()), "\n") {
		var rec map[string]any
		if err := json.Unmarshal([]byte(line), &rec); err != nil {
			t.Fatal(err)
		}
		counts[rec["event"].(string)]++
		if rec["event"] == "log-suppressed" {
			suppressed += rec["suppressed"].(float64)
		}
	}
	if counts["x"] != 20 || counts["y"] != 10 || suppressed != 70 {
		t.Errorf("records %v, %v suppressed; want 20 x, 10 y and 70 suppressed", counts, suppressed)
	}
	if s := w.Stats(); s.Suppressed != 70 || s.Written != 30 {
		t.Errorf("stats %+v", s)
	}
}

type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// TestWriteAllocs: a record costs its copy only when the pool is warm.
func TestWriteAllocs(t *testing.T) {
	w := New(&syncBuffer{}, Options{})
	defer w.Close(time.Second)
	rec := []byte(`{"event":"x"}` + "\n")
	allocs := testing.AllocsPerRun(1000, func() { w.Write(rec) })
	if allocs > 1 {
		t.Errorf("%v allocations per record", allocs)
	}
}
