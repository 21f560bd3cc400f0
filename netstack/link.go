package netstack

// Packet flow through the link:
//
//	Stack.Deliver ─copy─► link.deliver ─► gVisor NetworkDispatcher (inline, caller's goroutine)
//	gVisor ─► link.WritePackets ─► out (bounded, BLOCKING) ─► link.run ─copy (+ virtio header)─► Options.Output (batches ≤ 128)
//	                                                                     or ─views (+ virtio header)─► Options.OutputVectors
//
// With Options.GSO, gVisor's TCP hands WritePackets superpackets of up to
// 64 KiB and run writes a virtio-net header before each packet (gso.go).
// GRO would plug in at deliver (coalesce a batch's TCP segments before the
// dispatcher, once checksums are validated); it is not done yet.

import (
	"math/bits"
	"sync"
	"sync/atomic"

	"github.com/rs/zerolog"
	"gvisor.dev/gvisor/pkg/buffer"
	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/header"
	"gvisor.dev/gvisor/pkg/tcpip/network/ipv4"
	"gvisor.dev/gvisor/pkg/tcpip/network/ipv6"
	"gvisor.dev/gvisor/pkg/tcpip/stack"

	"github.com/fwx-dev/fwx/netstack/internal/iplink"
	"github.com/fwx-dev/fwx/netstack/vnettun"
)

const (
	// outQueueLen is how many outbound packets wait for the output
	// goroutine before the stack's writers block. Enough to cover a burst
	// of a few windows without making the stack's goroutines wait on every
	// packet; small enough (about 1.5 MB at MTU 1500) to bound memory.
	// With GSO a queued superpacket can hold 64 KiB, but its payload is
	// shared with the TCP send buffer it came from (at most bufferMax per
	// connection), so the queue adds little memory of its own.
	outQueueLen = 1024

	// outBatch is the largest batch handed to Options.Output, matching
	// wireguard-go's conn.IdealBatchSize and memtun.BatchSize.
	outBatch = 128
)

var _ stack.LinkEndpoint = (*link)(nil)

// link is the Stack's only NIC: a point-to-point IP link (no link-layer
// header, no address resolution) to a TUN device that fwx reads and writes.
//
// Outbound, WritePackets takes a reference on each packet and queues it on
// out, waiting while the queue is full: never dropping is what keeps
// gVisor's TCP from collapsing its window on self-inflicted loss (see
// PERF-NOTES, "channel.Endpoint drops"). The wait ends when the link is
// shut down. One goroutine (run) drains the queue, copies each packet into
// a buffer it owns and calls output with the batch, or, with outputV,
// passes each packet's views to outputV without a copy.
//
// With gso set, the link advertises host GSO (gso.go) and run writes a
// virtio-net header into the last vnettun.VirtioHdrLen bytes of each
// packet's headroom; offset is then at least that.
//
// Lifecycle: newLink starts run; shutdown (idempotent) makes writers fail
// instead of waiting and lets run flush what is queued and return; wait
// joins run and releases anything left in the queue.
type link struct {
	iplink.Endpoint
	offset int
	gso    bool
	// rxChecked: the caller of deliver checks checksums
	// (Options.ChecksumsChecked); set before the NIC is created.
	rxChecked bool
	output    func(pkts [][]byte) error
	outputV   func(pkts [][][]byte) error // replaces output when set
	log       zerolog.Logger

	out  chan *stack.PacketBuffer
	done chan struct{} // closed by shutdown
	once sync.Once
	wg   sync.WaitGroup

	stats linkStats
}

// linkStats counts the link's packets; see [Stats].
type linkStats struct {
	in, invalidIn, out, outBatches, outputErrors, superpacketsOut atomic.Uint64
}

// newLink returns a link whose drain goroutine calls output with packets
// that start offset bytes into each slice, and starts that goroutine.
// With gso, offset must be at least vnettun.VirtioHdrLen (New checks).
// outputV, if not nil, replaces output.
func newLink(mtu, offset int, gso bool, output func([][]byte) error, outputV func([][][]byte) error, log zerolog.Logger) *link {
	l := &link{
		offset:  offset,
		gso:     gso,
		output:  output,
		outputV: outputV,
		log:     log,
		out:     make(chan *stack.PacketBuffer, outQueueLen),
		done:    make(chan struct{}),
	}
	l.SetMTU(uint32(mtu))
	l.wg.Add(1)
	go l.run()
	return l
}

