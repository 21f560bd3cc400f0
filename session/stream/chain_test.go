package stream

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"strings"
	"sync"
	"syscall"
	"testing"
	"testing/synctest"

	"github.com/fwx-dev/fwx/netstack/lab"
)

// Test stages. Each is built from two copy functions, one per direction:
// up (client to server: internal to external) and down.

// copyFunc copies src to dst until src ends, changing bytes as it likes.
type copyFunc func(dst io.Writer, src io.Reader) error

// duplex makes a stage from a copy function per direction. A direction
// that ends cleanly half-closes its destination; one that fails aborts
// both sockets.
func duplex(up, down copyFunc) Stage {
	return func(ctx context.Context, internal, external Socket) error {
		run := func(dst, src Socket, f copyFunc) error {
			if err := f(dst, src); err != nil {
				internal.Abort()
				external.Abort()
				return err
			}
			return dst.CloseWrite()
		}
		var upErr error
		var wg sync.WaitGroup
		wg.Go(func() { upErr = run(external, internal, up) })
		downErr := run(internal, external, down)
		wg.Wait()
		return errors.Join(upErr, downErr)
	}
}

func plainCopy(dst io.Writer, src io.Reader) error {
	_, err := io.Copy(dst, src)
	return err
}

// mapChunks changes every chunk read with f.
func mapChunks(f func([]byte) []byte) copyFunc {
	return func(dst io.Writer, src io.Reader) error {
		buf := make([]byte, 512)
		for {
			n, err := src.Read(buf)
			if n > 0 {
				if _, werr := dst.Write(f(buf[:n])); werr != nil {
					return werr
				}
			}
			if err == io.EOF {
				return nil
			}
			if err != nil {
				return err
			}
		}
	}
}

// mapLines holds bytes until a newline, then writes the line changed by f
// (nil drops it). At the end, an unterminated last line is passed too.
func mapLines(f func(line []byte) []byte) copyFunc {
	return func(dst io.Writer, src io.Reader) error {
		r := bufio.NewReader(src)
		for {
			line, err := r.ReadBytes('\n')
			if len(line) > 0 {
				if out := f(line); out != nil {
					if _, werr := dst.Write(out); werr != nil {
						return werr
					}
				}
			}
			if err == io.EOF {
				return nil
			}
			if err != nil {
				return err
			}
		}
	}
}

// prefixed writes p, then copies.
func prefixed(p string) copyFunc {
	return func(dst io.Writer, src io.Reader) error {
		if _, err := io.WriteString(dst, p); err != nil {
			return err
		}
		return plainCopy(dst, src)
	}
}

var (
	// passStage copies both ways with Relay.
	passStage Stage = func(ctx context.Context, internal, external Socket) error {
		_, _, err := Relay(ctx, internal, external, 1000)
		return err
	}
	// upperStage uppercases both ways.
	upperStage = duplex(mapChunks(bytes.ToUpper), mapChunks(bytes.ToUpper))
	// prefixStage inserts "pre:" at the start of the request.
	prefixStage = duplex(prefixed("pre:"), plainCopy)
	// dropStage drops request lines that start with "DROP".
	dropStage = duplex(mapLines(func(l []byte) []byte {
		if bytes.HasPrefix(l, []byte("DROP")) {
			return nil
		}
		return l
	}), plainCopy)
	// holdStage passes request lines only once they are complete.
	holdStage = duplex(mapLines(func(l []byte) []byte { return l }), plainCopy)
)

