package netstack

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"io"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"gvisor.dev/gvisor/pkg/buffer"
	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/checksum"
	"gvisor.dev/gvisor/pkg/tcpip/header"
	"gvisor.dev/gvisor/pkg/tcpip/stack"

	"github.com/fwx-dev/fwx/netstack/lab"
	"github.com/fwx-dev/fwx/netstack/vnettun"
)

// gsoCase describes a packet as gVisor hands it to the link.
type gsoCase struct {
	v6      bool
	proto   tcpip.TransportProtocolNumber
	tcpOpts int // TCP option bytes, a multiple of 4
	payload int
	gso     stack.GSO
}

var (
	testSrc4, testDst4 = tcpip.AddrFrom4([4]byte{10, 0, 1, 2}), tcpip.AddrFrom4([4]byte{203, 0, 113, 5})
	testSrc6, testDst6 = tcpip.AddrFrom16([16]byte{0xfd, 15: 1}), tcpip.AddrFrom16([16]byte{0xfd, 15: 2})
)

// hostGSO returns the GSO options gVisor's TCP puts on every packet of an
// endpoint whose route has host GSO (transport/tcp initHostGSO).
func hostGSO(v6 bool, mss uint16) stack.GSO {
	g := stack.GSO{Type: stack.GSOTCPv4, NeedsCsum: true, CsumOffset: header.TCPChecksumOffset,
		MSS: mss, L3HdrLen: header.IPv4MinimumSize, MaxSize: gsoMaxSize}
	if v6 {
		g.Type, g.L3HdrLen = stack.GSOTCPv6, header.IPv6MinimumSize
	}
	return g
}

// build returns the packet c describes, built the way gVisor's transport
// and network layers build it: headers pushed in front of the payload, a
// partial checksum (the pseudo-header sum) in a TCP packet with
// GSOOptions.NeedsCsum, a complete one otherwise.
func (c gsoCase) build(tb testing.TB) *stack.PacketBuffer {
	tb.Helper()
	payload := make([]byte, c.payload)
	for i := range payload {
		payload[i] = byte(i*7 + 3)
	}
	pkt := stack.NewPacketBuffer(stack.PacketBufferOptions{ReserveHeaderBytes: 128, Payload: buffer.MakeWithData(payload)})
	pkt.GSOOptions = c.gso
	src, dst := testSrc4, testDst4
	if c.v6 {
		src, dst = testSrc6, testDst6
	}
	payloadSum := checksum.Checksum(payload, 0)
	switch c.proto {
	case header.TCPProtocolNumber:
		hl := header.TCPMinimumSize + c.tcpOpts
		tcp := header.TCP(pkt.TransportHeader().Push(hl))
		tcp.Encode(&header.TCPFields{SrcPort: 80, DstPort: 40000, SeqNum: 1000, AckNum: 2000,
			DataOffset: uint8(hl), Flags: header.TCPFlagAck | header.TCPFlagPsh, WindowSize: 1024})
		opts := tcp[header.TCPMinimumSize:]
		for i := range opts {
			opts[i] = header.TCPOptionNOP
		}
		if len(opts) >= 12 { // a timestamp option, as gVisor sends
			opts[2], opts[3] = header.TCPOptionTS, header.TCPOptionTSLength
			binary.BigEndian.PutUint32(opts[4:], 12345)
			binary.BigEndian.PutUint32(opts[8:], 67890)
		}
		xsum := header.PseudoHeaderChecksum(header.TCPProtocolNumber, src, dst, uint16(hl+c.payload))
		if c.gso.Type != stack.GSONone && c.gso.NeedsCsum {
			tcp.SetChecksum(xsum)
		} else {
			tcp.SetChecksum(^tcp.CalculateChecksum(checksum.Combine(xsum, payloadSum)))
		}
	case header.UDPProtocolNumber:
		udp := header.UDP(pkt.TransportHeader().Push(header.UDPMinimumSize))
		l := uint16(header.UDPMinimumSize + c.payload)
		udp.Encode(&header.UDPFields{SrcPort: 53, DstPort: 40000, Length: l})
		xsum := header.PseudoHeaderChecksum(header.UDPProtocolNumber, src, dst, l)
		udp.SetChecksum(^udp.CalculateChecksum(checksum.Combine(xsum, payloadSum)))
	case header.ICMPv4ProtocolNumber:
		icmp := header.ICMPv4(pkt.TransportHeader().Push(header.ICMPv4MinimumSize))
		icmp.SetType(header.ICMPv4EchoReply)
		icmp.SetIdent(7)
		icmp.SetChecksum(header.ICMPv4Checksum(icmp, payloadSum))
	default:
		tb.Fatalf("unsupported protocol %d", c.proto)
	}
	pkt.TransportProtocolNumber = c.proto
	if c.v6 {
		l4 := uint16(pkt.Size())
		header.IPv6(pkt.NetworkHeader().Push(header.IPv6MinimumSize)).Encode(&header.IPv6Fields{
			PayloadLength: l4, TransportProtocol: c.proto, HopLimit: 64, SrcAddr: src, DstAddr: dst})
		pkt.NetworkProtocolNumber = header.IPv6ProtocolNumber
	} else {
		ip := header.IPv4(pkt.NetworkHeader().Push(header.IPv4MinimumSize))
		ip.Encode(&header.IPv4Fields{TotalLength: uint16(pkt.Size() + header.IPv4MinimumSize), ID: 1,
			Flags: header.IPv4FlagDontFragment, TTL: 64, Protocol: uint8(c.proto), SrcAddr: src, DstAddr: dst})
		ip.SetChecksum(^ip.CalculateChecksum())
		pkt.NetworkProtocolNumber = header.IPv4ProtocolNumber
	}
	return pkt
}

