package nat

import (
	"net/netip"
	"sync"
)

// HeldAddrs6 returns how many IPv6 addresses t's dictionary holds.
func HeldAddrs6(t *Table) int { return t.dict.len() }

// LockAddrsExcept write-locks every shard of t's IPv6 dictionary but those
// of keep's addresses, as the creation of flows to other addresses would,
// and returns the unlock (which may be called more than once).
func LockAddrsExcept(t *Table, keep ...netip.Addr) (unlock func()) {
	spared := map[uint32]bool{}
	for _, a := range keep {
		b := a.As16()
		spared[shardOf(&b)] = true
	}
	var locked []*dictShard
	for i := range t.dict.shards {
		if !spared[uint32(i)] {
			t.dict.shards[i].mu.Lock()
			locked = append(locked, &t.dict.shards[i])
		}
	}
	var once sync.Once
	return func() {
		once.Do(func() {
			for _, s := range locked {
				s.mu.Unlock()
			}
		})
	}
}

// SameAddrLock reports whether a and b share a lock in the IPv6
// dictionary.
func SameAddrLock(a, b netip.Addr) bool {
	x, y := a.As16(), b.As16()
	return shardOf(&x) == shardOf(&y)
}
