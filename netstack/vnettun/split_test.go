package vnettun

import (
	"bytes"
	"errors"
	"math/rand/v2"
	"testing"

	"golang.zx2c4.com/wireguard/tun"
	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/checksum"
	"gvisor.dev/gvisor/pkg/tcpip/header"
)

const testOffset = 16 // fwx's headroom

func outBufs(n, size int) ([][]byte, []int) {
	out := make([][]byte, n)
	for i := range out {
		out[i] = bytes.Repeat([]byte{0xee}, size)
	}
	return out, make([]int, n)
}

func TestSplit(t *testing.T) {
	ack := header.TCPFlagAck
	tests := []struct {
		name string
		s    spec
		ecn  bool
	}{
		{"tcpv4 options", spec{optLen: 12, payload: 65535 - 20 - 32, mss: 1448}, false},
		{"tcpv4 exact multiple", spec{optLen: 12, payload: 10 * 1448, mss: 1448}, false},
		{"tcpv4 one short segment", spec{payload: 100, mss: 1460}, false},
		{"tcpv4 fin psh cwr", spec{optLen: 40, payload: 5000, mss: 1000, flags: ack | header.TCPFlagFin | header.TCPFlagPsh | header.TCPFlagCwr}, true},
		{"tcpv6", spec{v6: true, optLen: 12, payload: 60000, mss: 1428}, false},
		{"tcpv6 odd mss", spec{v6: true, payload: 9999, mss: 777}, false},
		{"udpv4", spec{udp: true, payload: 64 * 1000, mss: 1000}, false},
		{"udpv6 odd tail", spec{udp: true, v6: true, payload: 20*1232 + 7, mss: 1232}, false},
	}
	rng := rand.New(rand.NewPCG(11, 12))
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h, pkt := build(t, rng, tt.s)
			if tt.ecn {
				h.GSOType |= GSOECN
			}
			orig := bytes.Clone(pkt)
			out, sizes := outBufs(BatchSize, testOffset+2000)
			n, err := Split(h, pkt, out, sizes, testOffset)
			if err != nil {
				t.Fatalf("Split: %v", err)
			}
			if !bytes.Equal(pkt, orig) {
				t.Errorf("Split modified its input")
			}
			mss := int(tt.s.mss)
			if want := max(1, (tt.s.payload+mss-1)/mss); n != want {
				t.Fatalf("Split made %d segments, want %d", n, want)
			}
			checkSegments(t, h, orig, out[:n], sizes[:n], tt.ecn)
		})
	}
}