// checksumsValid reports whether the IPv4 header checksum (if any) and the
// L4 checksum of the IP packet p are complete and correct.
func checksumsValid(p []byte) bool {
	var src, dst tcpip.Address
	var proto tcpip.TransportProtocolNumber
	var l4 []byte
	if p[0]>>4 == 6 {
		ip := header.IPv6(p)
		src, dst, proto, l4 = ip.SourceAddress(), ip.DestinationAddress(), tcpip.TransportProtocolNumber(ip.NextHeader()), p[header.IPv6MinimumSize:] // no extension headers here
	} else {
		ip := header.IPv4(p)
		if !ip.IsChecksumValid() {
			return false
		}
		src, dst, proto, l4 = ip.SourceAddress(), ip.DestinationAddress(), ip.TransportProtocol(), p[ip.HeaderLength():]
	}
	initial := uint16(0)
	if proto != header.ICMPv4ProtocolNumber {
		initial = header.PseudoHeaderChecksum(proto, src, dst, uint16(len(l4)))
	}
	return checksum.Checksum(l4, initial) == 0xffff
}

// TestVirtioHdr: the header the link writes for each kind of packet gVisor
// sends, and, checked with vnettun.Split and Finish as the kernel would
// use it, that it describes the packet: the segments fit the MTU, carry
// the whole payload and have valid checksums.
func TestVirtioHdr(t *testing.T) {
	const mtu = 1500
	// MSS as gVisor computes it with a 12-byte timestamp option.
	mss4 := uint16(mtu - 20 - 20 - 12)
	mss6 := uint16(mtu - 40 - 20 - 12)
	partial4 := vnettun.Hdr{Flags: vnettun.FlagNeedsCsum, HdrLen: 52, CsumStart: 20, CsumOffset: 16}
	tcp, udp, icmp := header.TCPProtocolNumber, header.UDPProtocolNumber, header.ICMPv4ProtocolNumber
	for _, tc := range []struct {
		name   string
		c      gsoCase
		want   vnettun.Hdr
		wantOK bool
	}{
		{"TCPv4 superpacket with options", gsoCase{proto: tcp, tcpOpts: 12, payload: 10000, gso: hostGSO(false, mss4)},
			vnettun.Hdr{Flags: vnettun.FlagNeedsCsum, GSOType: vnettun.GSOTCPv4, HdrLen: 52, GSOSize: mss4, CsumStart: 20, CsumOffset: 16}, true},
		{"TCPv4 superpacket of two segments", gsoCase{proto: tcp, tcpOpts: 12, payload: int(mss4) + 1, gso: hostGSO(false, mss4)},
			vnettun.Hdr{Flags: vnettun.FlagNeedsCsum, GSOType: vnettun.GSOTCPv4, HdrLen: 52, GSOSize: mss4, CsumStart: 20, CsumOffset: 16}, true},
		{"TCPv4 GSO endpoint, one full segment", gsoCase{proto: tcp, tcpOpts: 12, payload: int(mss4), gso: hostGSO(false, mss4)},
			partial4, true},
		{"TCPv4 GSO endpoint, bare ACK", gsoCase{proto: tcp, tcpOpts: 12, gso: hostGSO(false, mss4)},
			partial4, true},
		{"TCPv6 superpacket with options", gsoCase{v6: true, proto: tcp, tcpOpts: 12, payload: 30000, gso: hostGSO(true, mss6)},
			vnettun.Hdr{Flags: vnettun.FlagNeedsCsum, GSOType: vnettun.GSOTCPv6, HdrLen: 72, GSOSize: mss6, CsumStart: 40, CsumOffset: 16}, true},
		{"TCPv4 largest superpacket", gsoCase{proto: tcp, tcpOpts: 40, payload: gsoMaxSize - header.TCPTotalHeaderMaximumSize - 1, gso: hostGSO(false, mtu-80)},
			vnettun.Hdr{Flags: vnettun.FlagNeedsCsum, GSOType: vnettun.GSOTCPv4, HdrLen: 80, GSOSize: mtu - 80, CsumStart: 20, CsumOffset: 16}, true},
		{"TCP without GSO (RST to a closed port)", gsoCase{proto: tcp, payload: 0}, vnettun.Hdr{}, true},
		{"TCP without GSO, with data", gsoCase{proto: tcp, tcpOpts: 12, payload: 1000}, vnettun.Hdr{}, true},
		{"UDP", gsoCase{proto: udp, payload: 1200}, vnettun.Hdr{}, true},
		{"UDPv6", gsoCase{v6: true, proto: udp, payload: 100}, vnettun.Hdr{}, true},
		{"ICMP echo reply", gsoCase{proto: icmp, payload: 56}, vnettun.Hdr{}, true},
		{"gVisor GSO", gsoCase{proto: tcp, payload: 5000, gso: stack.GSO{Type: stack.GSOGvisor, MSS: mss4}}, vnettun.Hdr{}, false},
		{"superpacket with complete checksum", gsoCase{proto: tcp, payload: 5000,
			gso: stack.GSO{Type: stack.GSOTCPv4, MSS: mss4, L3HdrLen: 20}}, vnettun.Hdr{}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			pkt := tc.c.build(t)
			defer pkt.DecRef()
			h, ok := virtioHdr(pkt)
			if ok != tc.wantOK || h != tc.want {
				t.Fatalf("virtioHdr = %+v, %v; want %+v, %v", h, ok, tc.want, tc.wantOK)
			}
			if !ok {
				return
			}
			p := appendPacket(nil, pkt)
			if h.IsGSO() {
				checkSuperpacket(t, h, p, tc.c.payload, mtu)
				return
			}
			if err := vnettun.Finish(h, p); err != nil {
				t.Fatalf("Finish: %v", err)
			}
			if !checksumsValid(p) {
				t.Errorf("checksum invalid after Finish (header %+v)", h)
			}
		})
	}
}

