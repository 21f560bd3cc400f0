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

// dict is the dictionary of IPv6 addresses.
type dict struct {
	mu    sync.RWMutex
	ids   map[[16]byte]uint32
	slots []dictSlot // by handle - 1
	free  []uint32   // handles to hand out again
	cool  []uint32   // handles given back since the last sweep
}

type dictSlot struct {
	addr [16]byte
	refs int32
}

// find returns the handle of a, if something holds it. It takes only the
// dictionary's read lock: packets look addresses up with it.
func (d *dict) find(a [16]byte) (uint32, bool) {
	d.mu.RLock()
	id, ok := d.ids[a]
	d.mu.RUnlock()
	return id, ok
}

// hold returns the handle of a, taking a reference to it.
func (d *dict) hold(a [16]byte) uint32 {
	d.mu.Lock()
	defer d.mu.Unlock()
	id, ok := d.ids[a]
	if !ok {
		if n := len(d.free); n > 0 {
			id, d.free = d.free[n-1], d.free[:n-1]
			d.slots[id-1] = dictSlot{addr: a}
		} else {
			d.slots = append(d.slots, dictSlot{addr: a})
			id = uint32(len(d.slots))
		}
		if d.ids == nil {
			d.ids = make(map[[16]byte]uint32)
		}
		d.ids[a] = id
	}
	d.slots[id-1].refs++
	return id
}

// ref takes another reference to handle id, which the caller holds.
func (d *dict) ref(id uint32) {
	if id == 0 {
		return
	}
	d.mu.Lock()
	d.slots[id-1].refs++
	d.mu.Unlock()
}

// release gives back a reference to handle id.
func (d *dict) release(id uint32) {
	if id == 0 {
		return
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	s := &d.slots[id-1]
	if s.refs--; s.refs == 0 {
		delete(d.ids, s.addr)
		d.cool = append(d.cool, id)
	}
}

// addr returns the address of handle id, which the caller holds.
func (d *dict) addr(id uint32) [16]byte {
	d.mu.RLock()
	defer d.mu.RUnlock()
	return d.slots[id-1].addr
}

// recycle lets the handles given back before this sweep be handed out
// again.
func (d *dict) recycle() {
	d.mu.Lock()
	d.free = append(d.free, d.cool...)
	d.cool = d.cool[:0]
	d.mu.Unlock()
}

// len returns the number of addresses held.
func (d *dict) len() int {
	d.mu.RLock()
	defer d.mu.RUnlock()
	return len(d.ids)
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
