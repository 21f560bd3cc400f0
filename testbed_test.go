package fwx_test

import (
	"context"
	"testing"
	"time"

	"github.com/fwx-dev/fwx"
	"github.com/fwx-dev/fwx/filters/filtertest"
	"github.com/fwx-dev/fwx/session"
)

// The lab topology every test here uses is filtertest's:
//
//	client 10.0.0.2 ┐                              ┌ server  198.51.100.2
//	client2 10.0.0.3├─ inside ─ fwx ─ outside ─────┤ server2 198.51.100.3
//	                   10.0.0.1       198.51.100.1 └
var (
	fwIn      = filtertest.InsidePrefix
	fwOut     = filtertest.OutsidePrefix
	clientIP  = filtertest.ClientPrefix
	client2IP = filtertest.Client2Prefix
	serverIP  = filtertest.ServerPrefix
	server2IP = filtertest.Server2Prefix
)

type testbed struct{ *filtertest.Lab }

// newTestbed starts fwx in the lab with policy (YAML; empty means the
// built-in default); options adjust fwx's configuration.
func newTestbed(t testing.TB, policyYAML string, opts ...func(*fwx.Config)) *testbed {
	t.Helper()
	return &testbed{filtertest.New(t, filtertest.Options{
		Policy: policyYAML,
		Configure: func(c *fwx.Config) {
			for _, o := range opts {
				o(c)
			}
		},
	})}
}

func withFilter(name string, f session.Filter) func(*fwx.Config) {
	return func(c *fwx.Config) { c.Filters = filtertest.Registry(name, f) }
}

func ctxTimeout(t testing.TB, d time.Duration) context.Context { return filtertest.Context(t, d) }

// waitDenied waits until n records of denied flows matching match are
// written: each round moves the lab clock past the quiet time after which a
// denied flow's record is due, and sweeps.
func (tb *testbed) waitDenied(t testing.TB, n int, match map[string]string) []map[string]any {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		tb.Clock.Advance(31 * time.Second)
		tb.FW.Expire()
		recs := tb.Log.Records(t, match)
		if len(recs) >= n || time.Now().After(deadline) {
			if len(recs) < n {
				t.Fatalf("%d log records match %v, want %d", len(recs), match, n)
			}
			return recs
		}
		time.Sleep(10 * time.Millisecond)
	}
}