// checkSuperpacket splits p as the kernel would and checks the segments.
func checkSuperpacket(t *testing.T, h vnettun.Hdr, p []byte, payload, mtu int) {
	t.Helper()
	if len(p) > gsoMaxSize {
		t.Fatalf("superpacket of %d bytes exceeds %d", len(p), gsoMaxSize)
	}
	out := make([][]byte, 64)
	for i := range out {
		out[i] = make([]byte, vnettun.MaxPacket)
	}
	sizes := make([]int, len(out))
	n, err := vnettun.Split(h, p, out, sizes, 0)
	if err != nil {
		t.Fatalf("Split: %v", err)
	}
	if want := (payload + int(h.GSOSize) - 1) / int(h.GSOSize); n != want {
		t.Errorf("%d segments, want %d", n, want)
	}
	got := 0
	for i := range n {
		seg := out[i][:sizes[i]]
		if len(seg) > mtu {
			t.Errorf("segment %d: %d bytes, MTU %d", i, len(seg), mtu)
		}
		if !checksumsValid(seg) {
			t.Errorf("segment %d: invalid checksum", i)
		}
		got += len(seg) - int(h.HdrLen)
	}
	if got != payload {
		t.Errorf("segments carry %d payload bytes, want %d", got, payload)
	}
}

