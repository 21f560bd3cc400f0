package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"math"
	"net/netip"
	"testing"
	"time"

	"github.com/fwx-dev/fwx/netstack/lab"
)

func TestPercentiles(t *testing.T) {
	us := func(n ...int) []time.Duration {
		out := make([]time.Duration, len(n))
		for i, v := range n {
			out[i] = time.Duration(v) * time.Microsecond
		}
		return out
	}
	tests := []struct {
		name     string
		samples  []time.Duration
		p50, p99 float64
	}{
		{"empty", nil, 0, 0},
		{"one", us(7), 7, 7},
		{"two", us(9, 1), 1, 9},
		// Nearest rank over 1..100: p50 is the 50th value, p99 the 99th.
		{"hundred", func() []time.Duration {
			s := make([]int, 100)
			for i := range s {
				s[i] = 100 - i
			}
			return us(s...)
		}(), 50, 99},
		{"sub-microsecond rounds to 0.1", []time.Duration{1234 * time.Nanosecond}, 1.2, 1.2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l := latencies{samples: tt.samples}
			got := l.percentiles(50, 99)
			if got[0] != tt.p50 || got[1] != tt.p99 {
				t.Errorf("percentiles(50, 99) = %v, want [%v %v]", got, tt.p50, tt.p99)
			}
		})
	}
}

// startEcho starts an echo server on a free loopback port and stops it,
// checking that its goroutines ended, when the test ends.
func startEcho(tb testing.TB) netip.AddrPort {
	tb.Helper()
	lab.CheckGoroutines(tb) // after the server closed
	srv, err := listenEcho(netip.MustParseAddrPort("127.0.0.1:0"))
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() {
		if err := srv.Close(); err != nil {
			tb.Errorf("close echo server: %v", err)
		}
	})
	return srv.Addr()
}

// decode parses the JSON line a command printed into a map, so the test
// checks the names scripts/bench reads, not just the Go fields.
func decode(t *testing.T, out *bytes.Buffer) map[string]float64 {
	t.Helper()
	var raw map[string]any
	if err := json.Unmarshal(out.Bytes(), &raw); err != nil {
		t.Fatalf("output %q is not JSON: %v", out.String(), err)
	}
	m := make(map[string]float64)
	for k, v := range raw {
		if f, ok := v.(float64); ok {
			m[k] = f
		}
	}
	return m
}

func TestLoopback(t *testing.T) {
	addr := startEcho(t).String()
	ctx := context.Background()

	t.Run("cps", func(t *testing.T) {
		var out bytes.Buffer
		err := cpsCmd(ctx, []string{"--target", addr, "--duration", "300ms", "--concurrency", "4"}, &out)
		if err != nil {
			t.Fatal(err)
		}
		r := decode(t, &out)
		for _, k := range []string{"conns", "per_sec", "p50_us", "p99_us", "errors", "duration_s"} {
			if _, ok := r[k]; !ok {
				t.Errorf("output %s lacks %q", out.String(), k)
			}
		}
		if r["conns"] <= 0 || r["errors"] != 0 {
			t.Errorf("conns = %v, errors = %v; want conns > 0, no errors (%s)", r["conns"], r["errors"], out.String())
		}
		if r["p50_us"] <= 0 || r["p50_us"] > r["p99_us"] {
			t.Errorf("p50_us = %v, p99_us = %v; want 0 < p50 <= p99", r["p50_us"], r["p99_us"])
		}
		if r["duration_s"] < 0.3 {
			t.Errorf("duration_s = %v, want >= 0.3 (the requested duration)", r["duration_s"])
		}
		if want := r["conns"] / r["duration_s"]; math.Abs(r["per_sec"]-want) > 0.01*want+0.1 {
			t.Errorf("per_sec = %v, want conns/duration_s = %v", r["per_sec"], want)
		}
		// Each worker runs its connections one after another, and half
		// of them last at least p50, so conns/2 * p50 cannot exceed
		// 4 workers * the wall time.
		if r["conns"]/2*r["p50_us"] > 4*r["duration_s"]*1e6 {
			t.Errorf("%v conns with p50 %v µs do not fit in 4 workers * %v s", r["conns"], r["p50_us"], r["duration_s"])
		}
	})

	t.Run("rr", func(t *testing.T) {
		var out bytes.Buffer
		if err := rrCmd(ctx, []string{"--target", addr, "--duration", "300ms"}, &out); err != nil {
			t.Fatal(err)
		}
		r := decode(t, &out)
		if r["rtts"] <= 0 {
			t.Errorf("rtts = %v, want > 0 (%s)", r["rtts"], out.String())
		}
		if r["p50_us"] <= 0 || r["p50_us"] > r["p99_us"] {
			t.Errorf("p50_us = %v, p99_us = %v; want 0 < p50 <= p99", r["p50_us"], r["p99_us"])
		}
		// One connection, one round trip at a time: the round trips
		// cannot add up to more than the wall time.
		if r["rtts"]*r["p50_us"]/2 > r["duration_s"]*1e6 {
			t.Errorf("%v round trips with p50 %v µs do not fit in %v s", r["rtts"], r["p50_us"], r["duration_s"])
		}
	})
}

// TestRefused checks that failures are counted, not hidden: nothing
// listens on the port of a server that was just closed.
func TestRefused(t *testing.T) {
	srv, err := listenEcho(netip.MustParseAddrPort("127.0.0.1:0"))
	if err != nil {
		t.Fatal(err)
	}
	addr := srv.Addr()
	srv.Close()

	res := runCPS(context.Background(), CPSConfig{
		Target: addr, Duration: 100 * time.Millisecond, Concurrency: 2, Timeout: time.Second,
	})
	if res.Conns != 0 || res.Errors == 0 || res.FirstError == "" {
		t.Errorf("cps to a closed port: %+v; want 0 conns, errors > 0 and first_error", res)
	}
	if _, err := runRR(context.Background(), RRConfig{Target: addr, Duration: 100 * time.Millisecond, Timeout: time.Second}); err == nil {
		t.Error("rr to a closed port: no error")
	}
}

func TestUsage(t *testing.T) {
	tests := []struct {
		name string
		cmd  func(context.Context, []string, *bytes.Buffer) error
		args []string
	}{
		{"cps without target", cpsFn, nil},
		{"cps bad target", cpsFn, []string{"--target", "example.com:80"}},
		{"cps zero concurrency", cpsFn, []string{"--target", "127.0.0.1:1", "--concurrency", "0"}},
		{"rr negative duration", rrFn, []string{"--target", "127.0.0.1:1", "--duration", "-1s"}},
		{"rr extra argument", rrFn, []string{"--target", "127.0.0.1:1", "x"}},
		{"rr malformed duration", rrFn, []string{"--target", "127.0.0.1:1", "--duration", "soon"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var out bytes.Buffer
			err := tt.cmd(context.Background(), tt.args, &out)
			var uerr usageError
			if !errors.As(err, &uerr) {
				t.Errorf("err = %v, want a usage error", err)
			}
			if out.Len() != 0 {
				t.Errorf("printed %q on a usage error", out.String())
			}
		})
	}
}

func cpsFn(ctx context.Context, args []string, out *bytes.Buffer) error {
	return cpsCmd(ctx, args, out)
}
func rrFn(ctx context.Context, args []string, out *bytes.Buffer) error { return rrCmd(ctx, args, out) }
