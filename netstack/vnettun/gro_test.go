package vnettun

import (
	"bytes"
	"math/rand/v2"
	"testing"

	"gvisor.dev/gvisor/pkg/tcpip/header"
)

// segments cuts a TCP superpacket built by build into complete segments,
// each in a buffer of offset+MaxPacket bytes, as a device without offloads
// would deliver them.
func segments(t *testing.T, h Hdr, super []byte) [][]byte {
	t.Helper()
	out, sizes := outBufs(BatchSize, testOffset+MaxPacket)
	n, err := Split(h, super, out, sizes, testOffset)
	if err != nil {
		t.Fatal(err)
	}
	segs := make([][]byte, n)
	for i := range segs {
		segs[i] = out[i][:testOffset+sizes[i]]
	}
	return segs
}

// TestGRO: segments of one flow merge into one superpacket that Split
// turns back into the very same segments; what may not merge stays.
func TestGRO(t *testing.T) {
	rng := rand.New(rand.NewPCG(21, 22))
	ack := header.TCPFlagAck
	tests := []struct {
		name string
		s    spec
		want int // packets after GRO
	}{
		{"full segments", spec{optLen: 12, payload: 40 * 1448, mss: 1448, flags: ack}, 1},
		{"short tail with psh", spec{payload: 10*1000 + 7, mss: 1000, flags: ack | header.TCPFlagPsh}, 1},
		{"too long for one", spec{payload: 60 * 1460, mss: 1460, flags: ack}, 2},
		{"fin is not merged", spec{payload: 5 * 1000, mss: 1000, flags: ack | header.TCPFlagFin}, 2},
	}
	for _, v6 := range []bool{false, true} {
		for _, tt := range tests {
			tt.s.v6 = v6
			if v6 {
				tt.name += ", IPv6"
			}
			t.Run(tt.name, func(t *testing.T) { checkGRO(t, rng, tt.s, tt.want) })
		}
	}
}

// checkGRO cuts a superpacket of spec s into segments, merges them with
// GRO into want packets, and checks that they cut back into the same
// segments.
func checkGRO(t *testing.T, rng *rand.Rand, s spec, want int) {
	h, super := build(t, rng, s)
	segs := segments(t, h, super)
	orig := make([][]byte, len(segs))
	for i, s := range segs {
		orig[i] = bytes.Clone(s[testOffset:])
	}
	got := GRO(segs, testOffset)
	if len(got) != want {
		t.Fatalf("%d segments became %d packets, want %d", len(orig), len(got), want)
	}
	// Cut again what GRO made: the segments must come back.
	var back [][]byte
	for _, b := range got {
		gh := ParseHdr(b[testOffset-VirtioHdrLen:])
		for _, s := range segments(t, gh, b[testOffset:]) {
			back = append(back, s[testOffset:])
		}
	}
	if len(back) != len(orig) {
		t.Fatalf("%d segments back, want %d", len(back), len(orig))
	}
	for i := range orig {
		if !bytes.Equal(back[i], orig[i]) {
			t.Fatalf("segment %d differs after GRO and Split", i)
		}
	}
}

// TestGROKeepsApart: segments of two interleaved flows merge per flow; a
// gap in the sequence, a bad checksum or another ack closes a run.
func TestGROKeepsApart(t *testing.T) {
	rng := rand.New(rand.NewPCG(23, 24))
	ack := header.TCPFlagAck
	h1, s1 := build(t, rng, spec{payload: 6 * 1000, mss: 1000, flags: ack})
	h2, s2 := build(t, rng, spec{payload: 6 * 1000, mss: 1000, flags: ack})
	a, b := segments(t, h1, s1), segments(t, h2, s2)
	var batch [][]byte
	for i := range a {
		batch = append(batch, a[i], b[i])
	}
	if got := GRO(batch, testOffset); len(got) != 2 {
		t.Fatalf("two interleaved flows became %d packets, want 2", len(got))
	}

	for _, tt := range []struct {
		name  string
		spoil func(pkt []byte)
	}{
		{"gap", func(pkt []byte) { pkt[27]++ }},      // sequence number
		{"checksum", func(pkt []byte) { pkt[50]++ }}, // payload byte
		{"ack", func(pkt []byte) { pkt[31]++ }},
	} {
		t.Run(tt.name, func(t *testing.T) {
			segs := segments(t, h1, s1)
			tt.spoil(segs[3][testOffset:])
			if got := GRO(segs, testOffset); len(got) < 2 {
				t.Fatalf("a spoiled segment was merged: %d packets", len(got))
			}
		})
	}
}

func TestGRONoAllocs(t *testing.T) {
	rng := rand.New(rand.NewPCG(25, 26))
	h, super := build(t, rng, spec{optLen: 12, payload: 40 * 1448, mss: 1448, flags: header.TCPFlagAck})
	segs := segments(t, h, super)
	orig := make([][]byte, len(segs))
	for i, s := range segs {
		orig[i] = bytes.Clone(s)
	}
	batch := make([][]byte, len(segs))
	merged := 0
	allocs := testing.AllocsPerRun(20, func() {
		for i, o := range orig { // GRO changed the buffers: start again
			batch[i] = segs[i][:len(o)]
			copy(batch[i], o)
		}
		merged = len(GRO(batch, testOffset))
	})
	if merged != 1 {
		t.Fatalf("GRO made %d packets, want 1", merged)
	}
	if allocs != 0 {
		t.Fatalf("%v allocations per batch", allocs)
	}
}

// fixIPSum recomputes the header checksum of an IPv4 packet without
// options after a test changed it.
func fixIPSum(pkt []byte) {
	pkt[10], pkt[11] = 0, 0
	store(pkt[10:12], sum(pkt[:20], 0))
}