// TestLinkWritesVirtioHdr: with GSO, the link writes a header before every
// packet, the zero header included, even into headroom that Output
// scribbled on in an earlier batch; it counts superpackets; and it
// advertises host GSO only when asked.
func TestLinkWritesVirtioHdr(t *testing.T) {
	lab.CheckGoroutines(t)
	const offset = 16
	var (
		mu   sync.Mutex
		hdrs []vnettun.Hdr
	)
	release := make(chan struct{})
	output := func(pkts [][]byte) error {
		<-release
		mu.Lock()
		defer mu.Unlock()
		for _, p := range pkts {
			hdrs = append(hdrs, vnettun.ParseHdr(p[offset-vnettun.VirtioHdrLen:]))
			for i := range offset {
				p[i] = 0xff // the caller may use its headroom
			}
		}
		return nil
	}
	l := newLink(1500, offset, true, output, nil, zerolog.Nop())
	defer func() { l.shutdown(); l.wait() }()
	if l.SupportedGSO() != stack.HostGSOSupported || l.GSOMaxSize() != 65535 {
		t.Errorf("SupportedGSO, GSOMaxSize = %v, %d; want host GSO up to 65535", l.SupportedGSO(), l.GSOMaxSize())
	}
	off := newLink(1500, 0, false, output, nil, zerolog.Nop())
	kind, size := off.SupportedGSO(), off.GSOMaxSize()
	off.shutdown()
	off.wait()
	if kind != stack.GSONotSupported || size != 0 {
		t.Errorf("without GSO: SupportedGSO, GSOMaxSize = %v, %d; want none", kind, size)
	}

	super := gsoCase{proto: header.TCPProtocolNumber, tcpOpts: 12, payload: 20000, gso: hostGSO(false, 1448)}
	plain := gsoCase{proto: header.UDPProtocolNumber, payload: 100}
	send := func(cases ...gsoCase) {
		for _, c := range cases {
			p := c.build(t)
			if err := writeOne(l, p); err != nil {
				t.Fatalf("WritePackets: %v", err)
			}
			p.DecRef()
		}
	}
	// Two batches: the second reuses the buffers of the first.
	send(super, plain)
	close(release)
	waitFor(t, "first batch", func() bool { return l.stats.out.Load() == 2 })
	send(plain, plain, super)
	waitFor(t, "second batch", func() bool { return l.stats.out.Load() == 5 })

	mu.Lock()
	defer mu.Unlock()
	wantSuper := vnettun.Hdr{Flags: vnettun.FlagNeedsCsum, GSOType: vnettun.GSOTCPv4, HdrLen: 52, GSOSize: 1448, CsumStart: 20, CsumOffset: 16}
	want := []vnettun.Hdr{wantSuper, {}, {}, {}, wantSuper}
	for i := range want {
		if i >= len(hdrs) || hdrs[i] != want[i] {
			t.Fatalf("headers %+v, want %+v", hdrs, want)
		}
	}
	if n := l.stats.superpacketsOut.Load(); n != 2 {
		t.Errorf("superpacketsOut = %d, want 2", n)
	}
}

// TestGSOTransfer: a Transparent stack with GSO sends 8 MiB to a lab
// client through an Output that segments as the kernel would; every byte
// arrives, in order, and the stack did send superpackets.
func TestGSOTransfer(t *testing.T) {
	r := newRig(t, Options{Transparent: true, Seed: 1}, rigOpts{quiet: true, gso: true})
	client := r.addHost(t, "client", clientPrefix, clientGW)
	const total = 8 << 20
	sent := make(chan []byte, 1)
	r.st.HandleTCP(func(req *TCPRequest) {
		c, err := req.Accept()
		if err != nil {
			t.Errorf("Accept: %v", err)
			sent <- nil
			return
		}
		defer c.Close()
		sent <- writeNumbered(t, c, total)
	})
	cc, err := client.DialTCP(lab.Context(t, 20*time.Second), farServer)
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	h := sha256.New()
	n, err := io.CopyBuffer(h, cc, make([]byte, 256<<10))
	if err != nil {
		t.Fatalf("read: %v after %d bytes", err, n)
	}
	want := recv(t, sent, "sender")
	if n != total || !bytes.Equal(h.Sum(nil), want) {
		t.Fatalf("received %d bytes (SHA-256 %x), sent %d (%x)", n, h.Sum(nil), total, want)
	}
	st := r.st.Stats()
	if st.SuperpacketsOut == 0 {
		t.Errorf("no superpackets among %d packets out", st.PacketsOut)
	}
	t.Logf("%d packets out, %d of them superpackets", st.PacketsOut, st.SuperpacketsOut)
}

