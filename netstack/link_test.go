package netstack

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"net/netip"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/rs/zerolog"
	"gvisor.dev/gvisor/pkg/buffer"
	"gvisor.dev/gvisor/pkg/refs"
	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/header"
	"gvisor.dev/gvisor/pkg/tcpip/stack"

	"github.com/fwx-dev/fwx/netstack/lab"
)

// recorder is an Output function that can be held back, and records the
// packets it receives (without the headroom) and its batch sizes.
type recorder struct {
	offset  int
	release chan struct{} // Output waits for it to be closed

	mu      sync.Mutex
	pkts    [][]byte
	batches []int
}

func (r *recorder) output(pkts [][]byte) error {
	<-r.release
	r.mu.Lock()
	defer r.mu.Unlock()
	r.batches = append(r.batches, len(pkts))
	for _, p := range pkts {
		r.pkts = append(r.pkts, append([]byte(nil), p[r.offset:]...))
	}
	return nil
}

// numbered returns a packet buffer holding a 4-byte sequence number.
func numbered(i int) *stack.PacketBuffer {
	b := binary.BigEndian.AppendUint32(nil, uint32(i))
	return stack.NewPacketBuffer(stack.PacketBufferOptions{Payload: buffer.MakeWithData(b)})
}

// writeOne writes pkt through l as gVisor's NIC does: the caller keeps
// its own reference.
func writeOne(l *link, pkt *stack.PacketBuffer) tcpip.Error {
	var list stack.PacketBufferList
	list.PushBack(pkt)
	_, err := l.WritePackets(list)
	return err
}

// TestLinkBlocksNeverDrops: while Output is held back the writer blocks
// once the queue is full, and when Output resumes every packet comes out
// once, in order, in batches of at most 128, with the headroom asked for;
// the link keeps no reference to a packet it has passed on.
func TestLinkBlocksNeverDrops(t *testing.T) {
	lab.CheckGoroutines(t)
	const offset = 10
	rec := &recorder{offset: offset, release: make(chan struct{})}
	l := newLink(1500, offset, false, rec.output, nil, zerolog.Nop())

	const total = outQueueLen + 2*outBatch
	var written atomic.Int64
	done := make(chan []*stack.PacketBuffer)
	go func() {
		var pkts []*stack.PacketBuffer
		for i := range total {
			p := numbered(i)
			if err := writeOne(l, p); err != nil {
				t.Errorf("WritePackets %d: %v", i, err)
			}
			pkts = append(pkts, p)
			written.Add(1)
		}
		done <- pkts
	}()

	// At most a queue and a batch fit while Output is stuck: the writer
	// must then be waiting, not dropping.
	waitFor(t, "the writer to fill the queue", func() bool { return written.Load() >= outQueueLen })
	limit := int64(outQueueLen + outBatch + 1)
	if n := written.Load(); n > limit {
		t.Fatalf("writer got %d packets in with Output stuck; want at most %d", n, limit)
	}
	select {
	case <-done:
		t.Fatal("writer finished while Output was stuck")
	default:
	}

	close(rec.release)
	pkts := recv(t, done, "writer")
	l.shutdown()
	l.wait()

	rec.mu.Lock()
	defer rec.mu.Unlock()
	if len(rec.pkts) != total {
		t.Fatalf("Output got %d packets, want %d", len(rec.pkts), total)
	}
	for i, p := range rec.pkts {
		if got := int(binary.BigEndian.Uint32(p)); len(p) != 4 || got != i {
			t.Fatalf("packet %d is %x, want sequence number %d", i, p, i)
		}
	}
	for _, n := range rec.batches {
		if n < 1 || n > outBatch {
			t.Errorf("batch of %d packets; want 1..%d", n, outBatch)
		}
	}
	for i, p := range pkts {
		if refs := p.ReadRefs(); refs != 1 {
			t.Errorf("packet %d has %d references after output, want 1 (the writer's)", i, refs)
		}
		p.DecRef()
	}
	refs.DoRepeatedLeakCheck()
}

