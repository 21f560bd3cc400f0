package stream

import (
	"bytes"
	"io"
	"math/rand/v2"
	"net"
	"sync"
	"syscall"
	"testing"
	"testing/synctest"
	"time"

	"github.com/fwx-dev/fwx/netstack/lab"
)

// TestPipeIntegrity sends random bytes both ways at once, in writes and
// reads of random sizes, and checks that each side receives exactly what
// the other sent, in order, then io.EOF.
func TestPipeIntegrity(t *testing.T) {
	tests := []struct {
		name              string
		size              int
		total             int
		maxWrite, maxRead int
	}{
		{"size 1", 1, 20_000, 13, 7},
		{"odd size", 7, 100_000, 100, 3},
		{"reads larger than size", 100, 200_000, 1000, 5000},
		{"page", 4096, 1 << 20, 10_000, 5000},
		{"default size", 0, 4 << 20, 1 << 17, 1 << 16},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			lab.CheckGoroutines(t)
			rng := rand.New(rand.NewPCG(1, uint64(i)))
			a, b := Pipe(tt.size)
			var wg sync.WaitGroup
			for _, dir := range []struct {
				name string
				w, r *End
			}{{"a→b", a, b}, {"b→a", b, a}} {
				data := make([]byte, tt.total)
				for j := range data {
					data[j] = byte(rng.Uint32())
				}
				wseed, rseed := rng.Uint64(), rng.Uint64()
				wg.Go(func() {
					wr := rand.New(rand.NewPCG(wseed, 0))
					for p := data; len(p) > 0; {
						n := min(1+wr.IntN(tt.maxWrite), len(p))
						if m, err := dir.w.Write(p[:n]); m != n || err != nil {
							t.Errorf("%s: write %d: %d, %v", dir.name, n, m, err)
							return
						}
						p = p[n:]
					}
					if err := dir.w.CloseWrite(); err != nil {
						t.Errorf("%s: CloseWrite: %v", dir.name, err)
					}
				})
				wg.Go(func() {
					rr := rand.New(rand.NewPCG(rseed, 0))
					var got []byte
					buf := make([]byte, tt.maxRead)
					for {
						n, err := dir.r.Read(buf[:1+rr.IntN(tt.maxRead)])
						got = append(got, buf[:n]...)
						if err == io.EOF {
							break
						}
						if err != nil {
							t.Errorf("%s: read: %v", dir.name, err)
							return
						}
					}
					if !bytes.Equal(got, data) {
						t.Errorf("%s: received %d bytes, want %d; first difference at %d",
							dir.name, len(got), len(data), firstDiff(got, data))
					}
				})
			}
			wg.Wait()
			for _, e := range []*End{a, b} {
				if err := e.Close(); err != nil {
					t.Errorf("Close: %v", err)
				}
			}
			if pk := a.out.peak; tt.size > 0 && pk > tt.size {
				t.Errorf("peak buffered %d, size %d", pk, tt.size)
			}
		})
	}
}

func firstDiff(a, b []byte) int {
	for i := range min(len(a), len(b)) {
		if a[i] != b[i] {
			return i
		}
	}
	return min(len(a), len(b))
}

// TestPipeFlowControl writes 10 MiB to a pipe whose reader is slow, and
// checks that the pipe never holds more than its size: the writer waits
// for the reader.
func TestPipeFlowControl(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const size, total, chunk = 64 << 10, 10 << 20, 1 << 20
		a, b := Pipe(size)
		written := make(chan error, 1)
		go func() {
			p := make([]byte, chunk)
			for range total / chunk {
				if _, err := a.Write(p); err != nil {
					written <- err
					return
				}
			}
			written <- a.CloseWrite()
		}()
		buf := make([]byte, 16<<10)
		read, full := 0, 0
		for {
			time.Sleep(time.Millisecond) // a slow reader
			synctest.Wait()              // the writer has written all it can
			switch n := b.Buffered(); {
			case n > size:
				t.Fatalf("%d bytes buffered, more than the size %d", n, size)
			case n == size:
				full++
			}
			n, err := b.Read(buf)
			read += n
			if err == io.EOF {
				break
			}
			if err != nil {
				t.Fatal(err)
			}
		}
		if err := <-written; err != nil {
			t.Fatal(err)
		}
		if read != total {
			t.Errorf("read %d bytes, want %d", read, total)
		}
		if full == 0 {
			t.Error("the writer never filled the pipe: the test did not test flow control")
		}
		if a.out.peak > size {
			t.Errorf("peak buffered %d, size %d", a.out.peak, size)
		}
		a.Close()
		b.Close()
	})
}

