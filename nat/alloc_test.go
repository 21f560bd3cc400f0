package nat

import (
	"math/rand/v2"
	"net/netip"
	"testing"
)

var extAddr = netip.MustParseAddr("198.51.100.1")

func newTestAllocator() *allocator { return newAllocator(rand.New(rand.NewPCG(1, 2)), nil) }

func TestAllocatePreservesFreePort(t *testing.T) {
	a := newTestAllocator()
	for _, want := range []uint16{40000, 40001, 80, 65535} {
		got, ok := a.allocate(UDP, extAddr, want)
		if !ok || got != want {
			t.Errorf("allocate(%d) = %d, %v; want the port itself", want, got, ok)
		}
	}
}

func TestAllocateKeepsParityAndRange(t *testing.T) {
	tests := []struct {
		name   string
		want   uint16
		lo, hi uint16
	}{
		{"even unprivileged", 40000, 1024, 65535},
		{"odd unprivileged", 40001, 1024, 65535},
		{"even privileged", 80, 1, 1023},
		{"odd privileged", 53, 1, 1023},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a := newTestAllocator()
			if a.reserve(TCP, netip.AddrPortFrom(extAddr, tt.want)) != nil {
				t.Fatal("reserve failed")
			}
			seen := map[uint16]bool{}
			for i := 0; i < 200; i++ {
				got, ok := a.allocate(TCP, extAddr, tt.want)
				if !ok {
					t.Fatal("allocate failed")
				}
				if got == tt.want || seen[got] {
					t.Fatalf("allocate returned taken port %d", got)
				}
				seen[got] = true
				if got%2 != tt.want%2 {
					t.Errorf("port %d has other parity than %d", got, tt.want)
				}
				if got < tt.lo || got > tt.hi {
					t.Errorf("port %d outside %d-%d", got, tt.lo, tt.hi)
				}
			}
		})
	}
}

func TestAllocateExhaustion(t *testing.T) {
	a := newTestAllocator()
	// Privileged odd ports: 512 of them between 1 and 1023.
	n := 0
	for {
		if _, ok := a.allocate(UDP, extAddr, 53); !ok {
			break
		}
		n++
	}
	if n != 512 {
		t.Errorf("allocated %d odd privileged ports, want 512", n)
	}
	a.release(UDP, netip.AddrPortFrom(extAddr, 101))
	if got, ok := a.allocate(UDP, extAddr, 53); !ok || got != 101 {
		t.Errorf("after release got %d, %v; want 101", got, ok)
	}
}

func TestAllocateBlockAligned(t *testing.T) {
	a := newTestAllocator()
	for _, n := range []int{1, 2, 3, 4, 8, 10} {
		for i := 0; i < 20; i++ {
			base, ok := a.allocateBlock(UDP, extAddr, n)
			if !ok {
				t.Fatalf("block of %d failed", n)
			}
			if int(base)%n != 0 || base < 1024 {
				t.Errorf("block of %d starts at %d: not a multiple of n above 1023", n, base)
			}
			for j := 0; j < n; j++ {
				if a.reserve(UDP, netip.AddrPortFrom(extAddr, base+uint16(j))) == nil {
					t.Errorf("port %d of block not taken", int(base)+j)
				}
			}
		}
	}
}

func TestAllocateBlockAllOrNothing(t *testing.T) {
	a := newTestAllocator()
	// Take one port in every aligned pair: no pair is free.
	for p := 1024; p < 65536; p += 2 {
		a.reserve(UDP, netip.AddrPortFrom(extAddr, uint16(p)+1))
	}
	before := a.free(UDP, extAddr)
	if _, ok := a.allocateBlock(UDP, extAddr, 2); ok {
		t.Fatal("allocated a pair where none is free")
	}
	if after := a.free(UDP, extAddr); after != before {
		t.Errorf("failed block allocation leaked %d ports", before-after)
	}
}

func TestPortSpacesAreSeparate(t *testing.T) {
	a := newTestAllocator()
	other := netip.MustParseAddr("198.51.100.9")
	for _, k := range []struct {
		p    Proto
		addr netip.Addr
	}{{TCP, extAddr}, {UDP, extAddr}, {TCP, other}, {ICMP, extAddr}} {
		if got, ok := a.allocate(k.p, k.addr, 5000); !ok || got != 5000 {
			t.Errorf("%v %v: got %d, want 5000 preserved", k.p, k.addr, got)
		}
	}
}

// BenchmarkAllocateNearlyFull measures taking a port when all but a few of
// the 64,512 unprivileged ones are taken: the wanted port is busy, so the
// allocator must find one of the few free ones (then gives it back).
func BenchmarkAllocateNearlyFull(b *testing.B) {
	a := newTestAllocator()
	const free = 8
	for port := 1024; port < 65536-free; port++ {
		if _, ok := a.allocate(UDP, extAddr, uint16(port)); !ok {
			b.Fatalf("port %d not free", port)
		}
	}
	for b.Loop() {
		port, ok := a.allocate(UDP, extAddr, 40000)
		if !ok {
			b.Fatal("no port found among the free ones")
		}
		a.release(UDP, netip.AddrPortFrom(extAddr, port))
	}
}

// TestFindFreeMatchesScan fills port sets at random, to many levels, and
// checks findFree against a plain scan: the same port for every start,
// range and parity, and none when the scan finds none.
func TestFindFreeMatchesScan(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	scan := func(s *portSet, start uint16, lo, hi int, par parity) (uint16, bool) {
		n := hi - lo + 1
		for i := 0; i < n; i++ {
			p := lo + (int(start)-lo+i)%n
			if !s.isUsed(uint16(p)) && (par == anyParity || p&1 == int(par)) {
				return uint16(p), true
			}
		}
		return 0, false
	}
	for _, fill := range []float64{0, 0.5, 0.99, 0.9999, 1} {
		s := newPortSet(UDP)
		for p := range 65536 {
			if r.Float64() < fill {
				s.set(uint16(p))
			}
		}
		for range 400 {
			lo, hi := 1024, 65535
			if r.IntN(4) == 0 {
				lo, hi = 0, 1023
			}
			par := parity(r.IntN(3))
			start := uint16(lo + r.IntN(hi-lo+1))
			got, gok := s.findFree(start, lo/64, hi/64, par)
			want, wok := scan(s, start, lo, hi, par)
			if got != want || gok != wok {
				t.Fatalf("fill %v: findFree(%d, %d-%d, %v) = %d, %v; a scan finds %d, %v", fill, start, lo, hi, par, got, gok, want, wok)
			}
		}
	}
}

// TestAllocateBlockFree checks aligned blocks on a set with scattered
// ports taken: every block handed out was free and is aligned, and when
// none is returned, no aligned free block remains.
func TestAllocateBlockFree(t *testing.T) {
	for _, n := range []int{1, 2, 3, 4, 8, 16, 32, 64, 128} {
		a := newTestAllocator()
		s := a.set(UDP, extAddr)
		r := rand.New(rand.NewPCG(uint64(n), 5))
		for p := 1024; p < 65536; p++ {
			if r.IntN(3) == 0 {
				s.set(uint16(p))
			}
		}
		for {
			base, ok := a.allocateBlock(UDP, extAddr, n)
			if !ok {
				break
			}
			if int(base)%n != 0 || base < 1024 {
				t.Fatalf("n=%d: block at %d", n, base)
			}
		}
		for base := (1024 + n - 1) / n * n; base+n <= 65536; base += n {
			if a.blockFree(s, base, n) {
				t.Fatalf("n=%d: block %d is free but was not found", n, base)
			}
		}
	}
}
