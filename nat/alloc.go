package nat

import (
	"errors"
	"math/bits"
	"math/rand/v2"
	"net/netip"
)

// portSet is a bitmap of the 65536 ports (or ICMP identifiers) of one
// protocol on one external address: 8 KiB, constant-time to take and free a
// port, and cheap to scan for a free one.
type portSet [65536 / 64]uint64

func (s *portSet) used(p uint16) bool { return s[p/64]&(1<<(p%64)) != 0 }
func (s *portSet) set(p uint16)       { s[p/64] |= 1 << (p % 64) }
func (s *portSet) clear(p uint16)     { s[p/64] &^= 1 << (p % 64) }

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
		s = new(portSet)
		if p != ICMP {
			s.set(0) // port 0 is never a real port
		}
		a.sets[k] = s
	}
	return s
}

// reserve takes a specific port for inbound connections. It fails with
// ErrPortInUse when the port is taken, or with the host's reason.
func (a *allocator) reserve(p Proto, ap netip.AddrPort) error {
	s, port := a.set(p, ap.Addr()), ap.Port()
	if s.used(port) {
		return ErrPortInUse
	}
	if err := a.hold(p, ap, true); err != nil {
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
// it is free (port preservation); otherwise it draws a random port of the
// same parity (RFC 4787 REQ-4) in the same range (REQ-3a: 1-1023 for
// privileged ports, 1024-65535 for the rest), as RFC 6056 algorithm 1 does,
// and scans upwards from there. ICMP identifiers use the whole 0-65535 range
// and ignore parity.
func (a *allocator) allocate(p Proto, addr netip.Addr, want uint16) (uint16, bool) {
	s := a.set(p, addr)
	if !s.used(want) {
		switch err := a.hold(p, netip.AddrPortFrom(addr, want), false); {
		case err == nil:
			s.set(want)
			return want, true
		case !errors.Is(err, ErrPortInUse):
			return 0, false
		}
	}
	lo, hi := 1024, 65535
	switch {
	case p == ICMP:
		lo = 0
	case want < 1024:
		lo, hi = 1, 1023
	}
	if p == ICMP {
		return a.scan(p, addr, s, lo, hi, 1, 0)
	}
	// Walk the ports of want's parity from a random one (RFC 6056
	// algorithm 1 keeps randomness; parity is RFC 4787 REQ-4).
	return a.scan(p, addr, s, lo&^1, hi, 2, int(want&1))
}

// scan takes the first free port of the form base+k*step+off, at most hi,
// trying k from a random start. Port 0 is marked used in TCP and UDP sets, so
// it is never returned for them.
func (a *allocator) scan(p Proto, addr netip.Addr, s *portSet, base, hi, step, off int) (uint16, bool) {
	n := (hi-base)/step + 1
	start := a.rand.IntN(n)
	busy := 0
	for i := 0; i < n && busy < maxBusy; i++ {
		port := base + (start+i)%n*step + off
		if port > hi || s.used(uint16(port)) {
			continue
		}
		switch err := a.hold(p, netip.AddrPortFrom(addr, uint16(port)), false); {
		case err == nil:
			s.set(uint16(port))
			return uint16(port), true
		case !errors.Is(err, ErrPortInUse):
			return 0, false
		}
		busy++
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
	busy := 0
	for i := 0; i < blocks && busy < maxBusy; i++ {
		base := (first + (start+i)%blocks) * n
		if !a.blockFree(s, base, n) {
			continue
		}
		switch err := a.holdBlock(p, addr, base, n); {
		case err == nil:
			for j := 0; j < n; j++ {
				s.set(uint16(base + j))
			}
			return uint16(base), true
		case !errors.Is(err, ErrPortInUse):
			return 0, false
		}
		busy++
	}
	return 0, false
}

// holdBlock claims the n ports from base on the host, all or nothing.
func (a *allocator) holdBlock(p Proto, addr netip.Addr, base, n int) error {
	for j := 0; j < n; j++ {
		if err := a.hold(p, netip.AddrPortFrom(addr, uint16(base+j)), true); err != nil {
			for k := 0; k < j; k++ {
				a.ports.Release(p, netip.AddrPortFrom(addr, uint16(base+k)))
			}
			return err
		}
	}
	return nil
}

func (a *allocator) blockFree(s *portSet, base, n int) bool {
	for j := 0; j < n; j++ {
		if s.used(uint16(base + j)) {
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
	for _, w := range s {
		used += bits.OnesCount64(w)
	}
	return 65536 - used
}
