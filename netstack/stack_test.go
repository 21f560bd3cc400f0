package netstack

import (
	"bytes"
	"errors"
	"net/netip"
	"strings"
	"sync"
	"testing"

	"github.com/rs/zerolog"

	"github.com/fwx-dev/fwx/netstack/lab"
)

func TestNewRejects(t *testing.T) {
	out := func([][]byte) error { return nil }
	for _, tc := range []struct {
		name string
		opts Options
		want string
	}{
		{"no Output", Options{}, "Output or OutputVectors is required"},
		{"MTU too small", Options{Output: out, MTU: 67}, "MTU 67"},
		{"MTU too large", Options{Output: out, MTU: 70000}, "MTU 70000"},
		{"negative offset", Options{Output: out, OutputOffset: -1}, "OutputOffset"},
		{"GSO without headroom", Options{Output: out, GSO: true, OutputOffset: 9}, "virtio header"},
		{"invalid address", Options{Output: out, Addrs: []netip.Addr{{}}}, "invalid address"},
		{"mapped address", Options{Output: out, Addrs: []netip.Addr{netip.MustParseAddr("::ffff:10.0.0.1")}}, "invalid address"},
		{"unspecified address", Options{Output: out, Addrs: []netip.Addr{netip.IPv4Unspecified()}}, "invalid address"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, err := New(tc.opts)
			if err == nil {
				s.Close()
				t.Fatal("New succeeded")
			}
			if !strings.Contains(err.Error(), tc.want) || !strings.HasPrefix(err.Error(), "netstack: ") {
				t.Errorf("New: %v, want an error about %q", err, tc.want)
			}
		})
	}
}

// syncBuffer is a bytes.Buffer safe for concurrent use.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

// TestOutputError: an Output error is counted and logged, and the stack
// carries on.
func TestOutputError(t *testing.T) {
	lab.CheckGoroutines(t)
	var log syncBuffer
	s, err := New(Options{
		Addrs:  []netip.Addr{outsideAddr},
		Output: func([][]byte) error { return errors.New("device gone") },
		Log:    zerolog.New(&log),
		Seed:   1,
	})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	c, err := s.DialUDP(netip.AddrPortFrom(outsideAddr, 1000), netip.MustParseAddrPort("198.51.100.10:53"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	for range 2 {
		mustWrite(t, c, "q")
	}
	// The two datagrams may go out in one batch or two.
	waitFor(t, "two packets out", func() bool { return s.Stats().PacketsOut == 2 })
	if st := s.Stats(); st.OutputErrors != st.OutputBatches || st.OutputErrors == 0 {
		t.Errorf("OutputErrors = %d in %d batches, want one per batch", st.OutputErrors, st.OutputBatches)
	}
	if !strings.Contains(log.String(), "device gone") {
		t.Errorf("log %q does not mention the error", log.String())
	}
}
