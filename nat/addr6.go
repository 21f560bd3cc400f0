package nat

import (
	"encoding/binary"
	"net/netip"
	"sync"
)

// IPv6 addresses in the table's packed endpoints: an endpoint has four
// bytes for an address, so an IPv6 address is stored as a 32-bit handle
// into the table's dictionary, and IPv4 flows stay as compact as they were.
// A handle lives while a mapping or a flow holds the address (each takes a
// reference); a handle given back is not handed out again before the next
// sweep, long after any packet that looked it up has been translated. Keys
// and mappings carry a v6 bit, so a handle is never read as an IPv4
// address. Handle 0 is never issued: it is the unset address.
//
// Every IPv6 packet looks up its two addresses, so the dictionary is in
// shards by address, as the flows are: packets share a shard's read lock
// only when they share an address (or its shard), and a new flow's
// addresses lock only their own shards. fwx's own outside addresses, in
// every inbound packet, are found in a map fixed at New, without a lock.
// A handle's high bits name its shard, its low bits its slot there.

// dictSlotBits is how many low bits of a handle number its slot (plus
// one) within its shard; the bits above name the shard.
const dictSlotBits = 26

// dict is the dictionary of IPv6 addresses; it is safe for concurrent use.
type dict struct {
	own    map[[16]byte]uint32 // fwx's outside addresses, held for ever; not changed after New
	shards [shardCount]dictShard
}

type dictShard struct {
	mu    sync.RWMutex
	ids   map[[16]byte]uint32
	slots []dictSlot // by slot - 1
	free  []uint32   // handles to hand out again
	cool  []uint32   // handles given back since the last sweep
	_     [24]byte   // keep shards' locks on separate cache lines
}

// dictSlot holds an address and its references. The address is kept
// behind a pointer of its own: a flow points at it too, so that the flow
// tells its addresses once its handles are given back, without a copy of
// its own (addrPtr).
type dictSlot struct {
	addr *[16]byte
	refs int32
}

// shardOf returns the index of a's shard.
func shardOf(a *[16]byte) uint32 {
	return uint32(mix64(binary.BigEndian.Uint64(a[:8])^mix64(binary.BigEndian.Uint64(a[8:]))) % shardCount)
}

// of returns the shard of handle id; slot returns its slot there, under
// the shard's lock.
func (d *dict) of(id uint32) *dictShard { return &d.shards[id>>dictSlotBits] }

func (s *dictShard) slot(id uint32) *dictSlot { return &s.slots[id&(1<<dictSlotBits-1)-1] }

// pin holds a for as long as the table lives and finds it without a lock
// from then on. It is called by New only, before the table is shared.
func (d *dict) pin(a [16]byte) {
	if d.own == nil {
		d.own = make(map[[16]byte]uint32)
	}
	d.own[a] = d.hold(a)
}

// find returns the handle of a, if something holds it. Packets look
// addresses up with it: it takes only a's shard's read lock, or none for
// fwx's own addresses.
func (d *dict) find(a [16]byte) (uint32, bool) {
	if id, ok := d.own[a]; ok {
		return id, true
	}
	s := &d.shards[shardOf(&a)]
	s.mu.RLock()
	id, ok := s.ids[a]
	s.mu.RUnlock()
	return id, ok
}

// hold returns the handle of a, taking a reference to it.
func (d *dict) hold(a [16]byte) uint32 {
	i := shardOf(&a)
	s := &d.shards[i]
	s.mu.Lock()
	defer s.mu.Unlock()
	id, ok := s.ids[a]
	if !ok {
		// The address's one copy, made only for a new entry (taking &a
		// would move a to the heap on every call).
		c := new([16]byte)
		*c = a
		if n := len(s.free); n > 0 {
			id, s.free = s.free[n-1], s.free[:n-1]
			*s.slot(id) = dictSlot{addr: c}
		} else {
			if len(s.slots) == 1<<dictSlotBits-1 {
				panic("nat: IPv6 address dictionary shard full")
			}
			s.slots = append(s.slots, dictSlot{addr: c})
			id = i<<dictSlotBits | uint32(len(s.slots))
		}
		if s.ids == nil {
			s.ids = make(map[[16]byte]uint32)
		}
		s.ids[a] = id
	}
	s.slot(id).refs++
	return id
}

