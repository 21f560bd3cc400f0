package nat

import (
	"net/netip"
	"sync"
)

// mapping is an endpoint-independent mapping (RFC 4787 REQ-1, RFC 5382
// REQ-1): one inside endpoint bound to one external endpoint for every
// destination. It lives while any of its flows lives, or for ever when it is
// static (a published server).
//
// Its flows are not listed: the mapping counts them and, for its
// filtering, knows which outside addresses they go to. Those fields change
// under Table.mu and the mapping's stripe lock ([Table.stripe]); the
// filtering of an unsolicited packet reads them under the stripe lock
// alone, so a flood aimed at one mapping never takes the table's lock.
type mapping struct {
	proto  Proto
	static bool // from server publishing: never expires
	// withdrawn is a publication's mapping after Unpublish: it admits no
	// new inbound flow and lives only as long as its flows.
	withdrawn bool
	// pinned says pinholes were put on the mapping (ExpectOnMapping):
	// new inbound flows are decided under Table.mu.
	pinned bool
	// v6 says the endpoints hold IPv6 handles, each holding a reference
	// (see addr6.go), given back when the mapping is dropped.
	v6 bool
	// npt says the external endpoint is the inside one translated by
	// NPTv6 (npt.go): no port of the allocator's.
	npt      bool
	inside   endpoint // changes (SetExpectationInside) only under Table.mu
	external endpoint

	expect *Expectation // an inbound pinhole holding the mapping (a bind); guarded by Table.mu

	n int32 // live flows
	// one is the mapping's first flow; while it is the only one the
	// mapping has had, the filtering looks at it alone. Once there are
	// more, remotes counts the flows to each outside address.
	one     *Flow
	remotes map[[4]byte]int32
}

// stripes is the number of locks the mappings' filtering state is spread
// over, by external port.
const stripes = 256

type stripedLocks [stripes]struct {
	sync.Mutex
	_ [56]byte // one lock per cache line
}

// stripe returns the lock of mapping m's filtering state.
func (t *Table) stripe(m *mapping) *sync.Mutex { return &t.stripes[m.external.port%stripes].Mutex }

// kind returns what decides mapping m's new inbound flows: whether it is
// a publication, a withdrawn one, and whether it holds pinholes. These
// change under Table.mu and the stripe lock, and are read here under the
// stripe lock alone.
func (t *Table) kind(m *mapping) (static, withdrawn, pinned bool) {
	mu := t.stripe(m)
	mu.Lock()
	defer mu.Unlock()
	return m.static, m.withdrawn, m.pinned
}

// setKindLocked makes m a publication or a withdrawn one. The caller
// holds Table.mu.
func (t *Table) setKindLocked(m *mapping, static, withdrawn bool) {
	mu := t.stripe(m)
	mu.Lock()
	m.static, m.withdrawn = static, withdrawn
	mu.Unlock()
}

// addFlowLocked counts flow f in its mapping m. The caller holds Table.mu.
func (t *Table) addFlowLocked(m *mapping, f *Flow) {
	mu := t.stripe(m)
	mu.Lock()
	defer mu.Unlock()
	m.n++
	switch {
	case m.one == nil:
		m.one = f
		return
	case m.remotes == nil:
		m.remotes = make(map[[4]byte]int32, 2)
		if m.n > 1 {
			m.remotes[m.one.remote.addr]++
		}
	}
	m.remotes[f.remote.addr]++
}

// removeFlowLocked uncounts flow f from its mapping m and reports whether
// the mapping has no flow left. The caller holds Table.mu.
func (t *Table) removeFlowLocked(m *mapping, f *Flow) bool {
	mu := t.stripe(m)
	mu.Lock()
	defer mu.Unlock()
	m.n--
	if m.remotes != nil {
		if n := m.remotes[f.remote.addr]; n <= 1 {
			delete(m.remotes, f.remote.addr)
		} else {
			m.remotes[f.remote.addr] = n - 1
		}
	}
	return m.n == 0
}

// filter applies the filtering behaviour of dynamic mapping m to a packet
// from src at now (RFC 4787 section 5), in constant time: it looks up the
// address, never the mapping's flows. It returns the mapping's first
// flow, whose decision the new flow takes (flowSpec.admittedBy), or nil
// when the filtering refuses src.
//
// Expiry is exact for a mapping that has had one flow (most have); on a
// mapping with more, a flow whose timer ran out counts until the sweep
// removes it.
func (t *Table) filter(m *mapping, src netip.AddrPort, now int64) *Flow {
	if t.cfg.Filtering == AddressAndPortDependent {
		return nil // only an existing flow's own endpoint gets in
	}
	// An IPv6 address nothing holds has no handle: no flow goes there.
	packed, known := t.find(src)
	if !known && t.cfg.Filtering != EndpointIndependent {
		return nil
	}
	mu := t.stripe(m)
	mu.Lock()
	defer mu.Unlock()
	if m.n == 0 {
		return nil
	}
	ok := false
	switch {
	case m.remotes == nil:
		f := m.one
		ok = t.alive(f, now) && (t.cfg.Filtering == EndpointIndependent || f.remote.addr == packed.addr)
	case t.cfg.Filtering == EndpointIndependent:
		ok = true
	default:
		ok = m.remotes[packed.addr] > 0
	}
	if !ok {
		return nil
	}
	return m.one
}

// alive reports whether flow f is in the table and its timer has not run
// out at now.
func (t *Table) alive(f *Flow, now int64) bool {
	return !f.Removed() && !f.expired(now, &t.cfg.Timeouts)
}

// newMappingLocked makes a mapping of inside to external for protocol p,
// holding their addresses. The caller indexes it.
func (t *Table) newMappingLocked(p Proto, inside, external netip.AddrPort) *mapping {
	return &mapping{proto: p, v6: external.Addr().Is6(), npt: t.nptOutside(external.Addr()),
		inside: t.hold(inside), external: t.hold(external)}
}

// mapLocked makes the mapping of inside endpoint inside on external, whose
// port the caller took (or inside's own NPTv6 address), and indexes it by
// both; static makes it a publication's.
func (t *Table) mapLocked(p Proto, inside, external netip.AddrPort, static bool) *mapping {
	m := t.newMappingLocked(p, inside, external)
	m.static = static
	t.byInside.put(m)
	t.addMappingLocked(m)
	return m
}

// mappingOf returns the mapping of protocol p whose inside endpoint is
// inside, or nil. The caller holds mu.
func (t *Table) mappingOf(p Proto, inside netip.AddrPort) *mapping {
	e, ok := t.find(inside)
	if !ok {
		return nil
	}
	return t.byInside.get(mapKey{p, inside.Addr().Is6(), e})
}