// deliver hands packets read from the device to the stack, inline. Each
// packet is copied into a gVisor buffer (payload), so pkts may be reused
// as soon as deliver returns.
//
// The copy stays: gVisor's buffer package makes no view of memory it did
// not allocate. Every View (NewView, NewViewWithData, MakeWithData) takes
// a chunk from its pools, and newChunk clears the whole chunk first
// (pkg/buffer/chunk.go), so a packet costs a clear and a copy. Reading
// the device straight into a View would save the copy, not the clear, and
// fwx reads every packet before it knows whether it is diverted, into
// buffers of headroom plus 64 KiB: larger than the pools' largest chunk
// (buffer.MaxChunkSize, 64 KiB), which would make each a new heap
// allocation.
func (l *link) deliver(pkts [][]byte) {
	d := l.Dispatcher()
	if d == nil {
		return
	}
	for _, p := range pkts {
		var proto tcpip.NetworkProtocolNumber
		switch {
		case len(p) >= header.IPv4MinimumSize && p[0]>>4 == 4:
			proto = ipv4.ProtocolNumber
		case len(p) >= header.IPv6MinimumSize && p[0]>>4 == 6:
			proto = ipv6.ProtocolNumber
		default:
			l.stats.invalidIn.Add(1)
			continue
		}
		pb := stack.NewPacketBuffer(stack.PacketBufferOptions{Payload: payload(p)})
		d.DeliverNetworkPacket(proto, pb)
		pb.DecRef()
		l.stats.in.Add(1)
	}
}

// headView is where payload cuts a large packet: its IP and transport
// headers (at most 120 bytes for IPv4, 100 for IPv6 without extension
// headers) and the first bytes of its data.
const headView = 128

// payload copies p into a gVisor buffer. A large packet goes in two views
// or more, its headers in a small one: gVisor's IP layer keeps a reference
// to the network header's view while it reads the header again, and a
// view whose chunk is shared is copied whole when read (buffer.PullUp).
// With the headers alone in their view that copy is of headView bytes,
// not of the whole packet (up to 64 KiB with GSO).
//
// The rest is cut to fit gVisor's chunks, which come in powers of two and
// are cleared whole when taken (see deliver): where a view's chunk would
// be more than an eighth empty, the view takes the largest power of two
// that fits instead, and the next view the rest, up to dataViews views. A
// 40000-byte superpacket then clears 40960 bytes, not 65536; a full one
// (65535 bytes) stays in one view.
func payload(p []byte) buffer.Buffer {
	if len(p) <= 2*headView {
		return buffer.MakeWithData(p)
	}
	b := buffer.MakeWithView(buffer.NewViewWithData(p[:headView]))
	rest := p[headView:]
	for i := 1; len(rest) > 0; i++ {
		n := len(rest)
		// The chunk a view of n bytes takes; if it would be more than
		// an eighth empty, this view takes half of it.
		if c := 1 << bits.Len(uint(n-1)); i < dataViews && n > minDataView && c-n > n/8 {
			n = c / 2
		}
		b.Append(buffer.NewViewWithData(rest[:n]))
		rest = rest[n:]
	}
	return b
}

// dataViews and minDataView bound how payload cuts a packet's data:
// at most dataViews views, and none cut smaller than minDataView bytes.
const (
	dataViews   = 3
	minDataView = 8192
)

// WritePackets implements stack.LinkWriter. It takes its own reference on
// each packet (the caller keeps and releases its own) and waits while the
// queue is full. Once the link is shut down it fails with
// ErrClosedForSend for the packets it did not queue.
func (l *link) WritePackets(pkts stack.PacketBufferList) (int, tcpip.Error) {
	n := 0
	for _, pkt := range pkts.AsSlice() {
		select {
		case <-l.done:
			return n, closedForSend(n)
		default:
		}
		pkt.IncRef()
		select {
		case l.out <- pkt:
			n++
		case <-l.done:
			pkt.DecRef()
			return n, closedForSend(n)
		}
	}
	return n, nil
}

// closedForSend is WritePackets' error after shutdown: an error only if
// nothing was written, as LinkWriter callers expect.
func closedForSend(n int) tcpip.Error {
	if n > 0 {
		return nil
	}
	return &tcpip.ErrClosedForSend{}
}

// run is the output goroutine: it takes up to outBatch queued packets at a
// time and hands them to output, or to outputV. For output it copies each
// into a buffer of its own (Output wants one slice per packet, and a copy
// keeps the PacketBuffer's lifetime out of the caller's hands); for
// outputV it passes each packet's views as they are, a headroom slice of
// its own in front, and holds the packets until outputV returns. With GSO
// it writes each packet's virtio header in the headroom. After shutdown it
// flushes what is queued without waiting, then returns.
func (l *link) run() {
	defer l.wg.Done()
	l.log.Debug().Msg("netstack: output goroutine started")
	defer l.log.Debug().Msg("netstack: output goroutine stopped")

	batch := make([]*stack.PacketBuffer, 0, outBatch)
	out := newOutputs(l.offset, l.outputV != nil)
	for {
		closing := false
		select {
		case p := <-l.out:
			batch = append(batch, p)
		case <-l.done:
			closing = true
		}
	fill:
		for len(batch) < outBatch {
			select {
			case p := <-l.out:
				batch = append(batch, p)
			default:
				break fill
			}
		}
		if len(batch) == 0 {
			return // closing and nothing left
		}
		var supers uint64
		for _, p := range batch {
			h, ok := vnettun.Hdr{}, true
			if l.gso {
				h, ok = virtioHdr(p)
			}
			if !ok {
				l.log.Error().Int("gsoType", int(p.GSOOptions.Type)).Int("size", p.Size()).
					Msg("netstack: dropped a packet the device cannot segment")
				continue
			}
			head := out.add(l, p)
			if l.gso {
				h.Encode(head[l.offset-vnettun.VirtioHdrLen:])
				if h.IsGSO() {
					supers++
				}
			}
		}
		if n := out.len(); n > 0 {
			l.stats.out.Add(uint64(n))
			l.stats.superpacketsOut.Add(supers)
			l.stats.outBatches.Add(1)
			var err error
			if l.outputV != nil {
				err = l.outputV(out.vecs)
			} else {
				err = l.output(out.pkts)
			}
			if err != nil {
				l.stats.outputErrors.Add(1)
				l.log.Warn().Err(err).Int("packets", n).Msg("netstack: output failed")
			}
		}
		out.reset()
		for i, p := range batch {
			p.DecRef()
			batch[i] = nil
		}
		batch = batch[:0]
		if closing && len(l.out) == 0 {
			return
		}
	}
}