// ref takes another reference to handle id, which the caller holds.
func (d *dict) ref(id uint32) {
	if id == 0 {
		return
	}
	s := d.of(id)
	s.mu.Lock()
	s.slot(id).refs++
	s.mu.Unlock()
}

// release gives back a reference to handle id.
func (d *dict) release(id uint32) {
	if id == 0 {
		return
	}
	s := d.of(id)
	s.mu.Lock()
	defer s.mu.Unlock()
	slot := s.slot(id)
	if slot.refs--; slot.refs == 0 {
		delete(s.ids, *slot.addr)
		s.cool = append(s.cool, id)
	}
}

// addr returns the address of handle id, which the caller holds.
func (d *dict) addr(id uint32) [16]byte { return *d.addrPtr(id) }

// addrPtr returns the dictionary's copy of the address of handle id, which
// the caller holds. It is never written: a flow may keep it.
func (d *dict) addrPtr(id uint32) *[16]byte {
	s := d.of(id)
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.slot(id).addr
}

// recycle lets the handles given back before this sweep be handed out
// again.
func (d *dict) recycle() {
	for i := range d.shards {
		s := &d.shards[i]
		s.mu.Lock()
		s.free = append(s.free, s.cool...)
		s.cool = s.cool[:0]
		s.mu.Unlock()
	}
}

// len returns the number of addresses held.
func (d *dict) len() int {
	n := 0
	for i := range d.shards {
		s := &d.shards[i]
		s.mu.RLock()
		n += len(s.ids)
		s.mu.RUnlock()
	}
	return n
}

func handleBytes(id uint32) (b [4]byte) {
	binary.BigEndian.PutUint32(b[:], id)
	return b
}

func handleOf(b [4]byte) uint32 { return binary.BigEndian.Uint32(b[:]) }

// find packs ap as an endpoint of a key to look up, and false when it is
// an IPv6 address nothing in the table holds, so no key has it.
func (t *Table) find(ap netip.AddrPort) (endpoint, bool) {
	a := ap.Addr()
	if !a.Is6() {
		return endpointOf(ap), true
	}
	id, ok := t.dict.find(a.As16())
	return endpoint{handleBytes(id), ap.Port()}, ok
}

// hold packs ap as an endpoint to keep in a mapping or a flow, taking a
// reference to an IPv6 address; [Table.let] gives it back. An unset
// address packs as 0.
func (t *Table) hold(ap netip.AddrPort) endpoint {
	a := ap.Addr()
	if !a.Is6() {
		return endpointOf(ap)
	}
	return endpoint{handleBytes(t.dict.hold(a.As16())), ap.Port()}
}

// again takes another reference to e, an IPv6 endpoint when v6, which
// the caller holds.
func (t *Table) again(e endpoint, v6 bool) endpoint {
	if v6 {
		t.dict.ref(handleOf(e.addr))
	}
	return e
}

// let gives back the reference [Table.hold] took for e, an IPv6 endpoint
// when v6.
func (t *Table) let(e endpoint, v6 bool) {
	if v6 {
		t.dict.release(handleOf(e.addr))
	}
}

// addrPort unpacks e, an IPv6 endpoint when v6, which the caller holds.
func (t *Table) addrPort(e endpoint, v6 bool) netip.AddrPort {
	if !v6 {
		return e.addrPort()
	}
	if id := handleOf(e.addr); id != 0 {
		return netip.AddrPortFrom(netip.AddrFrom16(t.dict.addr(id)), e.port)
	}
	return netip.AddrPortFrom(netip.Addr{}, e.port)
}

// key packs a flow key to look up, and false when no flow can have it.
func (t *Table) key(p Proto, local, remote netip.AddrPort) (flowKey, bool) {
	l, ok1 := t.find(local)
	r, ok2 := t.find(remote)
	return flowKey{proto: p, v6: local.Addr().Is6(), local: l, remote: r}, ok1 && ok2
}
