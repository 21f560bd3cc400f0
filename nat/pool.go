package nat

import (
	"encoding/binary"
	"net/netip"
	"slices"
)

// The outside address pool. fwx may own several outside addresses, of
// both families. Every mapping of one client and one family takes the
// same one ("paired" pooling, RFC 4787 REQ-2): a peer that sees a client
// from one address sees all its flows from it, as the protocols that
// compare addresses (FTP's data connection, SIP, games) need. The pairing
// is a keyed hash of the client's address, so it needs no state, holds
// across restarts with the same seed and flows, and spreads clients over
// the pool. A mapping pinned to another address (a publication, a grant
// with ProxyExternal) takes that one.

// ExternalFor returns the external address client's mappings take: the
// one of its family the client is paired with, and false when the table
// has no external address of that family.
func (t *Table) ExternalFor(client netip.Addr) (netip.Addr, bool) {
	pool := t.pool4
	if client.Is6() {
		pool = t.pool6
	}
	switch len(pool) {
	case 0:
		return netip.Addr{}, false
	case 1:
		return pool[0], true
	}
	b := client.As16()
	h := mix64(t.pairKey ^ binary.BigEndian.Uint64(b[:8]))
	h = mix64(h ^ binary.BigEndian.Uint64(b[8:]))
	return pool[h%uint64(len(pool))], true
}

// mix64 is splitmix64's finalizer: every bit of x moves every bit of the
// result.
func mix64(x uint64) uint64 {
	x ^= x >> 30
	x *= 0xbf58476d1ce4e5b9
	x ^= x >> 27
	x *= 0x94d049bb133111eb
	return x ^ x>>31
}

// IsExternal reports whether a is one of the table's external addresses.
func (t *Table) IsExternal(a netip.Addr) bool {
	_, ok := t.own[a]
	return ok
}

// IsInternal reports whether a is one of fwx's own inside addresses.
func (t *Table) IsInternal(a netip.Addr) bool { return slices.Contains(t.cfg.Internal, a) }

// InternalFor returns fwx's first inside address of client's family, and
// false when it has none: where a redirected connection (RedirectConnections)
// is sent.
func (t *Table) InternalFor(client netip.Addr) (netip.Addr, bool) {
	for _, a := range t.cfg.Internal {
		if a.Is6() == client.Is6() {
			return a, true
		}
	}
	return netip.Addr{}, false
}

// ExternalAddrs returns the table's external addresses, as configured.
func (t *Table) ExternalAddrs() []netip.Addr { return slices.Clone(t.cfg.External) }

// firstExternal returns the first external address of the family of IPv6
// (v6) or IPv4: where a publication goes when it names none.
func (t *Table) firstExternal(v6 bool) (netip.Addr, bool) {
	pool := t.pool4
	if v6 {
		pool = t.pool6
	}
	if len(pool) == 0 {
		return netip.Addr{}, false
	}
	return pool[0], true
}