// TestChain sends a request from the client through the stages to a
// server, which answers once the request ended; it checks what each side
// received against the stages' changes applied in order.
func TestChain(t *testing.T) {
	const request = "hello\nDROP this\ndrop not this\nbye"
	const response = "Welcome\nto the server\n"
	rng := rand.New(rand.NewPCG(7, 7))
	large := make([]byte, 300_000) // larger than every buffer on the way
	for i := range large {
		large[i] = byte(rng.Uint32())
	}
	up := strings.ToUpper
	tests := []struct {
		name               string
		stages             []Stage
		request, response  string
		wantServer, wantCl string
	}{
		{"0 stages", nil, request, response, request, response},
		{"1 pass", []Stage{passStage}, request, response, request, response},
		{"1 upper", []Stage{upperStage}, request, response, up(request), up(response)},
		{"1 prefix", []Stage{prefixStage}, request, response, "pre:" + request, response},
		{"1 drop line", []Stage{dropStage}, request, response,
			"hello\ndrop not this\nbye", response},
		{"1 hold line", []Stage{holdStage}, request, response, request, response},
		{"3 pass", []Stage{passStage, passStage, passStage}, request, response, request, response},
		{"3 prefix upper drop", []Stage{prefixStage, upperStage, dropStage}, request, response,
			// prefixed first, then uppercased, so both DROP lines go.
			"PRE:HELLO\nBYE", up(response)},
		{"3 drop upper prefix", []Stage{dropStage, upperStage, prefixStage}, request, response,
			"pre:HELLO\nDROP NOT THIS\nBYE", up(response)},
		{"3 hold upper pass", []Stage{holdStage, upperStage, passStage}, request, response,
			up(request), up(response)},
		{"0 stages large", nil, string(large), string(large[:100_000]), string(large), string(large[:100_000])},
		{"3 pass large", []Stage{passStage, passStage, passStage}, string(large), string(large[:100_000]),
			string(large), string(large[:100_000])},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			lab.CheckGoroutines(t)
			client, internal := Pipe(256)
			external, server := Pipe(256)
			chainErr := make(chan error, 1)
			go func() { chainErr <- Chain(t.Context(), internal, external, tt.stages, 256) }()

			serverGot := make(chan readAllResult, 1)
			go func() {
				got, err := readAll(server)
				if err == nil {
					_, err = io.WriteString(server, tt.response)
				}
				if err == nil {
					err = server.CloseWrite()
				}
				serverGot <- readAllResult{got, err}
			}()
			clientGot := goReadAll(client)
			if _, err := io.WriteString(client, tt.request); err != nil {
				t.Fatal(err)
			}
			client.CloseWrite()

			if r := <-serverGot; r.err != nil || string(r.data) != tt.wantServer {
				t.Errorf("server got %s, %v; want %s", abbrev(r.data), r.err, abbrev([]byte(tt.wantServer)))
			}
			if r := <-clientGot; r.err != nil || string(r.data) != tt.wantCl {
				t.Errorf("client got %s, %v; want %s", abbrev(r.data), r.err, abbrev([]byte(tt.wantCl)))
			}
			if err := <-chainErr; err != nil {
				t.Errorf("Chain: %v", err)
			}
			client.Close()
			server.Close()
		})
	}
}

// abbrev shows short byte strings quoted and long ones by length.
func abbrev(b []byte) string {
	if len(b) > 100 {
		return fmt.Sprintf("%d bytes", len(b))
	}
	return fmt.Sprintf("%q", b)
}

// TestChainHoldsUntilNewline checks that a stage that holds bytes keeps
// them from the server until the line is complete, also behind other
// stages.
func TestChainHoldsUntilNewline(t *testing.T) {
	for _, tt := range []struct {
		name   string
		stages []Stage
	}{
		{"alone", []Stage{holdStage}},
		{"between pass stages", []Stage{passStage, holdStage, passStage}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				client, internal := Pipe(0)
				external, server := Pipe(0)
				done := make(chan error, 1)
				go func() { done <- Chain(t.Context(), internal, external, tt.stages, 0) }()
				mustWrite(t, client, "abc")
				synctest.Wait()
				if n := server.Buffered(); n != 0 {
					t.Fatalf("server has %d bytes before the newline", n)
				}
				mustWrite(t, client, "def\nghi")
				synctest.Wait()
				if n := server.Buffered(); n != len("abcdef\n") {
					t.Fatalf("server has %d bytes, want the line's 7", n)
				}
				mustRead(t, server, "abcdef\n")
				client.CloseWrite()
				mustRead(t, server, "ghi") // the rest, at the end
				server.CloseWrite()
				if err := <-done; err != nil {
					t.Errorf("Chain: %v", err)
				}
				client.Close()
				server.Close()
			})
		})
	}
}

