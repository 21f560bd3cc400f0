package memtun_test

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"sync"
	"testing"
	"time"

	"golang.zx2c4.com/wireguard/tun"

	"github.com/fwx-dev/fwx/netstack/lab"
	"github.com/fwx-dev/fwx/netstack/memtun"
)

// newTestPair returns a pair closed at the end of the test, which fails if
// a goroutine it started is left behind.
func newTestPair(tb testing.TB) (*memtun.End, *memtun.End) {
	tb.Helper()
	lab.CheckGoroutines(tb)
	a, b := memtun.NewPair("a0", "b0", 1420)
	tb.Cleanup(func() { a.Close() })
	return a, b
}

// withOffset returns pkts each behind offset bytes of 0xee.
func withOffset(offset int, pkts ...[]byte) [][]byte {
	out := make([][]byte, len(pkts))
	for i, p := range pkts {
		out[i] = append(bytes.Repeat([]byte{0xee}, offset), p...)
	}
	return out
}

func TestPairBothWays(t *testing.T) {
	a, b := newTestPair(t)
	for _, dir := range []struct {
		name     string
		from, to *memtun.End
	}{{"a to b", a, b}, {"b to a", b, a}} {
		t.Run(dir.name, func(t *testing.T) {
			want := [][]byte{pkt(1, 20), pkt(2, 1420), pkt(3, 9000)} // above the MTU too
			if n, err := dir.from.Write(withOffset(16, want...), 16); n != 3 || err != nil {
				t.Fatalf("Write = %d, %v; want 3, nil", n, err)
			}
			bufs, sizes := makeBufs(4, 4+9000)
			n, err := dir.to.Read(bufs, sizes, 4)
			if n != 3 || err != nil {
				t.Fatalf("Read = %d, %v; want 3, nil", n, err)
			}
			for i := range n {
				if got := bufs[i][4 : 4+sizes[i]]; !bytes.Equal(got, want[i]) {
					t.Errorf("packet %d: got %d bytes %x..., want %d bytes of %d", i, sizes[i], got[:4], len(want[i]), want[i][0])
				}
			}
			if dir.from.Queued() != 0 {
				t.Errorf("a packet came back to the writer's own end")
			}
		})
	}
}

// TestPairBatches checks that batches need not match: a reader with few
// buffers takes a big batch in pieces, a reader with many takes several
// batches at once, and order holds throughout.
func TestPairBatches(t *testing.T) {
	tests := []struct {
		name    string
		writes  []int // packets per Write
		readLen int   // len(bufs) per Read
		reads   []int // packets each Read returns
	}{
		{"big batch, small reads", []int{10}, 4, []int{4, 4, 2}},
		{"small batches, one read", []int{3, 3, 3}, 16, []int{9}},
		{"one at a time", []int{1, 1}, 1, []int{1, 1}},
		{"full queue", []int{memtun.QueueLen}, memtun.BatchSize, []int{memtun.BatchSize, memtun.BatchSize, memtun.BatchSize, memtun.BatchSize, memtun.BatchSize, memtun.BatchSize, memtun.BatchSize, memtun.BatchSize}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a, b := newTestPair(t)
			seq := 0
			for _, w := range tt.writes {
				var pkts [][]byte
				for range w {
					pkts = append(pkts, pkt(byte(seq), 40+seq%7))
					seq++
				}
				if n, err := a.Write(pkts, 0); n != w || err != nil {
					t.Fatalf("Write = %d, %v", n, err)
				}
			}
			next := 0
			bufs, sizes := makeBufs(tt.readLen, 100)
			for i, want := range tt.reads {
				n, err := b.Read(bufs, sizes, 0)
				if n != want || err != nil {
					t.Fatalf("Read %d = %d, %v; want %d, nil", i, n, err, want)
				}
				for j := range n {
					if !bytes.Equal(bufs[j][:sizes[j]], pkt(byte(next), 40+next%7)) {
						t.Fatalf("Read %d packet %d is not packet %d", i, j, next)
					}
					next++
				}
			}
			if b.Queued() != 0 {
				t.Errorf("%d packets left", b.Queued())
			}
		})
	}
}

