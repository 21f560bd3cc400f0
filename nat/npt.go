package nat

import (
	"encoding/binary"
	"fmt"
	"net/netip"
	"sync"

	"gvisor.dev/gvisor/pkg/tcpip/checksum"
)

// NPTv6 (RFC 6296): instead of masquerading behind the pool, an inside
// host whose address lies in a translated prefix leaves from the address
// that has the outside prefix instead, one outside address per inside
// address, with its own ports. The mapping is stateless and checksum-
// neutral: one 16-bit word of the address absorbs the difference between
// the prefixes' sums, so a translated packet's transport checksum is what
// it was. fwx stays a stateful firewall around it: flows, the policy and
// the filtering behaviour apply as to NAT66, and nothing unsolicited comes
// in. Flows that take the user-mode path, and pinholes, use the pool, whose
// addresses fwx's netstacks own.

// NPTv6 is one prefix translation: Inside and Outside are IPv6 prefixes of
// the same length, at most 64 bits.
type NPTv6 struct {
	Inside, Outside netip.Prefix
}

// npt is an NPTv6 with its adjustment worked out.
type npt struct {
	NPTv6
	adj uint16 // added to the adjusted word going out, taken off coming in
}

func newNPT(n NPTv6) (npt, error) {
	in, out := n.Inside.Masked(), n.Outside.Masked()
	if !in.Addr().Is6() || !out.Addr().Is6() || in.Addr().Is4In6() || out.Addr().Is4In6() || in.Bits() != out.Bits() ||
		in.Bits() > 64 || in.Bits() < 1 || in.Overlaps(out) {
		return npt{}, fmt.Errorf("nat: NPTv6 %v to %v: want two IPv6 prefixes of one length of at most /64 that do not overlap", n.Inside, n.Outside)
	}
	// RFC 6296 section 3.2: the prefixes' sums (the bits past them zero)
	// differ; the adjusted word takes the difference back, so the
	// address's sum stays.
	a, b := in.Addr().As16(), out.Addr().As16()
	adj := checksum.Combine(checksum.Checksum(a[:8], 0), ^checksum.Checksum(b[:8], 0))
	return npt{NPTv6{in, out}, adj}, nil
}

// word returns the offset of the 16-bit word of a that absorbs the
// adjustment (RFC 6296 sections 3.4 and 3.5): bits 48 to 63 for a prefix
// of 48 bits or less, else the first word of the interface identifier that
// is not 0xffff; -1 if there is none.
func (n *npt) word(a *[16]byte) int {
	if n.Inside.Bits() <= 48 {
		return 6
	}
	for i := 8; i < 16; i += 2 {
		if binary.BigEndian.Uint16(a[i:]) != 0xffff {
			return i
		}
	}
	return -1
}

// translate maps a from prefix from to prefix to, adding adj to the
// adjusted word, and reports false for the addresses RFC 6296 leaves
// untranslated (an adjusted word of 0xffff).
func (n *npt) translate(a netip.Addr, to netip.Prefix, adj uint16) (netip.Addr, bool) {
	b := a.As16()
	w := n.word(&b)
	if w < 0 || binary.BigEndian.Uint16(b[w:]) == 0xffff {
		return netip.Addr{}, false
	}
	p := to.Addr().As16()
	bits := to.Bits()
	for i := 0; i < bits/8; i++ {
		b[i] = p[i]
	}
	if r := bits % 8; r != 0 {
		mask := byte(0xff) << (8 - r)
		b[bits/8] = b[bits/8]&^mask | p[bits/8]&mask
	}
	v := checksum.Combine(binary.BigEndian.Uint16(b[w:]), adj)
	if v == 0xffff {
		v = 0 // RFC 6296 section 3.5: 0xffff stands for zero
	}
	binary.BigEndian.PutUint16(b[w:], v)
	return netip.AddrFrom16(b), true
}

// out returns the outside address of inside address a.
func (n *npt) out(a netip.Addr) (netip.Addr, bool) { return n.translate(a, n.Outside, n.adj) }

// nptOut returns the outside address the table's NPTv6 gives inside
// address a, and false when no translation covers it.
func (t *Table) nptOut(a netip.Addr) (netip.Addr, bool) {
	for i := range t.npts {
		if n := &t.npts[i]; n.Inside.Contains(a) {
			return n.out(a)
		}
	}
	return netip.Addr{}, false
}

// nptOutside reports whether a lies in an NPTv6 outside prefix: an
// address of fwx's.
func (t *Table) nptOutside(a netip.Addr) bool {
	for i := range t.npts {
		if t.npts[i].Outside.Contains(a) {
			return true
		}
	}
	return false
}

// ownsOutside reports whether a is one of fwx's outside addresses: the
// pool's, or one of an NPTv6 outside prefix.
func (t *Table) ownsOutside(a netip.Addr) bool { return t.IsExternal(a) || t.nptOutside(a) }

// nptIndex holds the mappings of NPTv6 addresses by external endpoint:
// they take no port of the allocator (each has an address of its own), so
// the allocator's owner arrays do not know them. Written under Table.mu,
// read by inbound packets under its own read lock.
type nptIndex struct {
	mu sync.RWMutex
	m  map[nptKey]*mapping
}

type nptKey struct {
	proto Proto
	ep    netip.AddrPort
}

func (x *nptIndex) get(p Proto, ep netip.AddrPort) *mapping {
	x.mu.RLock()
	defer x.mu.RUnlock()
	return x.m[nptKey{p, ep}]
}

func (x *nptIndex) put(p Proto, ep netip.AddrPort, m *mapping) {
	x.mu.Lock()
	defer x.mu.Unlock()
	if x.m == nil {
		x.m = make(map[nptKey]*mapping)
	}
	x.m[nptKey{p, ep}] = m
}

// drop removes m, if it is there; it reports whether it was.
func (x *nptIndex) drop(p Proto, ep netip.AddrPort, m *mapping) bool {
	x.mu.Lock()
	defer x.mu.Unlock()
	if x.m[nptKey{p, ep}] != m {
		return false
	}
	delete(x.m, nptKey{p, ep})
	return true
}
