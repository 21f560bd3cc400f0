package nat

import (
	"net/netip"
	"sync"
)

const shardCount = 64

// shard holds the flows whose key hashes to it, in the two indices a packet
// is looked up by. A per-packet lookup takes only its shard's read lock, so
// no lock is shared by every packet of every flow.
//
// A Go map never gives back the memory it grew to; a shard remembers how
// many flows it held at most, and the sweep rebuilds its maps once they
// hold a quarter of that (see [shard.shrink]), so a wave of flows that has
// ended leaves no trace.
type shard struct {
	mu   sync.RWMutex
	out  map[flowKey]*Flow // by (proto, inside endpoint, target endpoint)
	in   map[flowKey]*Flow // by (proto, external endpoint, remote endpoint)
	peak int               // the most entries out or in held since the maps were made
	_    [32]byte          // keep shards' locks on separate cache lines
}

func (t *Table) shard(k *flowKey) *shard { return &t.shards[k.hash()%shardCount] }

// index puts f in the out or in index under k.
func (t *Table) index(out bool, k flowKey, f *Flow) {
	s := t.shard(&k)
	s.mu.Lock()
	m := &s.in
	if out {
		m = &s.out
	}
	if *m == nil {
		*m = make(map[flowKey]*Flow)
	}
	(*m)[k] = f
	s.peak = max(s.peak, len(*m))
	s.mu.Unlock()
}

// unindex removes f from the out or in index under k, if it is there.
func (t *Table) unindex(out bool, k flowKey, f *Flow) {
	s := t.shard(&k)
	s.mu.Lock()
	m := s.in
	if out {
		m = s.out
	}
	if m[k] == f {
		delete(m, k)
	}
	s.mu.Unlock()
}

// get returns the flow indexed under k in the out or in index, or nil.
func (t *Table) get(out bool, k flowKey) *Flow {
	s := t.shard(&k)
	s.mu.RLock()
	var f *Flow
	if out {
		f = s.out[k]
	} else {
		f = s.in[k]
	}
	s.mu.RUnlock()
	return f
}

// lookup finds a live flow by key in the out or in index. A flow whose timer
// ran out is removed here, so expiry is exact on the caller's clock whatever
// the sweep's pace.
func (t *Table) lookup(out bool, k flowKey, now int64) *Flow {
	f := t.get(out, k)
	if f != nil && f.expired(now, &t.cfg.Timeouts) {
		t.end(f, now)
		return nil
	}
	return f
}

// lookupAt is lookup by the key of protocol p and endpoints local and
// remote.
func (t *Table) lookupAt(out bool, p Proto, local, remote netip.AddrPort, now int64) *Flow {
	k, ok := t.key(p, local, remote)
	if !ok {
		return nil
	}
	return t.lookup(out, k, now)
}

// live returns the flow indexed under k if it is still alive, without
// removing an expired one.
func (t *Table) live(out bool, k flowKey, now int64) *Flow {
	if f := t.get(out, k); f != nil && !f.expired(now, &t.cfg.Timeouts) {
		return f
	}
	return nil
}

// shrink rebuilds the shard's maps at their current size once they hold a
// quarter of what they held at most, so their memory goes back.
func (s *shard) shrink() {
	const small = 256 // not worth it below this
	s.mu.RLock()
	n := max(len(s.out), len(s.in))
	worth := s.peak > small && n < s.peak/4
	s.mu.RUnlock()
	if !worth {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.out, s.in = rebuilt(s.out), rebuilt(s.in)
	s.peak = max(len(s.out), len(s.in))
}

func rebuilt[K comparable, V any](m map[K]V) map[K]V {
	if len(m) == 0 {
		return nil
	}
	n := make(map[K]V, len(m))
	for k, v := range m {
		n[k] = v
	}
	return n
}

// mappingIndex holds the dynamic and static mappings by inside endpoint,
// in shards that shrink as the flow shards do. It is guarded by Table.mu.
type mappingIndex [shardCount]mappingShard

type mappingShard struct {
	m    map[mapKey]*mapping
	peak int
}

func (x *mappingIndex) slot(k mapKey) *mappingShard { return &x[k.hash()%shardCount] }

func (x *mappingIndex) get(k mapKey) *mapping { return x.slot(k).m[k] }

func (x *mappingIndex) put(m *mapping) {
	k := mapKey{m.proto, m.v6, m.inside}
	s := x.slot(k)
	if s.m == nil {
		s.m = make(map[mapKey]*mapping)
	}
	s.m[k] = m
	s.peak = max(s.peak, len(s.m))
}

// drop removes m from the index, if it is there.
func (x *mappingIndex) drop(m *mapping) {
	k := mapKey{m.proto, m.v6, m.inside}
	if s := x.slot(k); s.m[k] == m {
		delete(s.m, k)
	}
}

// shrink rebuilds the shards that hold a quarter of what they held at most.
func (x *mappingIndex) shrink() {
	for i := range x {
		s := &x[i]
		if s.peak > 256 && len(s.m) < s.peak/4 {
			s.m = rebuilt(s.m)
			s.peak = len(s.m)
		}
	}
}
