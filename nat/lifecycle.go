package nat

import (
	"cmp"
	"net/netip"
	"time"
)

// A flow's life in the table: created under mu with its mapping
// (create.go), looked up per packet without mu, ended by its TCP
// connection (reported then, removed later), by its timer (the sweep, or
// the lookup that finds it expired), by a kill, or early to make room
// (reclaim.go).

// flowSpec is what a new flow needs beyond its mapping.
type flowSpec struct {
	target, remote   netip.AddrPort
	origin           Direction
	rule             string
	protocol, filter string
	userMode         bool
	inboundOnly      bool
	expect           *Expectation
	client           *client // the client charged for it (see admit)
	// bits, if set, are the lifecycle and TCP bits the flow starts with
	// (a connection picked up or restored mid-stream) instead of none.
	bits uint32
	// start, if set, is when the flow started (a restored one), instead
	// of now.
	start int64
}

// admittedBy makes fs, a flow the filtering of a mapping admitted, take
// the decision of first, the mapping's first flow, and reports whether
// there was one (nil: refused). It takes first's rule, and for UDP its
// path, protocol and filter: a new peer of a client's UDP socket is part
// of the client's exchange on it (ISA raises Udp_Destination when "a
// packet just arrived for the client from that address"), so a filter
// that watches the socket sees that peer's datagrams too, instead of the
// fast path carrying them past it. A TCP segment from a new peer stays on
// the fast path: no netstack of fwx's listens on a client's mapping.
func (fs *flowSpec) admittedBy(first *Flow) bool {
	if first == nil {
		return false
	}
	fs.rule = first.labels.rule
	if first.proto == UDP && first.userMode {
		fs.userMode = true
		fs.protocol, fs.filter = first.labels.protocol, first.labels.filter
	}
	return true
}

// newFlowLocked creates a flow of mapping m and indexes it.
func (t *Table) newFlowLocked(m *mapping, fs flowSpec, now int64) *Flow {
	if !fs.target.IsValid() {
		fs.target = fs.remote
	}
	if m.proto == TCP && t.cfg.UserModeTCP {
		fs.userMode = true
	}
	f := &Flow{
		proto:       m.proto,
		v6:          m.v6,
		inside:      t.again(m.inside, m.v6),
		target:      t.hold(fs.target),
		remote:      t.hold(fs.remote),
		origin:      fs.origin,
		labels:      t.internLocked(labels{fs.rule, fs.protocol, fs.filter}),
		userMode:    fs.userMode,
		start:       cmp.Or(fs.start, now),
		mapping:     m,
		inboundOnly: fs.inboundOnly,
		expect:      fs.expect,
		client:      fs.client,
	}
	if m.v6 {
		// Kept whole, so the flow tells its endpoints after its handles
		// are given back.
		whole := func(e endpoint) *[16]byte { return t.dict.addrPtr(handleOf(e.addr)) }
		f.addrs6 = &[4]*[16]byte{whole(f.inside), whole(f.target), whole(f.remote), whole(m.external)}
	}
	f.lastSeen.Store(now)
	if fs.bits != 0 {
		f.tcp.bits.Store(fs.bits)
		t.moved(f, 0, fs.bits, now) // its client was charged for a new one
	}
	if e := fs.expect; e != nil {
		e.flows++
		e.track(f)
	}
	if e := m.expect; e != nil && e != fs.expect {
		e.track(f) // on a bind's port: the bind's too
	}
	t.addFlowLocked(m, f)
	t.index(true, flowKey{m.proto, m.v6, m.inside, f.target}, f)
	t.index(false, flowKey{m.proto, m.v6, m.external, f.remote}, f)
	t.flows.Add(1)
	return f
}

// track records f among e's flows. The caller holds mu.
func (e *Expectation) track(f *Flow) {
	if e.flowSet == nil {
		e.flowSet = make(map[*Flow]struct{})
	}
	e.flowSet[f] = struct{}{}
}

// internLocked returns the shared copy of l.
func (t *Table) internLocked(l labels) *labels {
	if p := t.labels[l]; p != nil {
		return p
	}
	p := &l
	t.labels[l] = p
	return p
}

// end removes flow f and tells the observer.
func (t *Table) end(f *Flow, now int64) {
	t.mu.Lock()
	removed := t.removeLocked(f)
	t.mu.Unlock()
	if removed {
		t.notifyEnded(f, now)
	}
}

// notifyEnded tells the observer that a flow removed at now ended, unless
// it was told already (a TCP flow is reported when it closes). A flow
// ends when its timer ran out, not when it was swept.
func (t *Table) notifyEnded(f *Flow, now int64) {
	if f == nil {
		return
	}
	if d := f.lastSeen.Load() + int64(f.timeout(&t.cfg.Timeouts)); d < now {
		now = d
	}
	t.closed(f, now)
}

// closed tells the observer that f ended at now, once per flow: a TCP flow
// when its connection closes or is reset, any flow when it is removed.
func (t *Table) closed(f *Flow, now int64) {
	if old, _ := f.tcp.set(flowReported); old&flowReported != 0 || t.cfg.Observer == nil {
		return
	}
	t.cfg.Observer.FlowEnded(f, time.Unix(0, now))
}

// account records a packet of flow f (see [Flow.account]) and settles
// what it changed.
func (t *Table) account(f *Flow, p *Packet, out bool, now int64) {
	old, next := f.account(p, out, now)
	t.moved(f, old, next, now)
}

