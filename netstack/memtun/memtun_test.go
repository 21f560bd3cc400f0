package memtun_test

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"sync"
	"testing"
	"time"

	"golang.zx2c4.com/wireguard/tun"

	"github.com/fwx-dev/fwx/netstack/lab"
	"github.com/fwx-dev/fwx/netstack/memtun"
)

// pkt returns a distinct test packet of n bytes whose bytes are all id.
func pkt(id byte, n int) []byte { return bytes.Repeat([]byte{id}, n) }

// newTestDevice returns a Device closed at the end of the test, after
// checking that no goroutine it started (there are none) or the test
// started is left behind.
func newTestDevice(tb testing.TB) *memtun.Device {
	tb.Helper()
	lab.CheckGoroutines(tb)
	d := memtun.New("test0", 1500)
	tb.Cleanup(func() { d.Close() })
	return d
}

func makeBufs(n, size int) ([][]byte, []int) {
	bufs := make([][]byte, n)
	for i := range bufs {
		bufs[i] = make([]byte, size)
	}
	return bufs, make([]int, n)
}

func TestReadBatch(t *testing.T) {
	tests := []struct {
		name     string
		injected int // packets queued before Read
		bufs     int // len(bufs)
		want     int // packets returned
	}{
		{"one into one", 1, 1, 1},
		{"one into many", 1, 8, 1},
		{"many into fewer", 10, 4, 4},
		{"exactly fits", 8, 8, 8},
		{"full queue into batch", memtun.QueueLen, memtun.BatchSize, memtun.BatchSize},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := newTestDevice(t)
			for i := range tt.injected {
				if err := d.Inject(pkt(byte(i), 20+i%40)); err != nil {
					t.Fatalf("Inject %d: %v", i, err)
				}
			}
			bufs, sizes := makeBufs(tt.bufs, 100)
			n, err := d.Read(bufs, sizes, 0)
			if err != nil || n != tt.want {
				t.Fatalf("Read = %d, %v; want %d, nil", n, err, tt.want)
			}
			for i := range n {
				if want := pkt(byte(i), 20+i%40); !bytes.Equal(bufs[i][:sizes[i]], want) {
					t.Errorf("packet %d = %x, want %x", i, bufs[i][:sizes[i]], want)
				}
			}
			if got, want := d.Pending(), tt.injected-tt.want; got != want {
				t.Errorf("Pending = %d, want %d", got, want)
			}
		})
	}
}

func TestReadOffset(t *testing.T) {
	const offset = 16
	d := newTestDevice(t)
	for _, p := range [][]byte{pkt(1, 10), pkt(2, 84)} {
		if err := d.Inject(p); err != nil {
			t.Fatal(err)
		}
	}
	bufs, sizes := makeBufs(2, offset+84)
	for _, b := range bufs {
		copy(b, pkt(0xee, offset)) // headroom must be left alone
	}
	n, err := d.Read(bufs, sizes, offset)
	if err != nil || n != 2 {
		t.Fatalf("Read = %d, %v; want 2, nil", n, err)
	}
	for i, want := range [][]byte{pkt(1, 10), pkt(2, 84)} {
		if sizes[i] != len(want) {
			t.Errorf("sizes[%d] = %d, want %d", i, sizes[i], len(want))
		}
		if got := bufs[i][offset : offset+sizes[i]]; !bytes.Equal(got, want) {
			t.Errorf("packet %d at offset = %x, want %x", i, got, want)
		}
		if got := bufs[i][:offset]; !bytes.Equal(got, pkt(0xee, offset)) {
			t.Errorf("headroom %d overwritten: %x", i, got)
		}
	}
}