// TestPipeWriteBlocks checks that a Write larger than the room left blocks
// with the buffer full, and completes once the reader makes room.
func TestPipeWriteBlocks(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		a, b := Pipe(1000)
		w := goWrite(a, make([]byte, 1500))
		synctest.Wait()
		select {
		case r := <-w:
			t.Fatalf("Write returned %d, %v with the pipe full", r.n, r.err)
		default:
		}
		if n := b.Buffered(); n != 1000 {
			t.Fatalf("Buffered = %d, want 1000", n)
		}
		if n, err := b.Read(make([]byte, 600)); n != 600 || err != nil {
			t.Fatalf("Read = %d, %v", n, err)
		}
		synctest.Wait()
		select {
		case r := <-w:
			if r.n != 1500 || r.err != nil {
				t.Fatalf("Write = %d, %v, want 1500, nil", r.n, r.err)
			}
		default:
			t.Fatal("Write still blocked after the reader made room")
		}
		if n := b.Buffered(); n != 900 {
			t.Errorf("Buffered = %d, want 900", n)
		}
		a.Close()
		b.Close()
	})
}

// TestPipeHalfClose half-closes one direction, checks that the other still
// flows, then half-closes it too; in both orders.
func TestPipeHalfClose(t *testing.T) {
	for _, first := range []string{"a", "b"} {
		t.Run(first+" first", func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				x, y := Pipe(16)
				if first == "b" {
					x, y = y, x
				}
				blocked := goReadAll(y) // woken by CloseWrite
				synctest.Wait()
				mustWrite(t, x, "request")
				if err := x.CloseWrite(); err != nil {
					t.Fatal(err)
				}
				if err := x.CloseWrite(); err != nil {
					t.Errorf("second CloseWrite: %v", err)
				}
				if r := <-blocked; string(r.data) != "request" || r.err != nil {
					t.Fatalf("reader got %q, %v; want request, EOF", r.data, r.err)
				}
				if _, err := y.Read(make([]byte, 1)); err != io.EOF {
					t.Errorf("read after EOF: %v, want io.EOF", err)
				}
				_, err := x.Write([]byte("more"))
				wantErr(t, "write after CloseWrite", err, ErrWriteAfterCloseWrite)
				wantErr(t, "write after CloseWrite", err, syscall.EPIPE)

				// The other direction flows on, beyond the pipe's size.
				resp := bytes.Repeat([]byte("response "), 100)
				got := goReadAll(x)
				if _, err := y.Write(resp); err != nil {
					t.Fatal(err)
				}
				if err := y.CloseWrite(); err != nil {
					t.Fatal(err)
				}
				if r := <-got; !bytes.Equal(r.data, resp) || r.err != nil {
					t.Fatalf("got %d bytes, %v; want %d, EOF", len(r.data), r.err, len(resp))
				}
				for _, e := range []*End{x, y} {
					if err := e.Close(); err != nil {
						t.Errorf("Close: %v", err)
					}
					if e.out.buf != nil || e.in.buf != nil {
						t.Error("buffers not given back after Close")
					}
				}
			})
		})
	}
}

// TestPipeCloseRead checks that CloseRead drops unread bytes, breaks the
// peer's writes with EPIPE and ends local reads, while writing goes on.
func TestPipeCloseRead(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		a, b := Pipe(8)
		mustWrite(t, b, "dropped")
		w := goWrite(b, []byte("0123456789")) // blocks: 7 of 8 bytes used
		synctest.Wait()
		if err := a.CloseRead(); err != nil {
			t.Fatal(err)
		}
		if r := <-w; r.n != 1 || r.err != ErrBrokenPipe {
			t.Errorf("blocked Write = %d, %v; want 1, broken pipe", r.n, r.err)
		}
		_, err := b.Write([]byte("x"))
		wantErr(t, "peer write", err, ErrBrokenPipe)
		if n, err := a.Read(make([]byte, 10)); n != 0 || err != io.EOF {
			t.Errorf("local Read = %d, %v; want 0, EOF", n, err)
		}
		if err := a.CloseRead(); err != nil {
			t.Errorf("second CloseRead: %v", err)
		}
		mustWrite(t, a, "still")
		mustRead(t, b, "still")
		a.Close()
		b.Close()
	})
}

