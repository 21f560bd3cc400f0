package stream

import (
	"bytes"
	"context"
	"errors"
	"syscall"
	"testing"
	"testing/synctest"
)

// relayPair runs Relay between two pipes, client ⇄ Relay ⇄ server, and
// returns the client's and the server's ends and the Relay's result.
func relayPair(ctx context.Context, size int) (client, server *End, done <-chan relayResult) {
	client, x := Pipe(size)
	y, server := Pipe(size)
	c := make(chan relayResult, 1)
	go func() {
		var r relayResult
		r.aToB, r.bToA, r.err = Relay(ctx, x, y, 100)
		c <- r
	}()
	return client, server, c
}

type relayResult struct {
	aToB, bToA int64
	err        error
}

// TestRelayHalfClose relays a request and a response larger than every
// buffer on the way; one side half-closes first, the other direction keeps
// flowing, and Relay ends cleanly when both are done.
func TestRelayHalfClose(t *testing.T) {
	request := bytes.Repeat([]byte("request "), 1000)
	response := bytes.Repeat([]byte("response "), 3000)
	for _, tt := range []struct {
		name         string
		clientFirst  bool
		wantA, wantB int
	}{
		{"client closes first", true, len(request), len(response)},
		{"server closes first", false, len(request), len(response)},
	} {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				client, server, done := relayPair(t.Context(), 64)
				first, firstData, second, secondData := client, request, server, response
				if !tt.clientFirst {
					first, firstData, second, secondData = server, response, client, request
				}
				got := goReadAll(second)
				if _, err := first.Write(firstData); err != nil {
					t.Fatal(err)
				}
				first.CloseWrite()
				if r := <-got; !bytes.Equal(r.data, firstData) || r.err != nil {
					t.Fatalf("first direction: got %d bytes, %v; want %d, EOF", len(r.data), r.err, len(firstData))
				}
				// The first direction is done; the second still flows.
				got = goReadAll(first)
				if _, err := second.Write(secondData); err != nil {
					t.Fatalf("second direction after the first half-closed: %v", err)
				}
				second.CloseWrite()
				if r := <-got; !bytes.Equal(r.data, secondData) || r.err != nil {
					t.Fatalf("second direction: got %d bytes, %v; want %d, EOF", len(r.data), r.err, len(secondData))
				}
				r := <-done
				if r.err != nil || r.aToB != int64(tt.wantA) || r.bToA != int64(tt.wantB) {
					t.Errorf("Relay = %d, %d, %v; want %d, %d, nil", r.aToB, r.bToA, r.err, tt.wantA, tt.wantB)
				}
				// Relay closed its sockets: writes toward it now break.
				_, err := client.Write([]byte("late"))
				wantErr(t, "client write after Relay", err, syscall.EPIPE)
				client.Close()
				server.Close()
			})
		})
	}
}

// TestRelayAbort checks that a reset on one side resets the other, and
// that Relay returns the reset.
func TestRelayAbort(t *testing.T) {
	for _, tt := range []struct {
		name         string
		serverAborts bool
	}{
		{"client aborts", false},
		{"server aborts", true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				client, server, done := relayPair(t.Context(), 64)
				aborter, other := client, server
				if tt.serverAborts {
					aborter, other = server, client
				}
				mustWrite(t, other, "in flight")
				pending := goRead(other, 100)
				synctest.Wait()
				if err := aborter.Abort(); err != nil {
					t.Fatal(err)
				}
				if r := <-pending; !isReset(r.err) {
					t.Errorf("other side's blocked Read: %d, %v; want a reset", r.n, r.err)
				}
				// Let the relay finish propagating the reset to both
				// directions before looking at the write side.
				synctest.Wait()
				if _, err := other.Write([]byte("x")); !isReset(err) {
					t.Errorf("other side's Write: %v, want a reset", err)
				}
				if r := <-done; !isReset(r.err) {
					t.Errorf("Relay error %v, want a reset", r.err)
				}
				client.Close()
				server.Close()
			})
		})
	}
}

// TestRelayWriteFails checks that when a write fails (the server stopped
// reading), Relay aborts both sides and returns the write's error.
func TestRelayWriteFails(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		client, server, done := relayPair(t.Context(), 64)
		server.CloseRead()
		mustWrite(t, client, "nobody reads this")
		r := <-done
		wantErr(t, "Relay", r.err, syscall.EPIPE)
		if _, err := client.Read(make([]byte, 10)); !isReset(err) {
			t.Errorf("client Read: %v, want a reset", err)
		}
		if _, err := server.Write([]byte("x")); !isReset(err) {
			t.Errorf("server Write: %v, want a reset", err)
		}
		client.Close()
		server.Close()
	})
}

// TestRelayCancel checks that cancelling the context aborts both sides and
// makes Relay return the context's error.
func TestRelayCancel(t *testing.T) {
	for _, tt := range []struct {
		name   string
		before bool // cancel before Relay starts
	}{
		{"while relaying", false},
		{"before starting", true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				ctx, cancel := context.WithCancel(t.Context())
				defer cancel()
				if tt.before {
					cancel()
				}
				client, server, done := relayPair(ctx, 64)
				if !tt.before {
					mustWrite(t, client, "hello")
					mustRead(t, server, "hello")
					synctest.Wait()
					select {
					case r := <-done:
						t.Fatalf("Relay returned %v before the cancel", r.err)
					default:
					}
					cancel()
				}
				r := <-done
				if !errors.Is(r.err, context.Canceled) {
					t.Errorf("Relay error %v, want context.Canceled", r.err)
				}
				for _, e := range []*End{client, server} {
					if _, err := e.Read(make([]byte, 1)); !isReset(err) {
						t.Errorf("Read after cancel: %v, want a reset", err)
					}
					e.Close()
				}
			})
		})
	}
}