func TestReadShortBuffer(t *testing.T) {
	t.Run("first packet too big", func(t *testing.T) {
		d := newTestDevice(t)
		d.Inject(pkt(1, 100))
		d.Inject(pkt(2, 10))
		bufs, sizes := makeBufs(2, 50)
		n, err := d.Read(bufs, sizes, 0)
		if n != 0 || !errors.Is(err, io.ErrShortBuffer) {
			t.Fatalf("Read = %d, %v; want 0, ErrShortBuffer", n, err)
		}
		// The oversized packet is gone; the next one is still there.
		n, err = d.Read(bufs, sizes, 0)
		if n != 1 || err != nil || !bytes.Equal(bufs[0][:sizes[0]], pkt(2, 10)) {
			t.Fatalf("second Read = %d, %v, %x; want packet 2", n, err, bufs[0][:sizes[0]])
		}
	})
	t.Run("later packet too big", func(t *testing.T) {
		d := newTestDevice(t)
		d.Inject(pkt(1, 10))
		d.Inject(pkt(2, 100))
		bufs, sizes := makeBufs(2, 50)
		n, err := d.Read(bufs, sizes, 0)
		if n != 1 || err != nil {
			t.Fatalf("Read = %d, %v; want 1, nil", n, err)
		}
		n, err = d.Read(bufs, sizes, 0)
		if n != 0 || !errors.Is(err, io.ErrShortBuffer) {
			t.Fatalf("second Read = %d, %v; want 0, ErrShortBuffer", n, err)
		}
	})
	t.Run("offset eats the buffer", func(t *testing.T) {
		d := newTestDevice(t)
		d.Inject(pkt(1, 40))
		bufs, sizes := makeBufs(1, 50)
		if _, err := d.Read(bufs, sizes, 20); !errors.Is(err, io.ErrShortBuffer) {
			t.Fatalf("Read = %v; want ErrShortBuffer", err)
		}
	})
	t.Run("sizes too short", func(t *testing.T) {
		d := newTestDevice(t)
		d.Inject(pkt(1, 40))
		bufs, _ := makeBufs(2, 50)
		if _, err := d.Read(bufs, make([]int, 1), 0); err == nil {
			t.Fatal("Read with len(sizes) < len(bufs) succeeded")
		}
		if d.Pending() != 1 {
			t.Error("failed Read consumed a packet")
		}
	})
}

func TestInjectCopies(t *testing.T) {
	d := newTestDevice(t)
	p := pkt(7, 30)
	d.Inject(p)
	p[0] = 0 // the caller may reuse its buffer at once
	bufs, sizes := makeBufs(1, 100)
	if _, err := d.Read(bufs, sizes, 0); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(bufs[0][:sizes[0]], pkt(7, 30)) {
		t.Errorf("Read returned %x; Inject did not copy", bufs[0][:sizes[0]])
	}
}

func TestInjectRejects(t *testing.T) {
	d := newTestDevice(t)
	for _, p := range [][]byte{nil, {}, make([]byte, memtun.MaxPacket+1)} {
		if err := d.Inject(p); err == nil {
			t.Errorf("Inject(%d bytes) succeeded", len(p))
		}
	}
	if d.Pending() != 0 {
		t.Errorf("Pending = %d after rejected injections", d.Pending())
	}
}

func TestWrite(t *testing.T) {
	tests := []struct {
		name    string
		offset  int
		bufs    [][]byte
		want    [][]byte
		wantN   int
		wantErr bool
	}{
		{"no offset", 0, [][]byte{pkt(1, 5), pkt(2, 7)}, [][]byte{pkt(1, 5), pkt(2, 7)}, 2, false},
		{"offset", 3, [][]byte{pkt(1, 8), pkt(2, 10)}, [][]byte{pkt(1, 5), pkt(2, 7)}, 2, false},
		{"offset equals length", 4, [][]byte{pkt(1, 4)}, [][]byte{{}}, 1, false},
		{"offset beyond second", 5, [][]byte{pkt(1, 8), pkt(2, 4)}, [][]byte{pkt(1, 3)}, 1, true},
		{"negative offset", -1, [][]byte{pkt(1, 8)}, nil, 0, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := newTestDevice(t)
			var got [][]byte
			d.SetOutput(func(p []byte) { got = append(got, slices.Clone(p)) })
			n, err := d.Write(tt.bufs, tt.offset)
			if n != tt.wantN || (err != nil) != tt.wantErr {
				t.Fatalf("Write = %d, %v; want %d, error %v", n, err, tt.wantN, tt.wantErr)
			}
			if len(got) != len(tt.want) {
				t.Fatalf("output got %d packets, want %d", len(got), len(tt.want))
			}
			for i := range got {
				if !bytes.Equal(got[i], tt.want[i]) {
					t.Errorf("output %d = %x, want %x", i, got[i], tt.want[i])
				}
			}
		})
	}
}

