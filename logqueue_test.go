package fwx_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/fwx-dev/fwx"
	"github.com/fwx-dev/fwx/netstack/lab"
	"github.com/fwx-dev/fwx/netstack/lab/fwxlab"
)

// gate is a log destination that blocks every Write until it is opened
// (release): a pipe nobody reads.
type gate struct {
	open    chan struct{}
	once    sync.Once
	mu      sync.Mutex
	buf     bytes.Buffer
	entered chan struct{}
}

func newGate() *gate { return &gate{open: make(chan struct{}), entered: make(chan struct{}, 1)} }

func (g *gate) release() { g.once.Do(func() { close(g.open) }) }

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

// TestLogQueueBlockedDestination: with a destination that takes nothing, Write
// keeps returning at once, the overflow is counted, and once the
// destination moves a record says how many were dropped.
func TestLogQueueBlockedDestination(t *testing.T) {
	g := newGate()
	w := fwx.NewLogQueue(g, fwx.LogQueueOptions{Size: 8})
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
	g.release()
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

// TestLogQueueCloseBlocked: Close gives up on a destination that never returns.
func TestLogQueueCloseBlocked(t *testing.T) {
	g := newGate()
	w := fwx.NewLogQueue(g, fwx.LogQueueOptions{})
	w.Write([]byte("{}\n"))
	w.Write([]byte("{}\n"))
	<-g.entered
	err := w.Close(50 * time.Millisecond)
	if !errors.Is(err, fwx.ErrLogBlocked) {
		t.Fatalf("Close = %v, want fwx.ErrLogBlocked", err)
	}
	if _, err := w.Write([]byte("{}\n")); err != nil {
		t.Fatal(err)
	}
	if s := w.Stats(); s.Lost != 1 {
		t.Errorf("a write after Close: stats %+v, want 1 lost", s)
	}
	g.release()
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

// TestLogQueueDestinationFails: a broken pipe ends the log, reported once, and
// later records are counted as lost without reaching the destination.
func TestLogQueueDestinationFails(t *testing.T) {
	dst := &failing{}
	errs := make(chan error, 10)
	w := fwx.NewLogQueue(dst, fwx.LogQueueOptions{OnError: func(err error) { errs <- err }})
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

// TestLogQueueRateLimit: beyond the burst, records are suppressed until the clock
// refills the bucket, and a notice counts them.
func TestLogQueueRateLimit(t *testing.T) {
	clock := lab.NewManualClock(time.Date(2026, 12, 6, 10, 0, 0, 0, time.UTC))
	var buf syncBuffer
	w := fwx.NewLogQueue(&buf, fwx.LogQueueOptions{Rate: 10, Burst: 20, Clock: clock, NoticeInterval: time.Millisecond})
	for range 50 {
		w.Write([]byte(`{"event":"x"}` + "\n"))
	}
	clock.Advance(time.Second) // 10 more tokens
	for range 50 {
		w.Write([]byte(`{"event":"y"}` + "\n"))
	}
	if err := w.Close(5 * time.Second); err != nil {
		t.Fatal(err)
	}
	counts := map[string]int{}
	suppressed := 0.0
	for _, line := range strings.Split(strings.TrimSpace(string(buf.Bytes())), "\n") {
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

// TestLogQueueWriteAllocs: a record costs its copy only when the pool is warm.
func TestLogQueueWriteAllocs(t *testing.T) {
	w := fwx.NewLogQueue(&syncBuffer{}, fwx.LogQueueOptions{})
	defer w.Close(time.Second)
	rec := []byte(`{"event":"x"}` + "\n")
	allocs := testing.AllocsPerRun(1000, func() { w.Write(rec) })
	if allocs > 1 {
		t.Errorf("%v allocations per record", allocs)
	}
}

// TestBlockedLogForwards: with the firewall log's reader stuck, flows keep
// opening and carrying data; records are dropped and counted instead.
func TestBlockedLogForwards(t *testing.T) {
	g := newGate()
	q := fwx.NewLogQueue(g, fwx.LogQueueOptions{Size: 16})
	t.Cleanup(func() {
		g.release()
		q.Close(5 * time.Second)
	})
	tb := newTestbed(t, "", func(c *fwx.Config) { c.FirewallLog = zerolog.New(q) })
	fwxlab.EchoTCP(t, tb.Server, 8000)
	const conns = 40
	for i := range conns {
		c, err := tb.Client.DialTCP(lab.Context(t, 5*time.Second), netip.AddrPortFrom(serverIP.Addr(), 8000))
		if err != nil {
			t.Fatalf("connection %d with the log blocked: %v", i, err)
		}
		fwxlab.RoundTrip(t, c, fmt.Sprintf("message %d", i))
		c.Close()
	}
	udp := fwxlab.EchoUDP(t, tb.Server, 9000)
	u, err := tb.Client.DialUDP(netip.AddrPortFrom(clientIP.Addr(), 9001), netip.AddrPortFrom(serverIP.Addr(), 9000))
	if err != nil {
		t.Fatal(err)
	}
	defer u.Close()
	u.Write([]byte("ping"))
	fwxlab.Recv(t, udp)
	if s := q.Stats(); s.Dropped < conns-16 || s.Written != 0 {
		t.Errorf("log stats %+v; want at least %d records dropped and none written", s, conns-16)
	}
}