// TestPipeAbort aborts one End in various states and checks that both
// ends' calls, blocked or not, fail with a reset, and unread bytes are
// dropped.
func TestPipeAbort(t *testing.T) {
	tests := []struct {
		name string
		// setup prepares the pipe and returns calls blocked on the peer b,
		// or nil.
		setup func(t *testing.T, a, b *End) []<-chan result
	}{
		{"idle", func(t *testing.T, a, b *End) []<-chan result { return nil }},
		{"bytes buffered both ways", func(t *testing.T, a, b *End) []<-chan result {
			mustWrite(t, a, "to b")
			mustWrite(t, b, "to a")
			return nil
		}},
		{"peer blocked in Read", func(t *testing.T, a, b *End) []<-chan result {
			return []<-chan result{goRead(b, 10)}
		}},
		{"peer blocked in Write", func(t *testing.T, a, b *End) []<-chan result {
			return []<-chan result{goWrite(b, make([]byte, 100))}
		}},
		{"peer blocked in both", func(t *testing.T, a, b *End) []<-chan result {
			return []<-chan result{goRead(b, 10), goWrite(b, make([]byte, 100))}
		}},
		{"after half-close", func(t *testing.T, a, b *End) []<-chan result {
			mustWrite(t, a, "x")
			a.CloseWrite()
			return nil
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				a, b := Pipe(16)
				blocked := tt.setup(t, a, b)
				synctest.Wait()
				if err := a.Abort(); err != nil {
					t.Fatalf("Abort: %v", err)
				}
				for _, c := range blocked {
					if r := <-c; !isReset(r.err) {
						t.Errorf("blocked call on the peer returned %v, want a reset", r.err)
					}
				}
				for _, c := range []struct {
					name string
					e    *End
					want error
				}{{"peer", b, ErrReset}, {"local", a, ErrAborted}} {
					n, err := c.e.Read(make([]byte, 10))
					if n != 0 || err != c.want || !isReset(err) {
						t.Errorf("%s Read = %d, %v; want 0, %v", c.name, n, err, c.want)
					}
					_, err = c.e.Write([]byte("x"))
					if err != c.want {
						t.Errorf("%s Write: %v, want %v", c.name, err, c.want)
					}
					wantErr(t, c.name+" CloseWrite", c.e.CloseWrite(), c.want)
				}
				if err := a.Abort(); err != nil {
					t.Errorf("second Abort: %v", err)
				}
				if err := b.Abort(); err != nil {
					t.Errorf("peer Abort after reset: %v", err)
				}
				if _, err := b.Read(nil); err != ErrReset {
					t.Errorf("peer Read after its own Abort: %v, want ErrReset (the first reset wins)", err)
				}
				for _, e := range []*End{a, b} {
					if err := e.Close(); err != nil {
						t.Errorf("Close after Abort: %v", err)
					}
					if _, err := e.Read(nil); err != ErrClosed {
						t.Errorf("Read after Close: %v, want ErrClosed", err)
					}
				}
			})
		})
	}
}