// emulator is a last stage that answers the client itself: it reads a line
// and greets it.
var emulator Stage = func(ctx context.Context, internal, external Socket) error {
	if external != nil {
		return fmt.Errorf("emulator got an external socket %v", external)
	}
	line, err := bufio.NewReader(internal).ReadString('\n')
	if err != nil {
		return err
	}
	if _, err := io.WriteString(internal, "hello "+line); err != nil {
		return err
	}
	return nil // Chain closes internal: the client reads EOF
}

// TestChainEmulation runs chains whose last stage emulates the server
// (external is nil).
func TestChainEmulation(t *testing.T) {
	for _, tt := range []struct {
		name   string
		stages []Stage
		want   string
	}{
		{"1 stage", []Stage{emulator}, "hello bob\n"},
		{"3 stages", []Stage{passStage, upperStage, emulator}, "HELLO BOB\n"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				client, internal := Pipe(0)
				done := make(chan error, 1)
				go func() { done <- Chain(t.Context(), internal, nil, tt.stages, 0) }()
				got := goReadAll(client)
				mustWrite(t, client, "bob\n")
				if r := <-got; string(r.data) != tt.want || r.err != nil {
					t.Errorf("client got %q, %v; want %q, EOF", r.data, r.err, tt.want)
				}
				client.CloseWrite()
				if err := <-done; err != nil {
					t.Errorf("Chain: %v", err)
				}
				client.Close()
			})
		})
	}
	t.Run("no stages", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			client, internal := Pipe(0)
			if err := Chain(t.Context(), internal, nil, nil, 0); err != ErrNoExternal {
				t.Errorf("Chain = %v, want ErrNoExternal", err)
			}
			if _, err := client.Read(make([]byte, 1)); err != io.EOF {
				t.Errorf("client Read: %v, want EOF (internal closed)", err)
			}
			client.Close()
		})
	})
}

// TestChainWiring checks which sockets each stage gets: the first the
// chain's internal, the last its external, and neighbours the two ends of
// one pipe.
func TestChainWiring(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		client, internal := Pipe(0)
		external, server := Pipe(0)
		var got [3][2]Socket
		stages := make([]Stage, 3)
		for i := range stages {
			stages[i] = func(ctx context.Context, in, ex Socket) error {
				got[i] = [2]Socket{in, ex}
				return nil
			}
		}
		if err := Chain(t.Context(), internal, external, stages, 0); err != nil {
			t.Fatal(err)
		}
		if got[0][0] != Socket(internal) || got[2][1] != Socket(external) {
			t.Error("the first stage's internal or the last stage's external is not the chain's")
		}
		for i := range 2 {
			left, ok1 := got[i][1].(*End)
			right, ok2 := got[i+1][0].(*End)
			if !ok1 || !ok2 || left.out != right.in || left.in != right.out {
				t.Errorf("stages %d and %d are not joined by one pipe", i, i+1)
			}
		}
		// Chain closed what the stages left open.
		if _, err := client.Read(make([]byte, 1)); err != io.EOF {
			t.Errorf("client Read: %v, want EOF", err)
		}
		if _, err := server.Write([]byte("x")); err != ErrBrokenPipe {
			t.Errorf("server Write: %v, want ErrBrokenPipe", err)
		}
		client.Close()
		server.Close()
	})
}

