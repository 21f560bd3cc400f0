package nat

import (
	"errors"
	"math/bits"
	"math/rand/v2"
	"net/netip"
	"sync/atomic"
)

// portSet is the 65536 ports (or ICMP identifiers) of one protocol on one
// external address: a bitmap of those taken, a summary saying which of its
// 64-port words still hold a free port of each parity, and the mapping
// that holds each port. Taking or freeing a port is constant time, and so
// is finding a free one however full the set is: one look at the wanted
// port's word, then at most the 16 words of the summary and the one word
// it points to.
type portSet struct {
	used [1024]uint64
	// free[par] has bit w set when used[w] has a free port of parity par
	// (0 even, 1 odd).
	free [2][16]uint64
	// owner holds the mapping on each port, for lock-free lookups by
	// external endpoint (writes under Table.mu).
	owner *[65536]atomic.Pointer[mapping]
}

const (
	evenPorts uint64 = 0x5555555555555555 // bit i is port 64w+i: even i, even port
	oddPorts  uint64 = 0xaaaaaaaaaaaaaaaa
)

func newPortSet(p Proto) *portSet {
	s := &portSet{owner: new([65536]atomic.Pointer[mapping])}
	for i := range s.free {
		for j := range s.free[i] {
			s.free[i][j] = ^uint64(0)
		}
	}
	if p != ICMP {
		s.set(0) // port 0 is never a real port
	}
	return s
}

func (s *portSet) isUsed(p uint16) bool { return s.used[p/64]&(1<<(p%64)) != 0 }

func (s *portSet) set(p uint16) {
	s.used[p/64] |= 1 << (p % 64)
	s.summarize(int(p / 64))
}

func (s *portSet) clear(p uint16) {
	s.used[p/64] &^= 1 << (p % 64)
	s.summarize(int(p / 64))
}

// summarize updates the summary bits of word w.
func (s *portSet) summarize(w int) {
	free := ^s.used[w]
	for par, mask := range [2]uint64{evenPorts, oddPorts} {
		if free&mask != 0 {
			s.free[par][w/64] |= 1 << (w % 64)
		} else {
			s.free[par][w/64] &^= 1 << (w % 64)
		}
	}
}

// parity selects the ports a search may return.
type parity uint8

const (
	evenOnly parity = iota
	oddOnly
	anyParity
)

func (par parity) mask() uint64 {
	switch par {
	case evenOnly:
		return evenPorts
	case oddOnly:
		return oddPorts
	}
	return ^uint64(0)
}

// summary returns summary word k for par.
func (s *portSet) summary(par parity, k int) uint64 {
	switch par {
	case evenOnly, oddOnly:
		return s.free[par][k]
	}
	return s.free[0][k] | s.free[1][k]
}

// findFree returns the first free port of parity par at or after start,
// going round within the words wlo..whi (inclusive; start lies in them).
func (s *portSet) findFree(start uint16, wlo, whi int, par parity) (uint16, bool) {
	w, bit := int(start/64), start%64
	mask := par.mask()
	if c := ^s.used[w] & mask &^ (1<<bit - 1); c != 0 {
		return uint16(w*64 + bits.TrailingZeros64(c)), true
	}
	// The words after w, then round from wlo to w itself, whose ports
	// below start are the last candidates.
	v, ok := s.nextWord(w+1, whi, par)
	if !ok {
		v, ok = s.nextWord(wlo, w, par)
	}
	if !ok {
		return 0, false
	}
	return uint16(v*64 + bits.TrailingZeros64(^s.used[v]&mask)), true
}

// nextWord returns the first word in from..to (inclusive) that the summary
// marks as holding a free port of parity par.
func (s *portSet) nextWord(from, to int, par parity) (int, bool) {
	for from <= to {
		k, b := from/64, from%64
		if sum := s.summary(par, k) >> b; sum != 0 {
			v := from + bits.TrailingZeros64(sum)
			return v, v <= to
		}
		from = (k + 1) * 64
	}
	return 0, false
}

// allocator hands out external ports, one port space per protocol and
// external address. It is not safe for concurrent use; the table serializes
// calls to it.
type allocator struct {
	sets  map[portSpace]*portSet
	rand  *rand.Rand
	ports Ports // nil: the ports are fwx's alone (router mode)
}

type portSpace struct {
	proto Proto
	addr  netip.Addr
}

func newAllocator(r *rand.Rand, ports Ports) *allocator {
	return &allocator{sets: make(map[portSpace]*portSet), rand: r, ports: ports}
}

// maxBusy bounds how many ports the host may turn down in one allocation
// before it fails: past that the host is short of ports, and scanning on
// would only hold the table's lock longer.
const maxBusy = 64

// hold claims a port the bitmap has free on the host, when there is one.
// An error wrapping ErrPortInUse means the host has that port; any other
// means the host failed, and no other port will do either.
func (a *allocator) hold(p Proto, ap netip.AddrPort, inbound bool) error {
	if a.ports == nil {
		return nil
	}
	return a.ports.Hold(p, ap, inbound)
}

func (a *allocator) set(p Proto, addr netip.Addr) *portSet {
	k := portSpace{p, addr}
	s := a.sets[k]
	if s == nil {
		s = newPortSet(p)
		a.sets[k] = s
	}
	return s
}

// reserve takes a specific port for inbound connections. It fails with
// ErrPortInUse when the port is taken, or with the host's reason.
func (a *allocator) reserve(p Proto, ap netip.AddrPort) error { return a.take(p, ap, true) }