// removeLocked unindexes f and, when it was its mapping's last flow, frees the
// mapping and its port. It reports false if f was already gone.
func (t *Table) removeLocked(f *Flow) bool {
	old, next := f.tcp.set(flowRemoved)
	if old&flowRemoved != 0 {
		return false
	}
	t.moved(f, old, next, 0) // only its client's charges: a removal reports nothing by itself
	m := f.mapping
	t.unindex(true, flowKey{f.proto, f.v6, f.inside, f.target}, f)
	t.unindex(false, flowKey{f.proto, f.v6, m.external, f.remote}, f)
	t.flows.Add(-1)
	if e := m.expect; e != nil {
		delete(e.flowSet, f)
	}
	if e := f.expect; e != nil {
		e.flows--
		delete(e.flowSet, f)
		if e.CloseIdle && e.flows == 0 {
			t.finishLocked(e) // idle: a UDP Timeout bind closes
		}
	}
	if t.removeFlowLocked(m, f) {
		t.dropMappingLocked(m)
	}
	t.let(f.inside, f.v6)
	t.let(f.target, f.v6)
	t.let(f.remote, f.v6)
	return true
}

// dropMappingLocked frees mapping m and its port, unless something still
// holds it: a flow, a publication, or a live expectation.
func (t *Table) dropMappingLocked(m *mapping) {
	if m.static || (m.expect != nil && !m.expect.done) || m.n > 0 || len(t.pinholes[m]) > 0 {
		return
	}
	t.byInside.drop(m)
	ext := t.addrPort(m.external, m.v6)
	if m.npt {
		if t.nptMaps.drop(m.proto, ext, m) {
			t.nmappings.Add(-1)
			t.let(m.inside, m.v6)
			t.let(m.external, m.v6)
		}
		return
	}
	if t.alloc.set(m.proto, ext.Addr()).owner[ext.Port()].CompareAndSwap(m, nil) {
		t.nmappings.Add(-1)
		t.alloc.release(m.proto, ext)
		t.let(m.inside, m.v6)
		t.let(m.external, m.v6)
	}
}

// addMappingLocked indexes mapping m by its external endpoint, whose port
// the caller took.
func (t *Table) addMappingLocked(m *mapping) {
	ext := t.addrPort(m.external, m.v6)
	if m.npt {
		t.nptMaps.put(m.proto, ext, m)
	} else {
		t.alloc.set(m.proto, ext.Addr()).owner[ext.Port()].Store(m)
	}
	t.nmappings.Add(1)
}

// sweepChunk bounds how many flows the sweep removes per hold of mu, so
// that new flows wait for it at most that long.
const sweepChunk = 256

// Expire ends every flow whose timer ran out at now. Lookups already ignore
// expired flows; Expire reclaims their memory and ports and reports their
// end. It also gives back what a wave of flows left: the memory of maps
// grown for it, the clients it had, the fragments of datagrams that never
// completed. Callers run it periodically; it never
// holds a lock for long, so forwarding goes on meanwhile.
func (t *Table) Expire(now time.Time) int {
	n := now.UnixNano()
	t.dict.recycle()
	t.mu.Lock()
	lapsed := t.expireExpectationsLocked(n)
	t.mu.Unlock()
	for _, e := range lapsed {
		e.OnLapse()
	}
	ended := 0
	dead := make([]*Flow, 0, sweepChunk)
	for i := range t.shards {
		s := &t.shards[i]
		for {
			dead = dead[:0]
			s.mu.RLock()
			for _, f := range s.out {
				if f.expired(n, &t.cfg.Timeouts) {
					if dead = append(dead, f); len(dead) == sweepChunk {
						break
					}
				}
			}
			s.mu.RUnlock()
			ended += t.endAll(dead, n)
			if len(dead) < sweepChunk {
				break
			}
		}
	}
	// A flow is in two shards' maps: they shrink once all have been swept.
	for i := range t.shards {
		t.shards[i].shrink()
	}
	t.mu.Lock()
	t.byInside.shrink()
	t.mu.Unlock()
	t.sweepClients(n)
	t.frags.expire(n)
	if g := t.gone.Load(); g != nil {
		last := int64(0)
		for _, until := range *g {
			last = max(last, until)
		}
		if last <= n {
			t.gone.CompareAndSwap(g, nil)
		}
	}
	return ended
}

// endAll removes the flows of fs that are still expired at now and
// reports their end; it returns how many it removed.
func (t *Table) endAll(fs []*Flow, now int64) int {
	if len(fs) == 0 {
		return 0
	}
	ended := fs[:0]
	t.mu.Lock()
	for _, f := range fs {
		if f.expired(now, &t.cfg.Timeouts) && t.removeLocked(f) {
			ended = append(ended, f)
		}
	}
	t.mu.Unlock()
	for _, f := range ended {
		t.notifyEnded(f, now)
	}
	return len(ended)
}

// Close ends every flow, reporting each to the observer, as when fwx stops.
func (t *Table) Close(now time.Time) {
	all := t.Flows()
	ended := all[:0]
	t.mu.Lock()
	for _, f := range all {
		if t.removeLocked(f) {
			ended = append(ended, f)
		}
	}
	t.mu.Unlock()
	for _, f := range ended {
		t.closed(f, now.UnixNano())
	}
}

// flowsWhere returns the flows keep accepts (all for nil). It takes the
// shards' locks one at a time, so the caller may hold mu.
func (t *Table) flowsWhere(keep func(*Flow) bool) []*Flow {
	var out []*Flow
	for i := range t.shards {
		s := &t.shards[i]
		s.mu.RLock()
		for _, f := range s.out {
			if keep == nil || keep(f) {
				out = append(out, f)
			}
		}
		s.mu.RUnlock()
	}
	return out
}