// TestChainStageReturns checks that when a stage in the middle returns
// without closing anything, its neighbours see its sockets closed.
func TestChainStageReturns(t *testing.T) {
	quit := Stage(func(context.Context, Socket, Socket) error { return nil })
	t.Run("both sides read EOF", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			client, internal := Pipe(0)
			external, server := Pipe(0)
			done := make(chan error, 1)
			go func() { done <- Chain(t.Context(), internal, external, []Stage{passStage, quit, passStage}, 0) }()
			for name, e := range map[string]*End{"client": client, "server": server} {
				if _, err := e.Read(make([]byte, 1)); err != io.EOF {
					t.Errorf("%s Read: %v, want EOF", name, err)
				}
				e.CloseWrite()
			}
			if err := <-done; err != nil {
				t.Errorf("Chain: %v", err)
			}
			client.Close()
			server.Close()
		})
	})
	t.Run("client writes toward it", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			client, internal := Pipe(0)
			external, server := Pipe(0)
			done := make(chan error, 1)
			go func() { done <- Chain(t.Context(), internal, external, []Stage{passStage, quit, passStage}, 0) }()
			if _, err := client.Read(make([]byte, 1)); err != io.EOF {
				t.Errorf("client Read: %v, want EOF", err)
			}
			mustWrite(t, client, "lost")
			synctest.Wait() // stage 0 fails to pass it on, and aborts
			if _, err := client.Read(make([]byte, 1)); !isReset(err) {
				t.Errorf("client Read after writing: %v, want a reset", err)
			}
			server.CloseWrite()
			err := <-done
			wantErr(t, "Chain", err, syscall.EPIPE)
			if err != nil && !strings.Contains(err.Error(), "stage 0") {
				t.Errorf("Chain error %q does not name stage 0", err)
			}
			client.Close()
			server.Close()
		})
	})
}

// TestChainPanic checks that a stage that panics has its sockets aborted
// and Chain reports the panic.
func TestChainPanic(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		client, internal := Pipe(0)
		external, server := Pipe(0)
		boom := Stage(func(context.Context, Socket, Socket) error { panic("boom") })
		err := Chain(t.Context(), internal, external, []Stage{passStage, boom}, 0)
		wantErr(t, "Chain", err, ErrStagePanic)
		if err != nil && !strings.Contains(err.Error(), "boom") {
			t.Errorf("Chain error %q does not say what panicked", err)
		}
		for name, e := range map[string]*End{"client": client, "server": server} {
			if _, err := e.Read(make([]byte, 1)); !isReset(err) {
				t.Errorf("%s Read: %v, want a reset", name, err)
			}
			e.Close()
		}
	})
}

// TestChainCancel checks that cancelling the context aborts every socket,
// so the stages return, and Chain returns the context's error.
func TestChainCancel(t *testing.T) {
	// waiter ignores its sockets and waits for the context.
	waiter := Stage(func(ctx context.Context, _, _ Socket) error {
		<-ctx.Done()
		return ctx.Err()
	})
	for _, tt := range []struct {
		name   string
		stages []Stage
	}{
		{"0 stages", nil},
		{"1 pass", []Stage{passStage}},
		{"3 stages", []Stage{passStage, upperStage, holdStage}},
		{"waiting stage", []Stage{passStage, waiter, passStage}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				ctx, cancel := context.WithCancel(t.Context())
				defer cancel()
				client, internal := Pipe(0)
				external, server := Pipe(0)
				done := make(chan error, 1)
				go func() { done <- Chain(ctx, internal, external, tt.stages, 0) }()
				mustWrite(t, client, "held") // holdStage keeps it
				synctest.Wait()
				select {
				case err := <-done:
					t.Fatalf("Chain returned %v before the cancel", err)
				default:
				}
				cancel()
				if err := <-done; !errors.Is(err, context.Canceled) {
					t.Errorf("Chain = %v, want context.Canceled", err)
				}
				for name, e := range map[string]*End{"client": client, "server": server} {
					if _, err := e.Read(make([]byte, 1)); !isReset(err) {
						t.Errorf("%s Read: %v, want a reset", name, err)
					}
					e.Close()
				}
			})
		})
	}
}
