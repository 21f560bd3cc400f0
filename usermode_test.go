package fwx_test

import (
	"io"
	"net/netip"
	"sync/atomic"
	"testing"
	"time"

	"github.com/fwx-dev/fwx/netstack/lab"
)

// TestUserModeFlowControl: a client that stops reading stops the server on
// the user-mode path: fwx's buffering stays bounded (the netstacks' windows
// and the chain's pipes), rather than growing with what the server sends.
func TestUserModeFlowControl(t *testing.T) {
	tb := newTestbed(t, benchPolicy, withFilter("pass", passFilter{}))
	ln, err := tb.Server.ListenTCP(5201)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	var written atomic.Int64
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		chunk := make([]byte, 64<<10)
		for {
			c.SetWriteDeadline(time.Now().Add(10 * time.Second))
			n, err := c.Write(chunk)
			written.Add(int64(n))
			if err != nil {
				return
			}
		}
	}()
	c, err := tb.Client.DialTCP(lab.Context(t, 5*time.Second), netip.AddrPortFrom(serverIP.Addr(), 5201))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	// The client never reads. Wait until the server stalls.
	var last int64 = -1
	for i := 0; i < 100; i++ {
		time.Sleep(100 * time.Millisecond)
		now := written.Load()
		if now == last {
			break
		}
		last = now
	}
	const bound = 48 << 20 // every window and pipe on the way, generously
	if last > bound {
		t.Errorf("the server wrote %d MiB to a client that reads nothing: fwx buffers without bound", last>>20)
	}
	if last <= 0 {
		t.Fatal("nothing was written")
	}
	// Once the client reads, everything flows again.
	buf := make([]byte, 1<<20)
	// Generously: after a long zero window the sender's persist timer
	// may have backed off to seconds before it probes again.
	c.SetReadDeadline(time.Now().Add(30 * time.Second))
	if _, err := io.ReadFull(c, buf); err != nil {
		t.Fatalf("reading after the stall: %v", err)
	}
	t.Logf("stalled after %d KiB in flight", last>>10)
}