// take takes the specific port ap: for inbound connections, or for a
// mapping's flows.
func (a *allocator) take(p Proto, ap netip.AddrPort, inbound bool) error {
	s, port := a.set(p, ap.Addr()), ap.Port()
	if s.isUsed(port) {
		return ErrPortInUse
	}
	if err := a.hold(p, ap, inbound); err != nil {
		return err
	}
	s.set(port)
	return nil
}

// release frees a port taken by reserve, allocate or allocateBlock.
func (a *allocator) release(p Proto, ap netip.AddrPort) {
	a.set(p, ap.Addr()).clear(ap.Port())
	if a.ports != nil {
		a.ports.Release(p, ap)
	}
}

// allocate picks an external port for an inside port want. It keeps want when
// it is free (port preservation); otherwise it takes the first free port of
// the same parity (RFC 4787 REQ-4) in the same range (REQ-3a: 1-1023 for
// privileged ports, 1024-65535 for the rest) from a random one, as RFC 6056
// algorithm 1 does. ICMP identifiers use the whole 0-65535 range and ignore
// parity.
func (a *allocator) allocate(p Proto, addr netip.Addr, want uint16) (uint16, bool) {
	s := a.set(p, addr)
	if !s.isUsed(want) {
		switch err := a.hold(p, netip.AddrPortFrom(addr, want), false); {
		case err == nil:
			s.set(want)
			return want, true
		case !errors.Is(err, ErrPortInUse):
			return 0, false
		}
	}
	lo, hi, par := 1024, 65535, parity(want&1)
	switch {
	case p == ICMP:
		lo, par = 0, anyParity
	case want < 1024:
		lo, hi = 0, 1023 // port 0 is marked used
	}
	start := uint16(lo + a.rand.IntN(hi-lo+1))
	for busy := 0; busy < maxBusy; busy++ {
		port, ok := s.findFree(start, lo/64, hi/64, par)
		if !ok {
			return 0, false
		}
		switch err := a.hold(p, netip.AddrPortFrom(addr, port), false); {
		case err == nil:
			s.set(port)
			return port, true
		case !errors.Is(err, ErrPortInUse):
			return 0, false
		}
		// The host has it: go on after it.
		start = port + 1
		if int(start) > hi || start == 0 {
			start = uint16(lo)
		}
	}
	return 0, false
}

// allocateBlock takes n consecutive free ports whose lowest is a multiple of
// n, all or nothing, starting the search at a random aligned block. It
// serves requests for port pairs and ranges (ISA's BindForClient with N > 1;
// RTP and RTCP).
func (a *allocator) allocateBlock(p Proto, addr netip.Addr, n int) (uint16, bool) {
	if n <= 0 || n > 1024 {
		return 0, false
	}
	s := a.set(p, addr)
	first := (1024 + n - 1) / n // lowest block at or above 1024
	blocks := 65536/n - first
	if blocks <= 0 {
		return 0, false
	}
	start := a.rand.IntN(blocks)
	if n <= 64 && n&(n-1) == 0 {
		return a.allocateAlignedBlock(p, addr, s, n, (first+start)*n)
	}
	busy := 0
	for i := 0; i < blocks && busy < maxBusy; i++ {
		base := (first + (start+i)%blocks) * n
		if !a.blockFree(s, base, n) {
			continue
		}
		switch err := a.holdBlock(p, addr, s, base, n); {
		case err == nil:
			return uint16(base), true
		case !errors.Is(err, ErrPortInUse):
			return 0, false
		}
		busy++
	}
	return 0, false
}

// allocateAlignedBlock serves blocks of a power of two up to 64 ports,
// which never straddle a word: a word's free blocks are found with a few
// shifts, and words without a free port are skipped by the summary.
func (a *allocator) allocateAlignedBlock(p Proto, addr netip.Addr, s *portSet, n, start int) (uint16, bool) {
	aligned := ^uint64(0) / (1<<n - 1) // bits at multiples of n
	if n == 64 {
		aligned = 1
	}
	w0, busy := start/64, 0
	const wlo, whi = 16, 1023
	for i := 0; i <= whi-wlo+1 && busy < maxBusy; i++ {
		w := wlo + (w0-wlo+i)%(whi-wlo+1)
		if s.summary(anyParity, w/64)&(1<<(w%64)) == 0 {
			continue
		}
		free := ^s.used[w]
		for k := 1; k < n; k <<= 1 {
			free &= free >> k
		}
		for c := free & aligned; c != 0 && busy < maxBusy; c &= c - 1 {
			base := w*64 + bits.TrailingZeros64(c)
			switch err := a.holdBlock(p, addr, s, base, n); {
			case err == nil:
				return uint16(base), true
			case !errors.Is(err, ErrPortInUse):
				return 0, false
			}
			busy++
		}
	}
	return 0, false
}

// holdBlock claims the n ports from base on the host, all or nothing, and
// marks them taken.
func (a *allocator) holdBlock(p Proto, addr netip.Addr, s *portSet, base, n int) error {
	for j := 0; j < n; j++ {
		if err := a.hold(p, netip.AddrPortFrom(addr, uint16(base+j)), true); err != nil {
			for k := 0; k < j; k++ {
				a.ports.Release(p, netip.AddrPortFrom(addr, uint16(base+k)))
			}
			return err
		}
	}
	for j := 0; j < n; j++ {
		s.set(uint16(base + j))
	}
	return nil
}

func (a *allocator) blockFree(s *portSet, base, n int) bool {
	for j := 0; j < n; j++ {
		if s.isUsed(uint16(base + j)) {
			return false
		}
	}
	return true
}

// free reports how many ports of p are free; tests use it to check that
// nothing leaks.
func (a *allocator) free(p Proto, addr netip.Addr) int {
	s := a.set(p, addr)
	used := 0
	for _, w := range s.used {
		used += bits.OnesCount64(w)
	}
	return 65536 - used
}
