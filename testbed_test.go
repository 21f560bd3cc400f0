package fwx_test

import (
	"bytes"
	"context"
	"encoding/json"
	"net/netip"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/fwx-dev/fwx"
	"github.com/fwx-dev/fwx/filters"
	"github.com/fwx-dev/fwx/netstack/lab"
	"github.com/fwx-dev/fwx/session/policy"
)

// The lab topology every test here uses:
//
//	client 10.0.0.2 ┐                              ┌ server  198.51.100.2
//	client2 10.0.0.3├─ inside ─ fwx ─ outside ─────┤ server2 198.51.100.3
//	                   10.0.0.1       198.51.100.1 └
var (
	fwIn      = netip.MustParsePrefix("10.0.0.1/24")
	fwOut     = netip.MustParsePrefix("198.51.100.1/24")
	clientIP  = netip.MustParsePrefix("10.0.0.2/24")
	client2IP = netip.MustParsePrefix("10.0.0.3/24")
	serverIP  = netip.MustParsePrefix("198.51.100.2/24")
	server2IP = netip.MustParsePrefix("198.51.100.3/24")
	start     = time.Date(2026, 11, 23, 9, 0, 0, 0, time.UTC)
)

type testbed struct {
	net             *lab.Network
	inside, outside *lab.Segment
	client, client2 *lab.Host
	server, server2 *lab.Host
	clock           *lab.ManualClock
	fw              *fwx.Firewall
	log             *logBuffer
}

// newTestbed builds the topology with fwx running policy (YAML; empty means
// the built-in default) and stops everything when the test ends, checking
// that no goroutine is left behind. Options adjust fwx's configuration.
func newTestbed(t testing.TB, policyYAML string, opts ...func(*fwx.Config)) *testbed {
	t.Helper()
	goroutines := runtime.NumGoroutine()
	pol := policy.Default()
	if policyYAML != "" {
		var err error
		if pol, err = policy.Parse("test-policy", []byte(policyYAML)); err != nil {
			t.Fatal(err)
		}
	}
	tb := &testbed{net: lab.New(lab.Options{Seed: 1}), clock: lab.NewManualClock(start), log: &logBuffer{}}
	tb.inside = tb.net.NewSegment("inside")
	tb.outside = tb.net.NewSegment("outside")
	tb.client = mustHost(t, tb.inside, "client", clientIP, fwIn.Addr())
	tb.client2 = mustHost(t, tb.inside, "client2", client2IP, fwIn.Addr())
	tb.server = mustHost(t, tb.outside, "server", serverIP, fwOut.Addr())
	tb.server2 = mustHost(t, tb.outside, "server2", server2IP, fwOut.Addr())
	cfg := fwx.Config{
		Inside:        tb.inside.Device(),
		Outside:       tb.outside.Device(),
		InsideAddr:    fwIn,
		OutsideAddr:   fwOut,
		Policy:        pol,
		Filters:       &filters.Registry{},
		Clock:         tb.clock,
		Seed:          1,
		SweepInterval: time.Hour, // tests sweep by hand with Expire
		FirewallLog:   zerolog.New(tb.log),
	}
	for _, o := range opts {
		o(&cfg)
	}
	fw, err := fwx.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	tb.fw = fw
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- fw.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
		tb.net.Close()
		if t.Failed() {
			t.Logf("firewall log:\n%s", tb.log.String())
		}
		checkGoroutines(t, goroutines)
	})
	return tb
}

func mustHost(t testing.TB, s *lab.Segment, name string, addr netip.Prefix, gw netip.Addr) *lab.Host {
	t.Helper()
	h, err := s.AddHost(name, addr, gw)
	if err != nil {
		t.Fatal(err)
	}
	return h
}

// checkGoroutines fails the test if goroutines it started outlive it.
func checkGoroutines(t testing.TB, before int) {
	t.Helper()
	// Generous: under the race detector on a loaded machine, closing a
	// lab network's stacks can take seconds.
	deadline := time.Now().Add(15 * time.Second)
	for {
		n := runtime.NumGoroutine()
		if n <= before {
			return
		}
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<20)
			t.Errorf("%d goroutines left running (had %d):\n%s", n-before, before, buf[:runtime.Stack(buf, true)])
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// logBuffer collects the firewall log; it is safe for concurrent use.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(p)
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}

// records returns the log records whose fields include all of match.
func (l *logBuffer) records(t *testing.T, match map[string]string) []map[string]any {
	t.Helper()
	var out []map[string]any
	for _, line := range strings.Split(strings.TrimSpace(l.String()), "\n") {
		if line == "" {
			continue
		}
		var rec map[string]any
		if err := json.Unmarshal([]byte(line), &rec); err != nil {
			t.Fatalf("firewall log line is not JSON: %q", line)
		}
		ok := true
		for k, v := range match {
			if s, _ := rec[k].(string); s != v {
				ok = false
			}
		}
		if ok {
			out = append(out, rec)
		}
	}
	return out
}

// waitRecords waits until the log holds n records matching match.
func (l *logBuffer) waitRecords(t *testing.T, n int, match map[string]string) []map[string]any {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		recs := l.records(t, match)
		if len(recs) >= n || time.Now().After(deadline) {
			if len(recs) < n {
				t.Fatalf("%d log records match %v, want %d", len(recs), match, n)
			}
			return recs
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func ctxTimeout(t testing.TB, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}