// checkSegments verifies segments against the superpacket they came from,
// with gVisor's header accessors and checksum functions.
func checkSegments(t *testing.T, h Hdr, super []byte, out [][]byte, sizes []int, ecn bool) {
	t.Helper()
	l4 := int(h.CsumStart)
	v6 := super[0]>>4 == 6
	udp := ipProto(super) == uint8(header.UDPProtocolNumber)
	hdrLen := l4 + header.UDPMinimumSize
	if !udp {
		hdrLen = l4 + int(header.TCP(super[l4:]).DataOffset())
	}
	var payload []byte
	for i, b := range out {
		if !bytes.Equal(b[testOffset-VirtioHdrLen:testOffset], make([]byte, VirtioHdrLen)) {
			t.Errorf("segment %d: virtio header not cleared", i)
		}
		seg := b[testOffset : testOffset+sizes[i]]
		if len(seg) > hdrLen+int(h.GSOSize) {
			t.Errorf("segment %d: %d bytes, more than headers+mss %d", i, len(seg), hdrLen+int(h.GSOSize))
		}
		last := i == len(out)-1
		if !last && len(seg) != hdrLen+int(h.GSOSize) {
			t.Errorf("segment %d (not last): %d bytes, want %d", i, len(seg), hdrLen+int(h.GSOSize))
		}
		src, dst := addrs(seg)
		if v6 {
			ip := header.IPv6(seg)
			if int(ip.PayloadLength()) != len(seg)-40 {
				t.Errorf("segment %d: IPv6 payload length %d, want %d", i, ip.PayloadLength(), len(seg)-40)
			}
		} else {
			ip := header.IPv4(seg)
			if !ip.IsChecksumValid() {
				t.Errorf("segment %d: bad IPv4 header checksum", i)
			}
			if int(ip.TotalLength()) != len(seg) {
				t.Errorf("segment %d: IPv4 total length %d, want %d", i, ip.TotalLength(), len(seg))
			}
			if want := header.IPv4(super).ID() + uint16(i); ip.ID() != want {
				t.Errorf("segment %d: IPv4 ID %d, want %d", i, ip.ID(), want)
			}
		}
		data := seg[hdrLen:]
		payload = append(payload, data...)
		dataSum := checksum.Checksum(data, 0)
		if udp {
			u := header.UDP(seg[l4:])
			if int(u.Length()) != len(seg)-l4 {
				t.Errorf("segment %d: UDP length %d, want %d", i, u.Length(), len(seg)-l4)
			}
			if !u.IsChecksumValid(src, dst, dataSum) {
				t.Errorf("segment %d: bad UDP checksum %#04x", i, u.Checksum())
			}
			continue
		}
		tcp, stcp := header.TCP(seg[l4:]), header.TCP(super[l4:])
		if want := stcp.SequenceNumber() + uint32(i)*uint32(h.GSOSize); tcp.SequenceNumber() != want {
			t.Errorf("segment %d: seq %d, want %d", i, tcp.SequenceNumber(), want)
		}
		if !tcp.IsChecksumValid(src, dst, dataSum, uint16(len(data))) {
			t.Errorf("segment %d: bad TCP checksum %#04x", i, tcp.Checksum())
		}
		if !bytes.Equal(seg[l4+header.TCPMinimumSize:hdrLen], super[l4+header.TCPMinimumSize:hdrLen]) {
			t.Errorf("segment %d: TCP options differ", i)
		}
		want := stcp.Flags()
		if !last {
			want &^= header.TCPFlagFin | header.TCPFlagPsh
		}
		if i > 0 {
			want &^= header.TCPFlagCwr
		}
		if tcp.Flags() != want {
			t.Errorf("segment %d: flags %v, want %v", i, tcp.Flags(), want)
		}
	}
	if !bytes.Equal(payload, super[hdrLen:]) {
		t.Errorf("segments carry %d payload bytes, not the superpacket's %d", len(payload), len(super)-hdrLen)
	}
}

func TestSplitNone(t *testing.T) {
	rng := rand.New(rand.NewPCG(13, 14))
	h, pkt := build(t, rng, spec{payload: 333, optLen: 12})
	out, sizes := outBufs(1, testOffset+1000)
	n, err := Split(h, pkt, out, sizes, testOffset)
	if err != nil || n != 1 || sizes[0] != len(pkt) {
		t.Fatalf("Split(GSO_NONE) = %d, %v, size %d; want 1 packet of %d", n, err, sizes[0], len(pkt))
	}
	got := out[0][testOffset : testOffset+n*sizes[0]]
	if c, want := be16(field(h, got)), refChecksum(got, int(h.CsumStart)); !sameChecksum(c, want) {
		t.Errorf("checksum %#04x, want %#04x", c, want)
	}
}

func TestSplitErrors(t *testing.T) {
	rng := rand.New(rand.NewPCG(15, 16))
	h, pkt := build(t, rng, spec{optLen: 12, payload: 10000, mss: 1000})
	tests := []struct {
		name   string
		mutate func(h *Hdr, pkt []byte)
		nout   int
		size   int
		want   error
	}{
		{"too few buffers", nil, 9, 2000, ErrTooManySegments},
		{"short buffer", nil, 10, testOffset + 1000, ErrShortBuffer},
		{"mss zero", func(h *Hdr, _ []byte) { h.GSOSize = 0 }, 10, 2000, ErrMalformed},
		{"tcpv6 type on ipv4", func(h *Hdr, _ []byte) { h.GSOType = GSOTCPv6 }, 10, 2000, ErrMalformed},
		{"ufo", func(h *Hdr, _ []byte) { h.GSOType = GSOUDP }, 10, 2000, ErrMalformed},
		{"csum offset", func(h *Hdr, _ []byte) { h.CsumOffset = 6 }, 10, 2000, ErrMalformed},
		{"csum start", func(h *Hdr, _ []byte) { h.CsumStart = 24 }, 10, 2000, ErrMalformed},
		{"tcp data offset", func(_ *Hdr, p []byte) { p[20+12] = 4 << 4 }, 10, 2000, ErrMalformed},
		{"protocol", func(_ *Hdr, p []byte) { p[9] = 17 }, 10, 2000, ErrMalformed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h, pkt := h, bytes.Clone(pkt)
			if tt.mutate != nil {
				tt.mutate(&h, pkt)
			}
			out, sizes := outBufs(tt.nout, tt.size)
			if _, err := Split(h, pkt, out, sizes, testOffset); !errors.Is(err, tt.want) {
				t.Errorf("Split = %v, want %v", err, tt.want)
			}
		})
	}
	if !errors.Is(ErrTooManySegments, tun.ErrTooManySegments) {
		t.Errorf("ErrTooManySegments does not wrap tun.ErrTooManySegments")
	}
}