func TestPairWriteRejects(t *testing.T) {
	tests := []struct {
		name   string
		bufs   [][]byte
		offset int
	}{
		{"empty packet", [][]byte{pkt(1, 20), {}}, 0},
		{"only headroom", [][]byte{pkt(1, 20), pkt(2, 16)}, 16},
		{"offset beyond packet", [][]byte{pkt(1, 20), pkt(2, 8)}, 16},
		{"negative offset", [][]byte{pkt(1, 20)}, -1},
		{"too big", [][]byte{pkt(1, 20), make([]byte, memtun.MaxPacket+1)}, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a, b := newTestPair(t)
			if n, err := a.Write(tt.bufs, tt.offset); n != 0 || err == nil {
				t.Fatalf("Write = %d, %v; want 0 and an error", n, err)
			}
			if b.Queued() != 0 {
				t.Errorf("a rejected batch queued %d packets", b.Queued())
			}
		})
	}
}

func TestPairShortBuffer(t *testing.T) {
	a, b := newTestPair(t)
	a.Write([][]byte{pkt(1, 100), pkt(2, 10)}, 0)
	bufs, sizes := makeBufs(2, 50)
	if n, err := b.Read(bufs, sizes, 0); n != 0 || !errors.Is(err, io.ErrShortBuffer) {
		t.Fatalf("Read = %d, %v; want 0, io.ErrShortBuffer", n, err)
	}
	if n, err := b.Read(bufs, sizes, 0); n != 1 || err != nil || !bytes.Equal(bufs[0][:sizes[0]], pkt(2, 10)) {
		t.Fatalf("second Read = %d, %v; want packet 2", n, err)
	}
}

// TestPairWriteWaits checks that a Write into a full queue waits for the
// reader rather than dropping, and finishes once the reader has made room.
func TestPairWriteWaits(t *testing.T) {
	a, b := newTestPair(t)
	full := make([][]byte, memtun.QueueLen)
	for i := range full {
		full[i] = pkt(byte(i), 1)
	}
	if n, err := a.Write(full, 0); n != memtun.QueueLen || err != nil {
		t.Fatalf("Write = %d, %v", n, err)
	}
	done := make(chan error)
	go func() {
		_, err := a.Write([][]byte{pkt(0xfe, 1), pkt(0xff, 1)}, 0)
		done <- err
	}()
	select {
	case err := <-done:
		t.Fatalf("Write into a full queue returned %v without waiting", err)
	case <-time.After(20 * time.Millisecond):
	}
	bufs, sizes := makeBufs(2, 10)
	if n, err := b.Read(bufs, sizes, 0); n != 2 || err != nil {
		t.Fatalf("Read = %d, %v", n, err)
	}
	if err := <-done; err != nil {
		t.Fatalf("Write after Read = %v", err)
	}
	if got := b.Queued(); got != memtun.QueueLen {
		t.Errorf("queued = %d, want %d", got, memtun.QueueLen)
	}
}

// TestPairClose checks that closing either end closes both: waiting Reads
// and Writes on both ends return os.ErrClosed, and both Events channels
// close.
func TestPairClose(t *testing.T) {
	for _, closer := range []int{0, 1} {
		t.Run(fmt.Sprintf("close end %d", closer), func(t *testing.T) {
			a, b := newTestPair(t)
			ends := []*memtun.End{a, b}
			for _, e := range ends {
				if ev := <-e.Events(); ev != tun.EventUp {
					t.Fatalf("first event = %v, want EventUp", ev)
				}
			}
			// b's Write waits on a full queue; a's Read waits on an empty one.
			full := make([][]byte, memtun.QueueLen)
			for i := range full {
				full[i] = pkt(1, 1)
			}
			b.Write(full, 0)
			errc := make(chan error, 2)
			go func() {
				_, err := b.Write([][]byte{pkt(2, 1)}, 0)
				errc <- err
			}()
			go func() {
				bufs, sizes := makeBufs(1, 10)
				_, err := b.Read(bufs, sizes, 0)
				errc <- err
			}()
			time.Sleep(10 * time.Millisecond)
			ends[closer].Close()
			ends[1-closer].Close() // idempotent
			for range 2 {
				if err := <-errc; !errors.Is(err, os.ErrClosed) {
					t.Errorf("waiting call returned %v, want os.ErrClosed", err)
				}
			}
			bufs, sizes := makeBufs(1, 10)
			for i, e := range ends {
				if _, err := e.Read(bufs, sizes, 0); !errors.Is(err, os.ErrClosed) {
					t.Errorf("end %d Read after Close = %v", i, err)
				}
				if _, err := e.Write([][]byte{pkt(1, 1)}, 0); !errors.Is(err, os.ErrClosed) {
					t.Errorf("end %d Write after Close = %v", i, err)
				}
				if ev, ok := <-e.Events(); ok {
					t.Errorf("end %d: event %v after Close, want a closed channel", i, ev)
				}
			}
		})
	}
}

