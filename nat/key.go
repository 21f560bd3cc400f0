package nat

import "net/netip"

// The table holds a million flows in a few hundred bytes each, so what it
// keeps per flow is packed: an endpoint is 6 bytes, not the 32 of a
// netip.AddrPort, and a flow's key is 14. An IPv6 address takes the four
// bytes of an IPv4 one as a handle (addr6.go).

// endpoint is an IPv4 address, or the handle of an IPv6 one, and a port.
type endpoint struct {
	addr [4]byte
	port uint16
}

// endpointOf packs ap, an IPv4 endpoint; anything else (an unset address)
// packs as 0.0.0.0. IPv6 endpoints are packed by the table ([Table.hold],
// [Table.find]).
func endpointOf(ap netip.AddrPort) endpoint {
	a := ap.Addr().Unmap()
	if !a.Is4() {
		return endpoint{port: ap.Port()}
	}
	return endpoint{a.As4(), ap.Port()}
}

func (e endpoint) addrPort() netip.AddrPort {
	return netip.AddrPortFrom(netip.AddrFrom4(e.addr), e.port)
}

// flowKey identifies a flow from one side: local is the inside endpoint in
// the out index and the external endpoint in the in index. v6 says its
// endpoints hold IPv6 handles.
type flowKey struct {
	proto         Proto
	v6            bool
	local, remote endpoint
}

// hash mixes a flow key into a shard index: a multiplicative hash over
// the fields that vary between flows.
func (k *flowKey) hash() uint32 {
	a := uint64(k.local.addr[0])<<24 | uint64(k.local.addr[1])<<16 | uint64(k.local.addr[2])<<8 | uint64(k.local.addr[3])
	b := uint64(k.remote.addr[0])<<24 | uint64(k.remote.addr[1])<<16 | uint64(k.remote.addr[2])<<8 | uint64(k.remote.addr[3])
	h := uint64(k.proto) | uint64(b2i(k.v6))<<8
	h = h*0x9e3779b97f4a7c15 + a
	h = h*0x9e3779b97f4a7c15 + b
	h = h*0x9e3779b97f4a7c15 + uint64(k.local.port)<<16 | uint64(k.remote.port)
	h ^= h >> 29
	h *= 0xbf58476d1ce4e5b9
	h ^= h >> 32
	return uint32(h)
}

// mapKey identifies a mapping by its inside endpoint.
type mapKey struct {
	proto Proto
	v6    bool
	ep    endpoint
}

func (k mapKey) hash() uint32 {
	f := flowKey{proto: k.proto, v6: k.v6, local: k.ep}
	return f.hash()
}

func b2i(b bool) int {
	if b {
		return 1
	}
	return 0
}