// TestAcceptFixesHdrLen checks that Read's check recomputes a HdrLen that
// covers a whole segment, as the kernel reports on the forwarding path.
func TestAcceptFixesHdrLen(t *testing.T) {
	rng := rand.New(rand.NewPCG(17, 18))
	h, pkt := build(t, rng, spec{optLen: 12, payload: 5000, mss: 1448})
	want := h.HdrLen
	h.HdrLen += h.GSOSize
	b := make([]byte, VirtioHdrLen+len(pkt))
	h.Encode(b)
	copy(b[VirtioHdrLen:], pkt)
	if isGSO, ok := accept(b); !isGSO || !ok {
		t.Fatalf("accept = %v, %v; want a good superpacket", isGSO, ok)
	}
	if got := ParseHdr(b).HdrLen; got != want {
		t.Errorf("HdrLen = %d after accept, want %d", got, want)
	}
	b[1] = uint8(GSOTCPv6)
	if _, ok := accept(b); ok {
		t.Errorf("accept took a TCPv6 superpacket holding IPv4")
	}
}

// FuzzSplit feeds arbitrary headers and packets to Split: it must not
// panic, and what it accepts must carry the packet's payload exactly.
func FuzzSplit(f *testing.F) {
	rng := rand.New(rand.NewPCG(19, 20))
	for _, s := range []spec{
		{optLen: 12, payload: 3000, mss: 1000},
		{v6: true, payload: 100, mss: 60},
		{udp: true, payload: 2500, mss: 1200},
		{payload: 10},
	} {
		h, pkt := build(f, rng, s)
		b := make([]byte, VirtioHdrLen)
		h.Encode(b)
		f.Add(b, pkt)
	}
	out, sizes := outBufs(BatchSize, testOffset+MaxPacket)
	f.Fuzz(func(t *testing.T, hb, pkt []byte) {
		if len(hb) < VirtioHdrLen {
			return
		}
		h := ParseHdr(hb)
		n, err := Split(h, pkt, out, sizes, testOffset)
		if err != nil || !h.IsGSO() {
			return
		}
		fixed, s, _ := checkGSO(h, pkt)
		var total int
		for i := range n {
			seg := out[i][testOffset : testOffset+sizes[i]]
			if !bytes.Equal(seg[fixed.HdrLen:], pkt[s.hdrLen+total:s.hdrLen+total+len(seg)-s.hdrLen]) {
				t.Fatalf("segment %d payload differs", i)
			}
			total += len(seg) - s.hdrLen
		}
		if total != len(pkt)-s.hdrLen {
			t.Fatalf("segments carry %d payload bytes, want %d", total, len(pkt)-s.hdrLen)
		}
	})
}

func TestNoAllocs(t *testing.T) {
	rng := rand.New(rand.NewPCG(21, 22))
	h, pkt := build(t, rng, spec{optLen: 12, payload: 60000, mss: 1448})
	hn, small := build(t, rng, spec{payload: 100})
	out, sizes := outBufs(BatchSize, testOffset+2000)
	hb := make([]byte, VirtioHdrLen)
	for name, fn := range map[string]func(){
		"Split":             func() { Split(h, pkt, out, sizes, testOffset) },
		"Finish":            func() { Finish(hn, small) },
		"UpdatePartialAddr": func() { UpdatePartialAddr(field(hn, small), [4]byte{1, 2, 3, 4}, [4]byte{5, 6, 7, 8}) },
		"ParseHdr+Encode":   func() { ParseHdr(hb).Encode(hb) },
	} {
		if allocs := testing.AllocsPerRun(50, fn); allocs != 0 {
			t.Errorf("%s allocates %.1f times per call, want 0", name, allocs)
		}
	}
}