// TestPairConcurrent runs a writer on each end against a reader on the
// other: every packet arrives once, in order.
func TestPairConcurrent(t *testing.T) {
	const batches, batch = 200, 37
	a, b := newTestPair(t)
	var wg sync.WaitGroup
	for _, e := range []struct{ from, to *memtun.End }{{a, b}, {b, a}} {
		wg.Go(func() {
			pkts := make([][]byte, batch)
			for i := range batches {
				for j := range pkts {
					pkts[j] = fmt.Appendf(pkts[j][:0], "%d", i*batch+j)
				}
				if _, err := e.from.Write(pkts, 0); err != nil {
					t.Errorf("Write: %v", err)
					return
				}
			}
		})
		wg.Go(func() {
			bufs, sizes := makeBufs(memtun.BatchSize, 16)
			for next := 0; next < batches*batch; {
				n, err := e.to.Read(bufs, sizes, 0)
				if err != nil {
					t.Errorf("Read: %v", err)
					return
				}
				for i := range n {
					if got, want := string(bufs[i][:sizes[i]]), fmt.Sprint(next); got != want {
						t.Errorf("got packet %s, want %s", got, want)
						return
					}
					next++
				}
			}
		})
	}
	wg.Wait()
}

func TestPairNoAllocs(t *testing.T) {
	a, b := newTestPair(t)
	out := withOffset(16, pkt(1, 1400), pkt(2, 60), pkt(3, 1420))
	bufs, sizes := makeBufs(memtun.BatchSize, 16+1500)
	roundTrip := func() {
		a.Write(out, 16)
		b.Read(bufs, sizes, 16)
		b.Write(out, 16)
		a.Read(bufs, sizes, 16)
	}
	roundTrip() // the queues take their buffers
	if n := testing.AllocsPerRun(1000, roundTrip); n != 0 {
		t.Errorf("Write+Read both ways allocates %v times per run", n)
	}
}

func TestPairAccessors(t *testing.T) {
	a, b := memtun.NewPair("wg0", "fwx0", 0)
	defer a.Close()
	for _, tt := range []struct {
		e    *memtun.End
		name string
	}{{a, "wg0"}, {b, "fwx0"}} {
		name, _ := tt.e.Name()
		mtu, _ := tt.e.MTU()
		if name != tt.name || mtu != 1500 || tt.e.File() != nil || tt.e.BatchSize() != memtun.BatchSize {
			t.Errorf("Name, MTU, File, BatchSize = %q, %d, %v, %d", name, mtu, tt.e.File(), tt.e.BatchSize())
		}
	}
}

// BenchmarkPair measures one direction of a pair in the steady state: a
// writer goroutine sends batches of BatchSize packets that a reader
// goroutine takes in batches, as a VPN's TUN reader and fwx do.
func BenchmarkPair(b *testing.B) {
	for _, size := range []int{64, 1420} {
		b.Run(fmt.Sprintf("%dB", size), func(b *testing.B) {
			w, r := memtun.NewPair("w", "r", 1500)
			pkts := make([][]byte, memtun.BatchSize)
			for i := range pkts {
				pkts[i] = make([]byte, 16+size)
			}
			// Fill the queue once, so that its buffers exist before
			// the clock starts: a writer that outpaces the reader
			// takes the queue to its full depth.
			for range memtun.QueueLen / memtun.BatchSize {
				w.Write(pkts, 16)
			}
			done := make(chan struct{})
			go func() {
				defer close(done)
				bufs, sizes := makeBufs(memtun.BatchSize, 16+size)
				for {
					if _, err := r.Read(bufs, sizes, 16); err != nil {
						return
					}
				}
			}()
			b.SetBytes(int64(size * memtun.BatchSize))
			b.ReportAllocs()
			for b.Loop() {
				if _, err := w.Write(pkts, 16); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.N*memtun.BatchSize)/b.Elapsed().Seconds(), "pkts/s")
			w.Close()
			<-done
		})
	}
}