// TestLinkShutdownReleasesWriters: shutdown wakes a writer blocked on a
// full queue, which fails with ErrClosedForSend, and the link drops its
// references to queued packets.
func TestLinkShutdownReleasesWriters(t *testing.T) {
	lab.CheckGoroutines(t)
	rec := &recorder{release: make(chan struct{})}
	l := newLink(1500, 0, false, rec.output, nil, zerolog.Nop())

	var pkts []*stack.PacketBuffer
	errc := make(chan tcpip.Error, 1)
	go func() {
		for i := 0; ; i++ {
			p := numbered(i)
			pkts = append(pkts, p)
			if err := writeOne(l, p); err != nil {
				errc <- err
				return
			}
		}
	}()
	waitFor(t, "the queue to fill", func() bool { return len(l.out) == outQueueLen })
	l.shutdown()
	if err := recv(t, errc, "blocked writer"); err == nil {
		t.Fatal("blocked writer: no error")
	} else if _, ok := err.(*tcpip.ErrClosedForSend); !ok {
		t.Errorf("blocked writer: %v, want ErrClosedForSend", err)
	}
	close(rec.release) // the output goroutine flushes what is queued, then ends
	l.wait()
	late := numbered(0)
	if err := writeOne(l, late); err == nil {
		t.Error("write after shutdown succeeded")
	}
	late.DecRef()
	for i, p := range pkts {
		if refs := p.ReadRefs(); refs != 1 {
			t.Errorf("packet %d has %d references after shutdown, want 1", i, refs)
		}
		p.DecRef()
	}
	refs.DoRepeatedLeakCheck()
}

// TestDeliverDropsNonIP: Deliver counts and drops what is not IP.
func TestDeliverDropsNonIP(t *testing.T) {
	r := newRig(t, Options{Seed: 1, Addrs: []netip.Addr{outsideAddr}}, rigOpts{})
	r.st.Deliver([][]byte{nil, {0x45}, make([]byte, 40), {0x60, 0, 0}})
	if st := r.st.Stats(); st.InvalidIn != 4 || st.PacketsIn != 0 {
		t.Errorf("InvalidIn, PacketsIn = %d, %d; want 4, 0", st.InvalidIn, st.PacketsIn)
	}
}

// TestAppendPacket: the copy Output gets is the packet, headers and all,
// whatever views it is made of.
func TestAppendPacket(t *testing.T) {
	var payload buffer.Buffer
	payload.Append(buffer.NewViewWithData([]byte("pay")))
	payload.Append(buffer.NewViewWithData([]byte("load")))
	pkt := stack.NewPacketBuffer(stack.PacketBufferOptions{ReserveHeaderBytes: 16, Payload: payload})
	defer pkt.DecRef()
	copy(pkt.TransportHeader().Push(4), "hdr:")
	copy(pkt.NetworkHeader().Push(3), "ip:")

	got := appendPacket([]byte("room"), pkt)
	if want := "roomip:hdr:payload"; string(got) != want {
		t.Errorf("appendPacket = %q, want %q", got, want)
	}
	if want := bytes.Join(pkt.AsSlices(), nil); !bytes.Equal(got[4:], want) {
		t.Errorf("appendPacket = %q, AsSlices gives %q", got[4:], want)
	}
}

// TestChecksumsChecked: a stack checks the TCP checksum of what it is
// handed, unless its caller does (Options.ChecksumsChecked). A SYN to a
// port nobody listens on is either malformed (a bad checksum: dropped) or
// answered with a RST; gVisor counts the first as it happens.
func TestChecksumsChecked(t *testing.T) {
	for _, checked := range []bool{false, true} {
		t.Run(fmt.Sprint("checked=", checked), func(t *testing.T) {
			r := newRig(t, Options{Seed: 1, Addrs: []netip.Addr{outsideAddr}, ChecksumsChecked: checked}, rigOpts{})
			syn := lab.TCPPacket(netip.MustParseAddrPort("198.51.100.10:4000"), netip.AddrPortFrom(outsideAddr, 80), header.TCPFlagSyn, 1, 0, nil)
			syn[len(syn)-1] ^= 0x10 // the last byte of the TCP header: its options or urgent pointer
			r.st.Deliver([][]byte{syn})
			got := r.st.st.Stats().NICs.MalformedL4RcvdPackets.Value()
			if want := map[bool]uint64{false: 1, true: 0}[checked]; got != want {
				t.Errorf("%d malformed packets, want %d", got, want)
			}
		})
	}
}
