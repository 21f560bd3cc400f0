package netstack

import (
	"flag"
	"os"
	"testing"

	"gvisor.dev/gvisor/pkg/refs"
)

// TestMain turns on gVisor's reference-leak checker (each rig checks when
// the last one is torn down that every packet and buffer was released;
// PERF-NOTES §4: a missing DecRef is how gVisor-based proxies grow to
// gigabytes). It stays off when benchmarks run: it slows every packet.
func TestMain(m *testing.M) {
	flag.Parse()
	if f := flag.Lookup("test.bench"); f == nil || f.Value.String() == "" {
		refs.SetLeakMode(refs.LeaksPanic)
	}
	os.Exit(m.Run())
}
