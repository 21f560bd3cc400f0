package netstack

import (
	"encoding/binary"
	"hash/crc32"
	"io"
	"runtime"
	"sync/atomic"
	"testing"
	"time"

	"github.com/fwx-dev/fwx/netstack/lab"
)

const (
	// flowTotal is what the flow-control test writes.
	flowTotal = 64 << 20
	// flowChunk is the writer's Write size.
	flowChunk = 256 << 10
	// flowMaxLag bounds the bytes written but not yet read at any time:
	// the sender's send buffer and the receiver's receive buffer (each at
	// most 4 MiB), the packets queued on the links between them (a few
	// MiB), and one chunk. Unbounded buffering would let the writer run
	// the whole 64 MiB ahead.
	flowMaxLag = 16 << 20
)

// TestFlowControl: a reader that stops, then reads slowly, holds the
// writer back; nothing on the path buffers without bound, and every byte
// arrives in order.
func TestFlowControl(t *testing.T) {
	for _, tc := range []struct {
		name        string
		stackWrites bool
	}{
		{"stack writes, client reads", true},
		{"client writes, stack reads", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := newRig(t, Options{Transparent: true, Seed: 1}, rigOpts{quiet: true})
			client := r.addHost(t, "client", clientPrefix, clientGW)
			accepted := make(chan *Conn, 1)
			r.st.HandleTCP(func(req *TCPRequest) {
				c, err := req.Accept()
				if err != nil {
					t.Errorf("Accept: %v", err)
				}
				accepted <- c
			})
			cc, err := client.DialTCP(lab.Context(t, 20*time.Second), farServer)
			if err != nil {
				t.Fatal(err)
			}
			defer cc.Close()
			sc := recv(t, accepted, "accepted conn")
			defer sc.Close()
			var w io.WriteCloser = cc
			var rd io.Reader = sc
			if tc.stackWrites {
				w, rd = sc, cc
			}

			runtime.GC()
			var before runtime.MemStats
			runtime.ReadMemStats(&before)

			var written atomic.Int64
			werr := make(chan error, 1)
			go func() {
				buf := make([]byte, flowChunk)
				for i := range flowTotal / flowChunk {
					n, err := w.Write(chunk(buf, i))
					written.Add(int64(n))
					if err != nil {
						werr <- err
						return
					}
				}
				werr <- w.Close()
			}()

			// Phase 1: nobody reads. The writer must come to a stop.
			stalled := waitStall(t, &written)
			if stalled == 0 || stalled > flowMaxLag {
				t.Fatalf("writer stopped after %d bytes with no reader; want 1..%d", stalled, flowMaxLag)
			}
			runtime.GC()
			var during runtime.MemStats
			runtime.ReadMemStats(&during)
			if grow := int64(during.HeapInuse) - int64(before.HeapInuse); grow > 3*flowMaxLag {
				t.Errorf("heap grew by %d MiB with %d MiB in flight", grow>>20, stalled>>20)
			}
			t.Logf("writer stopped after %.1f MiB; heap %+.1f MiB", float64(stalled)/(1<<20),
				float64(int64(during.HeapInuse)-int64(before.HeapInuse))/(1<<20))

			// Phase 2: read (all of it, or flowRead under -race), pausing
			// now and then; the writer never runs far ahead.
			want := crc32.NewIEEE()
			buf := make([]byte, flowChunk)
			for i := range flowRead / flowChunk {
				want.Write(chunk(buf, i))
			}
			got := crc32.NewIEEE()
			var read, maxLag int64
			rbuf := make([]byte, 32<<10)
			for read < flowRead {
				n, err := rd.Read(rbuf[:min(len(rbuf), int(flowRead-read))])
				got.Write(rbuf[:n])
				read += int64(n)
				maxLag = max(maxLag, written.Load()-read)
				if err != nil {
					t.Fatalf("read after %d bytes: %v", read, err)
				}
				if read%(4<<20) < int64(n) {
					time.Sleep(time.Millisecond) // a slow reader
				}
			}
			if flowRead < flowTotal {
				// Stop the writer: a reset makes its Write fail.
				cc.Close()
				sc.Abort()
				recv(t, werr, "writer")
			} else if err := recv(t, werr, "writer"); err != nil {
				t.Fatalf("writer: %v", err)
			}
			if maxLag > flowMaxLag {
				t.Errorf("writer ran %d MiB ahead of the reader; want at most %d", maxLag>>20, flowMaxLag>>20)
			}
			if got.Sum32() != want.Sum32() {
				t.Errorf("data corrupted: crc32 %08x, want %08x", got.Sum32(), want.Sum32())
			}
			if flowRead == flowTotal {
				if n, err := rd.Read(rbuf); n != 0 || err != io.EOF {
					t.Errorf("read past the end = %d, %v; want 0, EOF", n, err)
				}
			}
		})
	}
}

// chunk fills buf with chunk i of the test stream: a fixed pattern with
// the chunk number at the start, so lost or reordered chunks show.
func chunk(buf []byte, i int) []byte {
	copy(buf, flowPattern)
	binary.BigEndian.PutUint64(buf, uint64(i))
	return buf
}

// flowPattern is the body of every chunk, built once: filling 64 MiB byte
// by byte is slow under the race detector.
var flowPattern = func() []byte {
	b := make([]byte, flowChunk)
	for j := range b {
		b[j] = byte(j % 251)
	}
	return b
}()

// waitStall waits until the counter stops moving (unchanged for 100 ms)
// and returns its value. It fails the test if the counter reaches
// flowTotal: the writer never had to wait.
func waitStall(t *testing.T, n *atomic.Int64) int64 {
	t.Helper()
	last, same := int64(-1), 0
	for same < 10 {
		time.Sleep(10 * time.Millisecond)
		v := n.Load()
		if v >= flowTotal {
			t.Fatalf("writer wrote all %d MiB with nobody reading", flowTotal>>20)
		}
		if v == last {
			same++
		} else {
			last, same = v, 0
		}
	}
	return last
}