// TestPipeClose checks Close: the peer reads the bytes already written then
// io.EOF, and its writes fail with EPIPE; every local call, blocked or
// later, returns net.ErrClosed.
func TestPipeClose(t *testing.T) {
	t.Run("peer reads the rest then EOF", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			a, b := Pipe(8)
			mustWrite(t, a, "bye")
			if err := a.Close(); err != nil {
				t.Fatal(err)
			}
			if got, err := readAll(b); string(got) != "bye" || err != nil {
				t.Errorf("peer read %q, %v; want bye, EOF", got, err)
			}
			_, err := b.Write([]byte("x"))
			wantErr(t, "peer Write", err, ErrBrokenPipe)
			wantErr(t, "peer Write", err, syscall.EPIPE)
			b.Close()
		})
	})
	t.Run("blocked local calls", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			a, b := Pipe(8)
			read, write := goRead(a, 10), goWrite(a, make([]byte, 20))
			synctest.Wait()
			if err := a.Close(); err != nil {
				t.Fatal(err)
			}
			if r := <-read; r.err != ErrClosed {
				t.Errorf("blocked Read: %v, want ErrClosed", r.err)
			}
			if r := <-write; r.n != 8 || r.err != ErrClosed {
				t.Errorf("blocked Write = %d, %v; want 8, ErrClosed", r.n, r.err)
			}
			if got, err := readAll(b); len(got) != 8 || err != nil {
				t.Errorf("peer read %d bytes, %v; want the 8 written before Close, EOF", len(got), err)
			}
			b.Close()
		})
	})
	t.Run("blocked peer calls", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			a, b := Pipe(8)
			read, write := goRead(b, 10), goWrite(b, make([]byte, 20))
			synctest.Wait()
			if err := a.Close(); err != nil {
				t.Fatal(err)
			}
			if r := <-read; r.err != io.EOF {
				t.Errorf("blocked peer Read: %v, want EOF", r.err)
			}
			if r := <-write; r.n != 8 || r.err != ErrBrokenPipe {
				t.Errorf("blocked peer Write = %d, %v; want 8, ErrBrokenPipe", r.n, r.err)
			}
			b.Close()
		})
	})
	t.Run("later calls", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			a, b := Pipe(8)
			a.Close()
			calls := []struct {
				name string
				call func() error
			}{
				{"Read", func() error { _, err := a.Read(make([]byte, 1)); return err }},
				{"Write", func() error { _, err := a.Write([]byte("x")); return err }},
				{"CloseWrite", a.CloseWrite},
				{"CloseRead", a.CloseRead},
				{"Abort", a.Abort},
				{"Close", a.Close},
			}
			for _, c := range calls {
				wantErr(t, c.name, c.call(), net.ErrClosed)
			}
			if n, err := a.Write(nil); n != 0 || err != nil {
				t.Errorf("Write(nil) = %d, %v; want a no-op", n, err)
			}
			// The peer's Abort after Close changes nothing locally.
			b.Abort()
			wantErr(t, "Read after peer Abort", calls[0].call(), net.ErrClosed)
			b.Close()
		})
	})
}

// TestPipeZeroLength checks that empty reads and writes neither block nor
// consume anything.
func TestPipeZeroLength(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		a, b := Pipe(8)
		if n, err := b.Read(nil); n != 0 || err != nil {
			t.Errorf("Read(nil) on an empty pipe = %d, %v", n, err)
		}
		if n, err := a.Write(nil); n != 0 || err != nil {
			t.Errorf("Write(nil) = %d, %v", n, err)
		}
		mustWrite(t, a, "abc")
		if n, err := b.Read([]byte{}); n != 0 || err != nil {
			t.Errorf("Read([]byte{}) = %d, %v", n, err)
		}
		mustRead(t, b, "abc")
		a.Close()
		b.Close()
	})
}

// TestPipeGrowth checks that a ring buffer holding wrapped-around bytes
// keeps them in order when it grows, and that it grows no further than the
// pipe's size calls for.
func TestPipeGrowth(t *testing.T) {
	a, b := Pipe(3000)
	mustWrite(t, a, string(bytes.Repeat([]byte("a"), 400)))
	if n := len(*a.out.buf); n != 1<<minBufClass {
		t.Fatalf("first buffer %d bytes, want %d", n, 1<<minBufClass)
	}
	mustRead(t, b, string(bytes.Repeat([]byte("a"), 300)))
	mustWrite(t, a, string(bytes.Repeat([]byte("b"), 300))) // wraps around
	if a.out.r+a.out.n <= len(*a.out.buf) {
		t.Fatal("the bytes did not wrap around: the test tests nothing")
	}
	mustWrite(t, a, string(bytes.Repeat([]byte("c"), 2600))) // grows, 3000 buffered
	if n := len(*a.out.buf); n != 4096 {
		t.Errorf("buffer grew to %d bytes, want 4096", n)
	}
	want := string(bytes.Repeat([]byte("a"), 100)) + string(bytes.Repeat([]byte("b"), 300)) +
		string(bytes.Repeat([]byte("c"), 2600))
	mustRead(t, b, want)
	a.Close()
	b.Close()
}

// TestPipeNoAllocs checks that Write and Read allocate nothing once the
// buffer has grown.
func TestPipeNoAllocs(t *testing.T) {
	a, b := Pipe(4096)
	defer a.Close()
	defer b.Close()
	a.SetReadDeadline(time.Now().Add(time.Hour)) // deadlines cost nothing per call either
	p, q := make([]byte, 3000), make([]byte, 3000)
	step := func() {
		if _, err := a.Write(p); err != nil {
			t.Fatal(err)
		}
		if _, err := b.Read(q); err != nil {
			t.Fatal(err)
		}
	}
	step() // warm-up: the buffer grows
	if n := testing.AllocsPerRun(1000, step); n != 0 {
		t.Errorf("%v allocations per Write and Read, want 0", n)
	}
}