// writeNumbered writes n bytes of pseudo-random data to w, each MiB
// numbered so that misplaced data changes the digest, and returns their
// SHA-256.
func writeNumbered(tb testing.TB, w io.Writer, n int64) []byte {
	block := make([]byte, 1<<20)
	rng := rand.NewChaCha8([32]byte{'g', 's', 'o'})
	rng.Read(block)
	h := sha256.New()
	for i, left := uint64(0), n; left > 0; i++ {
		binary.LittleEndian.PutUint64(block, i)
		chunk := block[:min(left, int64(len(block)))]
		if _, err := w.Write(chunk); err != nil {
			tb.Errorf("write: %v after %d bytes", err, n-left)
			return nil
		}
		h.Write(chunk)
		left -= int64(len(chunk))
	}
	return h.Sum(nil)
}

// TestLinkOutputVectors: with an OutputVectors function the link passes
// each packet as its views, not copied, after a headroom of the offset
// holding its virtio header: the same bytes and header Output would get.
// It holds each packet while OutputVectors runs and releases it after.
func TestLinkOutputVectors(t *testing.T) {
	lab.CheckGoroutines(t)
	const offset = 16
	super := gsoCase{proto: header.TCPProtocolNumber, tcpOpts: 12, payload: 20000, gso: hostGSO(false, 1448)}.build(t)
	plain := gsoCase{proto: header.UDPProtocolNumber, payload: 100}.build(t)
	sent := []*stack.PacketBuffer{super, plain}
	var want [][]byte
	for _, p := range sent {
		want = append(want, appendPacket(nil, p))
	}

	var (
		mu     sync.Mutex
		got    [][]byte
		hdrs   []vnettun.Hdr
		pieces []int
	)
	outputV := func(pkts [][][]byte) error {
		mu.Lock()
		defer mu.Unlock()
		for i, v := range pkts {
			if len(v[0]) != offset {
				t.Errorf("headroom of %d bytes, want %d", len(v[0]), offset)
			}
			hdrs = append(hdrs, vnettun.ParseHdr(v[0][offset-vnettun.VirtioHdrLen:]))
			var b []byte
			for _, s := range v[1:] {
				b = append(b, s...)
			}
			got = append(got, b)
			pieces = append(pieces, len(v)-1)
			if refs := sent[len(got)-1].ReadRefs(); refs != 2 {
				t.Errorf("packet %d has %d references while output, want 2 (the writer's and the link's)", i, refs)
			}
		}
		return nil
	}
	l := newLink(1500, offset, true, nil, outputV, zerolog.Nop())
	for _, p := range sent {
		if err := writeOne(l, p); err != nil {
			t.Fatalf("WritePackets: %v", err)
		}
	}
	waitFor(t, "the batch", func() bool { return l.stats.out.Load() == 2 })
	l.shutdown()
	l.wait()

	mu.Lock()
	defer mu.Unlock()
	for i := range want {
		if i >= len(got) || !bytes.Equal(got[i], want[i]) {
			t.Fatalf("packet %d: OutputVectors got other bytes than Output would", i)
		}
	}
	if pieces[0] < 2 {
		t.Errorf("the superpacket came in %d piece(s); want its header and payload views apart (no copy)", pieces[0])
	}
	wantSuper := vnettun.Hdr{Flags: vnettun.FlagNeedsCsum, GSOType: vnettun.GSOTCPv4, HdrLen: 52, GSOSize: 1448, CsumStart: 20, CsumOffset: 16}
	if hdrs[0] != wantSuper || hdrs[1] != (vnettun.Hdr{}) {
		t.Errorf("headers %+v, want %+v and none", hdrs, wantSuper)
	}
	for i, p := range sent {
		if refs := p.ReadRefs(); refs != 1 {
			t.Errorf("packet %d has %d references after output, want 1", i, refs)
		}
		p.DecRef()
	}
}

// TestOutputsNoAllocs: once its buffers have grown, a batch of packets
// passed as views (OutputVectors) or copied (Output) allocates nothing.
func TestOutputsNoAllocs(t *testing.T) {
	super := gsoCase{proto: header.TCPProtocolNumber, tcpOpts: 12, payload: 20000, gso: hostGSO(false, 1448)}.build(t)
	plain := gsoCase{proto: header.UDPProtocolNumber, payload: 100}.build(t)
	defer super.DecRef()
	defer plain.DecRef()
	l := &link{offset: 16, gso: true}
	l.SetMTU(1500)
	for _, vectors := range []bool{false, true} {
		out := newOutputs(l.offset, vectors)
		batch := func() {
			for range outBatch / 2 {
				out.add(l, super)
				out.add(l, plain)
			}
			out.reset()
		}
		batch()
		if allocs := testing.AllocsPerRun(50, batch); allocs != 0 {
			t.Errorf("vectors=%v: %.1f allocations per batch, want 0", vectors, allocs)
		}
	}
}
