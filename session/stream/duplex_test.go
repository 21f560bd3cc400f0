package stream

import (
	"context"
	"errors"
	"io"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/fwx-dev/fwx/netstack/lab"
)

// TestDuplex: the first error, or the context's end, aborts both sockets
// so the other direction ends too; Duplex returns once both directions
// have, with the first error, and closes both sockets.
func TestDuplex(t *testing.T) {
	errBad := errors.New("a message the filter cannot read")
	for _, tt := range []struct {
		name   string
		cancel bool  // kill the connection
		fail   error // what the a-to-b direction returns after its first read
		want   error
	}{
		{"both end", false, nil, nil},
		{"one fails", false, errBad, errBad},
		{"killed", true, nil, context.Canceled},
	} {
		t.Run(tt.name, func(t *testing.T) {
			lab.CheckGoroutines(t)
			a, aPeer := Pipe(0)
			b, bPeer := Pipe(0)
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			// copyTo is one direction: it copies until its source ends;
			// fail makes it return after the first read.
			copyTo := func(dst, src Socket, fail error) func() error {
				return func() error {
					buf := make([]byte, 100)
					for {
						n, err := src.Read(buf)
						if err == io.EOF {
							return dst.CloseWrite()
						}
						if err != nil {
							return err
						}
						if fail != nil {
							return fail
						}
						if _, err := dst.Write(buf[:n]); err != nil {
							return err
						}
					}
				}
			}
			done := make(chan error, 1)
			go func() { done <- Duplex(ctx, a, b, copyTo(b, a, tt.fail), copyTo(a, b, nil)) }()
			switch {
			case tt.cancel:
				cancel()
			case tt.fail != nil:
				aPeer.Write([]byte("x"))
			default:
				aPeer.CloseWrite()
				bPeer.CloseWrite()
			}
			if err := recvErr(t, done); !errors.Is(err, tt.want) && err != tt.want {
				t.Errorf("Duplex: %v, want %v", err, tt.want)
			}
			// Both sockets are closed or aborted: the peers read their end.
			for _, p := range []Socket{aPeer, bPeer} {
				if _, err := readAll(p); tt.want != nil && !errors.Is(err, syscall.ECONNRESET) {
					t.Errorf("a peer read %v after the failure, want a reset", err)
				}
			}
		})
	}
}

// TestDuplexWaitsForBoth: Duplex does not return while a direction is
// still running, even one the aborted sockets do not stop at once.
func TestDuplexWaitsForBoth(t *testing.T) {
	lab.CheckGoroutines(t)
	a, _ := Pipe(0)
	b, _ := Pipe(0)
	ctx, cancel := context.WithCancel(context.Background())
	var slowDone atomic.Bool
	release := make(chan struct{})
	fast := func() error {
		_, err := a.Read(make([]byte, 1)) // ends when a is aborted
		return err
	}
	slow := func() error {
		<-release // ends later, whatever the sockets do
		slowDone.Store(true)
		return nil
	}
	done := make(chan error, 1)
	go func() { done <- Duplex(ctx, a, b, fast, slow) }()
	cancel()
	time.AfterFunc(50*time.Millisecond, func() { close(release) })
	recvErr(t, done)
	if !slowDone.Load() {
		t.Error("Duplex returned while a direction was still running")
	}
}

func recvErr(t *testing.T, c <-chan error) error {
	t.Helper()
	select {
	case err := <-c:
		return err
	case <-time.After(10 * time.Second):
		t.Fatal("Duplex did not return")
		return nil
	}
}