// outputs is the batch run hands to output (pkts: each packet copied
// into a buffer of its own) or outputV (vecs: each packet's headroom,
// then its views). Its buffers are reused from batch to batch.
type outputs struct {
	vectors bool
	bufs    [][]byte   // output: packet buffers, grown as needed
	pkts    [][]byte   // output: the batch, slices of bufs
	heads   [][]byte   // outputV: headroom slices
	pieces  [][][]byte // outputV: per slot, the head and the views
	vecs    [][][]byte // outputV: the batch, slices of pieces
}

func newOutputs(offset int, vectors bool) *outputs {
	b := &outputs{vectors: vectors}
	if vectors {
		b.heads = make([][]byte, outBatch)
		for i := range b.heads {
			b.heads[i] = make([]byte, offset)
		}
		b.pieces = make([][][]byte, outBatch)
		b.vecs = make([][][]byte, 0, outBatch)
	} else {
		b.bufs = make([][]byte, outBatch)
		b.pkts = make([][]byte, 0, outBatch)
	}
	return b
}

func (b *outputs) len() int { return len(b.pkts) + len(b.vecs) }

// add adds pkt to the batch and returns its headroom.
func (b *outputs) add(l *link, pkt *stack.PacketBuffer) []byte {
	i := b.len()
	if !b.vectors {
		buf := appendPacket(l.buffer(b.bufs, i, pkt.Size())[:l.offset], pkt)
		b.pkts = append(b.pkts, buf)
		return buf[:l.offset]
	}
	v := append(b.pieces[i][:0], b.heads[i])
	views, skip := pkt.AsViewList()
	for view := views.Front(); view != nil; view = view.Next() {
		s := view.AsSlice()
		if skip >= len(s) {
			skip -= len(s)
			continue
		}
		v = append(v, s[skip:])
		skip = 0
	}
	b.pieces[i] = v
	b.vecs = append(b.vecs, v)
	return b.heads[i]
}

// reset empties the batch, dropping its references to the packets' views.
func (b *outputs) reset() {
	clear(b.pkts)
	b.pkts = b.pkts[:0]
	for _, v := range b.vecs {
		clear(v)
	}
	clear(b.vecs)
	b.vecs = b.vecs[:0]
}

// buffer returns bufs[i], grown if needed to hold a packet of size bytes
// after the headroom. A buffer is sized for the MTU, or, once it must hold
// a superpacket, for the largest one, so that it grows at most twice.
func (l *link) buffer(bufs [][]byte, i, size int) []byte {
	size += l.offset
	if cap(bufs[i]) < size {
		want := l.offset + int(l.MTU())
		if l.gso && size > want {
			want = l.offset + gsoMaxSize
		}
		bufs[i] = make([]byte, 0, max(size, want))
	}
	return bufs[i]
}

// appendPacket appends the bytes of pkt to b. It walks the packet's views
// rather than calling AsSlices, which allocates a slice per packet.
func appendPacket(b []byte, pkt *stack.PacketBuffer) []byte {
	views, skip := pkt.AsViewList()
	for v := views.Front(); v != nil; v = v.Next() {
		s := v.AsSlice()
		if skip >= len(s) {
			skip -= len(s)
			continue
		}
		b = append(b, s[skip:]...)
		skip = 0
	}
	return b
}

// shutdown makes writers stop waiting and the output goroutine finish. It
// is idempotent.
func (l *link) shutdown() {
	l.once.Do(func() { close(l.done) })
}

// wait waits for the output goroutine after shutdown and releases any
// packet queued after it returned.
func (l *link) wait() {
	l.wg.Wait()
	for {
		select {
		case p := <-l.out:
			p.DecRef()
		default:
			return
		}
	}
}

// Capabilities implements stack.NetworkLinkEndpoint: RX checksum offload
// when the caller checks what it delivers (Options.ChecksumsChecked), so
// the stack does not check the checksums of the packets it receives;
// otherwise none, as iplink.Endpoint.
func (l *link) Capabilities() stack.LinkEndpointCapabilities {
	if l.rxChecked {
		return stack.CapabilityRXChecksumOffload
	}
	return 0
}