// TestCoalesce: a TCP superpacket becomes one segment carrying the same
// bytes, with valid IP and TCP checksums (checked with gVisor's own
// functions, and with the lab's checker for IPv4).
func TestCoalesce(t *testing.T) {
	tests := []struct {
		name string
		s    spec
		err  error
	}{
		{"tcpv4", spec{optLen: 12, payload: 65535 - 20 - 32, mss: 1448}, nil},
		{"tcpv4 fin", spec{payload: 3000, mss: 1460, flags: header.TCPFlagAck | header.TCPFlagFin}, nil},
		{"tcpv6", spec{v6: true, optLen: 12, payload: 30000, mss: 1428}, nil},
		{"not gso", spec{payload: 1000}, nil},
		{"udp", spec{udp: true, payload: 4000, mss: 1000}, ErrGSO},
	}
	rng := rand.New(rand.NewPCG(13, 14))
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h, pkt := build(t, rng, tt.s)
			orig := bytes.Clone(pkt)
			err := Coalesce(h, pkt)
			if !errors.Is(err, tt.err) {
				t.Fatalf("Coalesce: %v, want %v", err, tt.err)
			}
			if err != nil {
				return
			}
			l4 := int(h.CsumStart)
			if !bytes.Equal(pkt[l4+20:], orig[l4+20:]) {
				t.Error("payload or options changed")
			}
			var src, dst tcpip.Address
			if tt.s.v6 {
				ip := header.IPv6(pkt)
				if int(ip.PayloadLength()) != len(pkt)-40 {
					t.Errorf("payload length %d, want %d", ip.PayloadLength(), len(pkt)-40)
				}
				src, dst = ip.SourceAddress(), ip.DestinationAddress()
			} else {
				ip := header.IPv4(pkt)
				if int(ip.TotalLength()) != len(pkt) || !ip.IsChecksumValid() {
					t.Errorf("IPv4 total length %d (want %d), checksum valid %v", ip.TotalLength(), len(pkt), ip.IsChecksumValid())
				}
				src, dst = ip.SourceAddress(), ip.DestinationAddress()
			}
			tcp := header.TCP(pkt[l4:])
			payload := pkt[l4+int(tcp.DataOffset()):]
			if !tcp.IsChecksumValid(src, dst, checksum.Checksum(payload, 0), uint16(len(payload))) {
				t.Error("TCP checksum not valid")
			}
		})
	}
}

// TestJoin: a TCP superpacket becomes one segment whose lengths cover it,
// with its partial TCP checksum left alone; UDP cannot be one datagram.
func TestJoin(t *testing.T) {
	rng := rand.New(rand.NewPCG(15, 16))
	for _, tt := range []struct {
		name string
		s    spec
		err  error
	}{
		{"tcpv4", spec{optLen: 12, payload: 30000, mss: 1448}, nil},
		{"tcpv6", spec{v6: true, payload: 30000, mss: 1428}, nil},
		{"not gso", spec{payload: 1000}, nil},
		{"udp", spec{udp: true, payload: 4000, mss: 1000}, ErrGSO},
	} {
		t.Run(tt.name, func(t *testing.T) {
			h, pkt := build(t, rng, tt.s)
			orig := bytes.Clone(pkt)
			if err := Join(h, pkt); !errors.Is(err, tt.err) {
				t.Fatalf("Join: %v, want %v", err, tt.err)
			}
			if tt.err != nil {
				return
			}
			l4 := int(h.CsumStart)
			if !bytes.Equal(pkt[l4:], orig[l4:]) {
				t.Error("the TCP header or payload changed")
			}
			if tt.s.v6 {
				if ip := header.IPv6(pkt); int(ip.PayloadLength()) != len(pkt)-40 {
					t.Errorf("payload length %d, want %d", ip.PayloadLength(), len(pkt)-40)
				}
			} else if ip := header.IPv4(pkt); int(ip.TotalLength()) != len(pkt) || !ip.IsChecksumValid() {
				t.Errorf("IPv4 total length %d (want %d), checksum valid %v", ip.TotalLength(), len(pkt), ip.IsChecksumValid())
			}
		})
	}
}
