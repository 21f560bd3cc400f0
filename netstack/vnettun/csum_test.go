package vnettun

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand/v2"
	"testing"

	"gvisor.dev/gvisor/pkg/tcpip/checksum"
)

func TestSumMatchesGVisor(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	buf := make([]byte, 4096)
	fill(rng, buf)
	for range 5000 {
		off := rng.IntN(8) // unaligned starts too
		n := rng.IntN(len(buf) - off)
		b := buf[off : off+n]
		init := uint16(rng.Uint32())
		got, want := sum(b, init), checksum.Checksum(b, init)
		if !sameChecksum(got, want) {
			t.Fatalf("sum(len %d, off %d, init %#04x) = %#04x, gVisor %#04x", n, off, init, got, want)
		}
	}
}

// cases are the packet shapes the checksum tests cover: both families,
// both protocols, TCP options, odd and empty payloads.
var cases = []spec{
	{payload: 0},
	{payload: 1},
	{payload: 1000, optLen: 12},
	{payload: 1461, optLen: 40},
	{v6: true, payload: 1},
	{v6: true, payload: 1220, optLen: 12},
	{udp: true, payload: 0},
	{udp: true, payload: 513},
	{udp: true, v6: true, payload: 1232},
}

func (s spec) String() string {
	fam, proto := "v4", "tcp"
	if s.v6 {
		fam = "v6"
	}
	if s.udp {
		proto = "udp"
	}
	return fmt.Sprintf("%s%s/opt%d/len%d/mss%d", proto, fam, s.optLen, s.payload, s.mss)
}

func TestFinish(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	for _, s := range cases {
		t.Run(s.String(), func(t *testing.T) {
			for range 200 {
				h, pkt := build(t, rng, s)
				if err := Finish(h, pkt); err != nil {
					t.Fatalf("Finish: %v", err)
				}
				got, want := be16(field(h, pkt)), refChecksum(pkt, int(h.CsumStart))
				if !sameChecksum(got, want) {
					t.Fatalf("Finish stored %#04x, want %#04x", got, want)
				}
				if s.udp && got == 0 {
					t.Fatalf("Finish stored 0 in a UDP checksum (means none)")
				}
			}
		})
	}
}

func TestFinishNoOpAndErrors(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	h, pkt := build(t, rng, spec{payload: 100})
	orig := bytes.Clone(pkt)

	complete := h
	complete.Flags = 0
	if err := Finish(complete, pkt); err != nil || !bytes.Equal(pkt, orig) {
		t.Errorf("Finish without NEEDS_CSUM: err %v, packet changed %v", err, !bytes.Equal(pkt, orig))
	}
	gso := h
	gso.GSOType, gso.GSOSize = GSOTCPv4, 50
	if err := Finish(gso, pkt); !errors.Is(err, ErrGSO) {
		t.Errorf("Finish(superpacket) = %v, want ErrGSO", err)
	}
	bad := h
	bad.CsumStart = uint16(len(pkt) - 1)
	if err := Finish(bad, pkt); !errors.Is(err, ErrMalformed) {
		t.Errorf("Finish(offset past end) = %v, want ErrMalformed", err)
	}
	if !bytes.Equal(pkt, orig) {
		t.Errorf("failed Finish modified the packet")
	}
}

