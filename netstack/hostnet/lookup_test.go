package hostnet

import (
	"testing"

	"github.com/fwx-dev/fwx/nat"
)

// TestSocketLookupNoAllocs: Write finds a packet's socket without a lock
// or an allocation.
func TestSocketLookupNoAllocs(t *testing.T) {
	h := newHost(t)
	ext := freePort(t, "udp")
	if err := h.Hold(nat.UDP, ext, false); err != nil {
		t.Fatal(err)
	}
	if n := testing.AllocsPerRun(100, func() {
		if h.socket(nat.UDP, false, ext.Port()) == nil {
			t.Fatal("no socket")
		}
	}); n != 0 {
		t.Fatalf("%v allocations per lookup", n)
	}
}
