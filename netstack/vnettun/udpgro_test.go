package vnettun

import (
	"bytes"
	"math/rand/v2"
	"testing"
)

// datagrams cuts a UDP superpacket built by build into datagrams as a
// local socket sends them into a TUN: each with a partial checksum and
// the virtio header that says so, in a buffer of offset+MaxPacket bytes.
// It returns them and their complete forms.
func datagrams(t *testing.T, h Hdr, super []byte) (partial, complete [][]byte) {
	t.Helper()
	for _, b := range segments(t, h, super) {
		complete = append(complete, bytes.Clone(b[testOffset:]))
		pkt := b[testOffset:]
		ihl := 20
		if pkt[0]>>4 == 6 {
			ihl = 40
		}
		src, dst := pkt[12:16], pkt[16:20]
		if ihl == 40 {
			src, dst = pkt[8:24], pkt[24:40]
		}
		ph := Hdr{Flags: FlagNeedsCsum, CsumStart: uint16(ihl), CsumOffset: udpChecksumOffset}
		ph.Encode(b[testOffset-VirtioHdrLen:])
		store(pkt[ihl+6:], ^pseudoSum(src, dst, protoUDP, len(pkt)-ihl)) // the partial sum itself
		partial = append(partial, b)
	}
	return partial, complete
}

// cutBack cuts what CoalesceUDP returned into complete datagrams.
func cutBack(t *testing.T, got [][]byte) [][]byte {
	t.Helper()
	var back [][]byte
	for _, b := range got {
		h := ParseHdr(b[testOffset-VirtioHdrLen:])
		if !h.IsGSO() {
			c := bytes.Clone(b[testOffset:])
			if h.NeedsCsum() {
				if err := Finish(h, c); err != nil {
					t.Fatal(err)
				}
			}
			back = append(back, c)
			continue
		}
		for _, s := range segments(t, h, b[testOffset:]) {
			back = append(back, s[testOffset:])
		}
	}
	return back
}

// TestCoalesceUDP: datagrams of one flow merge into superpackets that
// Split turns back into the very same datagrams; what may not merge stays.
func TestCoalesceUDP(t *testing.T) {
	rng := rand.New(rand.NewPCG(31, 32))
	tests := []struct {
		name string
		s    spec
		want int // packets after coalescing
	}{
		{"small datagrams", spec{udp: true, payload: 40 * 64, mss: 64}, 1},
		{"short tail", spec{udp: true, payload: 10*1200 + 7, mss: 1200}, 1},
		{"more than a superpacket holds", spec{udp: true, payload: 100 * 64, mss: 64}, 2},
		{"too long for one", spec{udp: true, payload: 60 * 1400, mss: 1400}, 2},
	}
	for _, v6 := range []bool{false, true} {
		for _, tt := range tests {
			tt.s.v6 = v6
			if v6 {
				tt.name += ", IPv6"
			}
			t.Run(tt.name, func(t *testing.T) {
				h, super := build(t, rng, tt.s)
				partial, complete := datagrams(t, h, super)
				got := CoalesceUDP(partial, testOffset)
				if len(got) != tt.want {
					t.Fatalf("%d datagrams became %d packets, want %d", len(complete), len(got), tt.want)
				}
				back := cutBack(t, got)
				if len(back) != len(complete) {
					t.Fatalf("%d datagrams back, want %d", len(back), len(complete))
				}
				for i := range complete {
					if !bytes.Equal(back[i], complete[i]) {
						t.Fatalf("datagram %d differs after coalescing and Split", i)
					}
				}
			})
		}
	}
}

// TestCoalesceUDPKeepsApart: two interleaved flows merge per flow; a
// datagram of another size, a complete checksum or another TTL ends a
// run, and the datagrams after it keep their order.
func TestCoalesceUDPKeepsApart(t *testing.T) {
	rng := rand.New(rand.NewPCG(33, 34))
	h1, s1 := build(t, rng, spec{udp: true, payload: 6 * 100, mss: 100})
	h2, s2 := build(t, rng, spec{udp: true, payload: 6 * 100, mss: 100})
	a, _ := datagrams(t, h1, s1)
	b, _ := datagrams(t, h2, s2)
	var batch [][]byte
	for i := range a {
		batch = append(batch, a[i], b[i])
	}
	if got := CoalesceUDP(batch, testOffset); len(got) != 2 {
		t.Fatalf("two interleaved flows became %d packets, want 2", len(got))
	}

	for _, tt := range []struct {
		name  string
		spoil func(b []byte)
	}{
		{"complete checksum", func(b []byte) { ClearHdr(b[testOffset-VirtioHdrLen:]) }},
		{"ttl", func(b []byte) { b[testOffset+8]--; fixIPSum(b[testOffset:]) }},
		{"longer", func(b []byte) { grow(b, 1) }},
	} {
		t.Run(tt.name, func(t *testing.T) {
			segs, complete := datagrams(t, h1, s1)
			tt.spoil(segs[3])
			if tt.name == "longer" {
				segs[3] = segs[3][:len(segs[3])+1]
			}
			got := CoalesceUDP(segs, testOffset)
			if len(got) < 2 {
				t.Fatalf("a spoiled datagram was merged: %d packets", len(got))
			}
			back := cutBack(t, got)
			if len(back) != len(complete) {
				t.Fatalf("%d datagrams back, want %d", len(back), len(complete))
			}
			for i, c := range complete {
				// Order kept: compare the payload (the spoiled one's
				// headers differ).
				if i != 3 && !bytes.Equal(back[i][28:], c[28:]) {
					t.Fatalf("datagram %d differs or moved", i)
				}
			}
		})
	}
}

// grow makes the datagram in b n bytes longer (lengths only; the byte
// added is whatever the buffer holds).
func grow(b []byte, n int) {
	pkt := b[testOffset:]
	l := len(pkt) + n
	pkt = b[testOffset : testOffset+l]
	pkt[2], pkt[3] = byte(l>>8), byte(l)
	pkt[24], pkt[25] = byte((l-20)>>8), byte(l-20)
	fixIPSum(pkt)
}

func TestCoalesceUDPNoAllocs(t *testing.T) {
	rng := rand.New(rand.NewPCG(35, 36))
	h, super := build(t, rng, spec{udp: true, payload: 40 * 64, mss: 64})
	segs, _ := datagrams(t, h, super)
	orig := make([][]byte, len(segs))
	for i, s := range segs {
		orig[i] = bytes.Clone(s)
	}
	batch := make([][]byte, len(segs))
	merged := 0
	allocs := testing.AllocsPerRun(20, func() {
		for i, o := range orig { // coalescing changed the buffers: start again
			batch[i] = segs[i][:len(o)]
			copy(batch[i], o)
		}
		merged = len(CoalesceUDP(batch, testOffset))
	})
	if merged != 1 {
		t.Fatalf("CoalesceUDP made %d packets, want 1", merged)
	}
	if allocs != 0 {
		t.Fatalf("%v allocations per batch", allocs)
	}
}