// TestPartialNAT proves the rule in the package documentation: a NAT that
// rewrites addresses and ports of a NEEDS_CSUM packet updates the partial
// field with UpdatePartialAddr for the addresses, leaves it alone for the
// ports, and after Finish the checksum equals one computed from scratch
// over the rewritten packet. It also shows that the two tempting
// alternatives are wrong.
func TestPartialNAT(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 8))
	for _, s := range cases {
		t.Run(s.String(), func(t *testing.T) {
			const n = 500
			var rfc1624OK, portOK int
			for range n {
				h, pkt := build(t, rng, s)
				good, rfc, port := bytes.Clone(pkt), bytes.Clone(pkt), bytes.Clone(pkt)

				// SNAT the source, DNAT the destination port.
				na := randAddr(rng, s.v6)
				newSrc := na.AsSlice()
				newPort := uint16(rng.Uint32())
				for _, p := range [][]byte{good, rfc, port} {
					rewrite(p, int(h.CsumStart), newSrc, newPort)
				}
				oldSrc, _ := addrs(pkt)
				srcAt := 12
				if s.v6 {
					srcAt = 8
				}
				if s.v6 {
					UpdatePartialAddr6(field(h, good), oldSrc.As16(), [16]byte(newSrc))
					UpdatePartialAddr6(field(h, port), oldSrc.As16(), [16]byte(newSrc))
				} else {
					UpdatePartialAddr(field(h, good), oldSrc.As4(), [4]byte(newSrc))
					UpdatePartialAddr(field(h, port), oldSrc.As4(), [4]byte(newSrc))
				}
				oldPort := be16(pkt[h.CsumStart+2:])
				rfc1624(field(h, rfc), pkt[srcAt:srcAt+len(newSrc)], newSrc) // wrong: complemented form
				rfc1624(field(h, rfc), u16(oldPort), u16(newPort))           // and ports
				addDelta(field(h, port), u16(oldPort), u16(newPort))         // wrong: ports in partial

				want := refChecksum(good, int(h.CsumStart))
				for _, p := range [][]byte{good, rfc, port} {
					if err := Finish(h, p); err != nil {
						t.Fatalf("Finish: %v", err)
					}
				}
				if got := be16(field(h, good)); !sameChecksum(got, want) {
					t.Fatalf("after UpdatePartialAddr+Finish checksum %#04x, want %#04x", got, want)
				}
				if sameChecksum(be16(field(h, rfc)), want) {
					rfc1624OK++
				}
				if sameChecksum(be16(field(h, port)), want) {
					portOK++
				}
			}
			// The wrong methods are right only by coincidence.
			if rfc1624OK > n/20 || portOK > n/20 {
				t.Errorf("wrong methods matched too often: RFC 1624 %d/%d, port in partial %d/%d", rfc1624OK, n, portOK, n)
			}
		})
	}
}

// rewrite sets the source address and destination port of pkt, whose L4
// header is at l4, without touching any checksum.
func rewrite(pkt []byte, l4 int, src []byte, dport uint16) {
	if len(src) == 16 {
		copy(pkt[8:24], src)
	} else {
		copy(pkt[12:16], src)
	}
	binary.BigEndian.PutUint16(pkt[l4+2:], dport)
}

// rfc1624 is the update for a complete checksum, HC' = ~(~HC + ~m + m').
func rfc1624(f, old, new []byte) {
	s := ^be16(f)
	s = add(s, ^sum(old, 0))
	s = add(s, sum(new, 0))
	binary.BigEndian.PutUint16(f, ^s)
}

// addDelta adds new - old to a partial field, as UpdatePartialAddr does.
func addDelta(f, old, new []byte) { updatePartial(f, old, new) }

func u16(v uint16) []byte { return binary.BigEndian.AppendUint16(nil, v) }

func TestUpdatePartialAddrIdentity(t *testing.T) {
	// Changing an address to itself, or there and back, leaves an
	// equivalent field.
	rng := rand.New(rand.NewPCG(9, 10))
	for range 1000 {
		f := u16(uint16(rng.Uint32()))
		orig := be16(f)
		var a, b [4]byte
		fill(rng, a[:])
		fill(rng, b[:])
		UpdatePartialAddr(f, a, a)
		if !sameChecksum(be16(f), orig) {
			t.Fatalf("a->a changed %#04x to %#04x", orig, be16(f))
		}
		UpdatePartialAddr(f, a, b)
		UpdatePartialAddr(f, b, a)
		if !sameChecksum(be16(f), orig) {
			t.Fatalf("a->b->a changed %#04x to %#04x", orig, be16(f))
		}
	}
}

func BenchmarkSum(b *testing.B) {
	buf := make([]byte, 1500)
	fill(rand.New(rand.NewPCG(1, 1)), buf)
	b.Run("vnettun", func(b *testing.B) {
		b.SetBytes(int64(len(buf)))
		for b.Loop() {
			sum(buf, 0)
		}
	})
	b.Run("gvisor", func(b *testing.B) {
		b.SetBytes(int64(len(buf)))
		for b.Loop() {
			checksum.Checksum(buf, 0)
		}
	})
}