func TestWriteWithoutOutput(t *testing.T) {
	d := newTestDevice(t)
	if n, err := d.Write([][]byte{pkt(1, 5)}, 0); n != 1 || err != nil {
		t.Fatalf("Write = %d, %v; want 1, nil", n, err)
	}
	var calls int
	d.SetOutput(func([]byte) { calls++ })
	d.SetOutput(nil)
	d.Write([][]byte{pkt(1, 5)}, 0)
	if calls != 0 {
		t.Errorf("output called %d times after SetOutput(nil)", calls)
	}
}

func TestEvents(t *testing.T) {
	d := newTestDevice(t)
	if ev := <-d.Events(); ev != tun.EventUp {
		t.Fatalf("first event = %v, want EventUp", ev)
	}
	select {
	case ev := <-d.Events():
		t.Fatalf("second event %v before Close", ev)
	default:
	}
	d.Close()
	if ev, ok := <-d.Events(); ok {
		t.Fatalf("event %v after Close; want closed channel", ev)
	}
}

func TestClose(t *testing.T) {
	t.Run("unblocks Read", func(t *testing.T) {
		d := newTestDevice(t)
		errc := make(chan error)
		go func() {
			bufs, sizes := makeBufs(4, 100)
			_, err := d.Read(bufs, sizes, 0)
			errc <- err
		}()
		d.Close()
		if err := <-errc; !errors.Is(err, os.ErrClosed) {
			t.Fatalf("blocked Read returned %v, want os.ErrClosed", err)
		}
	})
	t.Run("unblocks Inject on a full queue", func(t *testing.T) {
		d := newTestDevice(t)
		for i := range memtun.QueueLen {
			if err := d.Inject(pkt(byte(i), 1)); err != nil {
				t.Fatal(err)
			}
		}
		errc := make(chan error)
		go func() { errc <- d.Inject(pkt(0, 1)) }()
		d.Close()
		if err := <-errc; !errors.Is(err, os.ErrClosed) {
			t.Fatalf("blocked Inject returned %v, want os.ErrClosed", err)
		}
	})
	t.Run("everything fails afterwards", func(t *testing.T) {
		d := newTestDevice(t)
		d.Inject(pkt(1, 10)) // discarded by Close
		for range 2 {
			if err := d.Close(); err != nil {
				t.Fatalf("Close = %v", err)
			}
		}
		bufs, sizes := makeBufs(1, 100)
		if _, err := d.Read(bufs, sizes, 0); !errors.Is(err, os.ErrClosed) {
			t.Errorf("Read after Close = %v", err)
		}
		if _, err := d.Write(bufs, 0); !errors.Is(err, os.ErrClosed) {
			t.Errorf("Write after Close = %v", err)
		}
		if err := d.Inject(pkt(1, 10)); !errors.Is(err, os.ErrClosed) {
			t.Errorf("Inject after Close = %v", err)
		}
		if d.Pending() != 0 {
			t.Errorf("Pending = %d after Close", d.Pending())
		}
	})
}

// TestInjectWaitsWhenFull checks that a full queue makes Inject wait
// rather than drop, and that one Read lets it continue.
func TestInjectWaitsWhenFull(t *testing.T) {
	d := newTestDevice(t)
	for i := range memtun.QueueLen {
		d.Inject(pkt(byte(i), 1))
	}
	done := make(chan error)
	go func() { done <- d.Inject(pkt(0xff, 1)) }()
	select {
	case err := <-done:
		t.Fatalf("Inject into a full queue returned %v without waiting", err)
	case <-time.After(20 * time.Millisecond):
	}
	bufs, sizes := makeBufs(1, 10)
	if n, err := d.Read(bufs, sizes, 0); n != 1 || err != nil {
		t.Fatalf("Read = %d, %v", n, err)
	}
	if err := <-done; err != nil {
		t.Fatalf("Inject after Read = %v", err)
	}
	if d.Pending() != memtun.QueueLen {
		t.Errorf("Pending = %d, want %d", d.Pending(), memtun.QueueLen)
	}
}

