//go:build linux

package vnettun

import (
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"gvisor.dev/gvisor/pkg/tcpip/header"

	nslab "github.com/fwx-dev/fwx/netstack/lab"
)

// The reader's lifecycle: Close must end a Read waiting for a packet, a
// busy one, and one busy-polling (SetBusyPoll).

// TestCloseWhileBlocked closes a device while a Read waits for a packet:
// Read returns ErrClosed, and so does every Read after.
func TestCloseWhileBlocked(t *testing.T) {
	nslab.CheckGoroutines(t)
	requireLab(t, false)
	l := newLab(t, createVnet)
	d := l.b.(*Device) // nothing arrives on B unprompted (no link-local)

	errc := make(chan error, 1)
	go func() {
		bufs, sizes := [][]byte{make([]byte, testOffset+MaxPacket)}, []int{0}
		_, err := d.Read(bufs, sizes, testOffset)
		errc <- err
	}()
	time.Sleep(50 * time.Millisecond) // let Read block
	if err := d.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	select {
	case err := <-errc:
		if !errors.Is(err, ErrClosed) {
			t.Errorf("blocked Read ended with %v, want ErrClosed", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatalf("Close did not end a blocked Read")
	}
	bufs, sizes := [][]byte{make([]byte, testOffset+MaxPacket)}, []int{0}
	if n, err := d.Read(bufs, sizes, testOffset); n != 0 || !errors.Is(err, ErrClosed) {
		t.Errorf("Read after Close = %d, %v; want 0, ErrClosed", n, err)
	}
}

// TestCloseWhileBusy closes a device while packets keep arriving and a
// Read loop (busy-polling) and a Write loop are busy with them: both end
// with ErrClosed.
func TestCloseWhileBusy(t *testing.T) {
	nslab.CheckGoroutines(t)
	requireLab(t, false)
	l := newLab(t, createVnet)
	d := l.a.(*Device)
	d.SetBusyPoll(time.Millisecond)

	// The writer sends echo requests to ns A, whose replies the reader
	// reads: the kernel keeps the read queue busy.
	var replies atomic.Int64
	readErr, writeErr := make(chan error, 1), make(chan error, 1)
	go func() {
		req := make([]byte, testOffset+header.IPv4MinimumSize+header.ICMPv4MinimumSize+32)
		echoRequest(req[testOffset:])
		out := [][]byte{req, req, req, req}
		for {
			if _, err := d.Write(out, testOffset); err != nil {
				writeErr <- err
				return
			}
		}
	}()
	go func() {
		bufs, sizes := make([][]byte, 8), make([]int, 8)
		for i := range bufs {
			bufs[i] = make([]byte, testOffset+MaxPacket)
		}
		for {
			n, err := d.Read(bufs, sizes, testOffset)
			if err != nil {
				readErr <- err
				return
			}
			replies.Add(int64(n))
		}
	}()
	for deadline := time.Now().Add(10 * time.Second); replies.Load() < 1000; {
		if time.Now().After(deadline) {
			t.Fatalf("only %d packets read in 10 s", replies.Load())
		}
		time.Sleep(time.Millisecond)
	}
	if err := d.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	for name, c := range map[string]chan error{"Read": readErr, "Write": writeErr} {
		select {
		case err := <-c:
			if !errors.Is(err, ErrClosed) {
				t.Errorf("busy %s ended with %v, want ErrClosed", name, err)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("Close did not end a busy %s", name)
		}
	}
}

// TestBusyPollOnlyWhenBusy checks that Read busy-polls only after a Read
// that had its packet within a spin, and that a device that has been
// idle waits without spinning.
func TestBusyPollOnlyWhenBusy(t *testing.T) {
	requireLab(t, false)
	l := newLab(t, createVnet)
	d := l.a.(*Device)
	const spin = 100 * time.Millisecond
	d.SetBusyPoll(spin)

	req := make([]byte, testOffset+header.IPv4MinimumSize+header.ICMPv4MinimumSize+32)
	echoRequest(req[testOffset:])
	bufs, sizes := [][]byte{make([]byte, testOffset+MaxPacket)}, []int{0}
	read := func() {
		t.Helper()
		if _, err := d.Read(bufs, sizes, testOffset); err != nil {
			t.Fatalf("Read: %v", err)
		}
	}
	// A reply queued before Read: it comes within the spin.
	if _, err := d.Write([][]byte{req}, testOffset); err != nil {
		t.Fatal(err)
	}
	time.Sleep(10 * time.Millisecond)
	read()
	if !d.recent {
		t.Fatalf("a Read that found its packet at once did not arm the busy-poll")
	}
	// Nothing for 3 spins: this Read spins once, then waits; the next
	// one must not spin at all.
	later := func() {
		time.Sleep(3 * spin)
		d.Write([][]byte{req}, testOffset)
	}
	go later()
	read()
	if d.recent {
		t.Fatalf("a Read that waited %v still arms the busy-poll", 3*spin)
	}
	go later()
	cpu0 := processCPU(t)
	read()
	if cpu := processCPU(t) - cpu0; cpu > spin/2 {
		t.Errorf("an idle device's Read used %v of CPU in %v: it spun", cpu, 3*spin)
	}
}