// TestConcurrent runs injectors against one batch reader: every packet
// arrives exactly once and each injector's packets stay in order.
func TestConcurrent(t *testing.T) {
	const injectors, perInjector = 4, 3000
	d := newTestDevice(t)
	var wg sync.WaitGroup
	for w := range injectors {
		wg.Go(func() {
			for i := range perInjector {
				p := []byte(fmt.Sprintf("%d:%d", w, i))
				if err := d.Inject(p); err != nil {
					t.Errorf("Inject: %v", err)
					return
				}
			}
		})
	}
	next := make([]int, injectors)
	bufs, sizes := makeBufs(memtun.BatchSize, 64)
	for total := 0; total < injectors*perInjector; {
		n, err := d.Read(bufs, sizes, 4)
		if err != nil {
			t.Fatal(err)
		}
		for i := range n {
			var w, seq int
			if _, err := fmt.Sscanf(string(bufs[i][4:4+sizes[i]]), "%d:%d", &w, &seq); err != nil {
				t.Fatalf("bad packet %q", bufs[i][4:4+sizes[i]])
			}
			if seq != next[w] {
				t.Fatalf("injector %d: got seq %d, want %d", w, seq, next[w])
			}
			next[w]++
		}
		total += n
	}
	wg.Wait()
}

func TestNoAllocs(t *testing.T) {
	d := newTestDevice(t)
	var sink int
	d.SetOutput(func(p []byte) { sink += len(p) })
	out := [][]byte{pkt(1, 1400), pkt(2, 60)}
	bufs, sizes := makeBufs(memtun.BatchSize, 1500)
	in := pkt(3, 1400)
	tests := []struct {
		name string
		f    func()
	}{
		{"Write", func() { d.Write(out, 0) }},
		{"Inject+Read", func() {
			d.Inject(in)
			d.Inject(in)
			d.Read(bufs, sizes, 0)
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.f() // warm the pool
			if n := testing.AllocsPerRun(1000, tt.f); n != 0 {
				t.Errorf("%s allocates %v times per run", tt.name, n)
			}
		})
	}
}

func TestAccessors(t *testing.T) {
	d := memtun.New("int0", 0)
	defer d.Close()
	name, _ := d.Name()
	mtu, _ := d.MTU()
	if name != "int0" || mtu != 1500 || d.File() != nil || d.BatchSize() != memtun.BatchSize {
		t.Errorf("Name, MTU, File, BatchSize = %q, %d, %v, %d", name, mtu, d.File(), d.BatchSize())
	}
	// The MTU is advisory: a TUN with offloads hands over bigger packets.
	if err := d.Inject(pkt(1, 9000)); err != nil {
		t.Errorf("Inject of a packet above the MTU = %v", err)
	}
}

func BenchmarkWrite(b *testing.B) {
	for _, size := range []int{64, 1400} {
		b.Run(fmt.Sprintf("%dB", size), func(b *testing.B) {
			d := memtun.New("bench0", 1500)
			defer d.Close()
			var sink int
			d.SetOutput(func(p []byte) { sink += len(p) })
			bufs := make([][]byte, memtun.BatchSize)
			for i := range bufs {
				bufs[i] = make([]byte, 16+size)
			}
			b.SetBytes(int64(size * memtun.BatchSize))
			b.ReportAllocs()
			for b.Loop() {
				if _, err := d.Write(bufs, 16); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.N*memtun.BatchSize)/b.Elapsed().Seconds(), "pkts/s")
		})
	}
}

func BenchmarkInjectRead(b *testing.B) {
	d := memtun.New("bench0", 1500)
	defer d.Close()
	in := pkt(1, 1400)
	bufs, sizes := makeBufs(memtun.BatchSize, 1500)
	b.SetBytes(int64(len(in) * memtun.BatchSize))
	b.ReportAllocs()
	for b.Loop() {
		for range memtun.BatchSize {
			d.Inject(in)
		}
		if n, err := d.Read(bufs, sizes, 0); n != memtun.BatchSize || err != nil {
			b.Fatalf("Read = %d, %v", n, err)
		}
	}
}
