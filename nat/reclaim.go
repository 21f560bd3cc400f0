package nat

import (
	"net/netip"
	"time"
)

// Early drop: when the table is full, or a port space runs short, a new
// flow takes the place of one that is not established, as conntrack's
// early drop does. Only flows a client cannot be relying on go: TCP
// connections whose handshake has not completed or that have ended, and
// UDP and ICMP flows never answered or idle for idleDrop. An established
// TCP connection (or one half-closed) is never reclaimed. The search is
// bounded, so a table full of established flows refuses the new one
// quickly.

// idleDrop is how long a UDP or ICMP flow must have been idle to be
// reclaimed when it was answered.
const idleDrop = 30 * time.Second

// reclaimTries bounds how many flows or ports one early drop looks at.
const reclaimTries = 64

// droppable reports whether flow f may be reclaimed early at now.
func (t *Table) droppable(f *Flow, now int64) bool {
	if f.proto == TCP {
		s := f.tcp.state()
		return s != TCPEstablished && s != TCPClosing
	}
	answered := f.pktsIn.Load() > 0
	if f.origin == Inbound {
		answered = f.pktsOut.Load() > 0
	}
	return !answered || now-f.lastSeen.Load() > int64(idleDrop)
}

// roomLocked makes room for a new flow when the table holds its maximum,
// reclaiming one, and reports whether there is room. A reclaimed flow is
// appended to ended, to be reported once mu is released.
func (t *Table) roomLocked(now int64, ended []*Flow) ([]*Flow, bool) {
	if max := t.limits.Load().MaxFlows; max < 0 || t.flows.Load() < int64(max) {
		return ended, true
	}
	// Go's map iteration starts at a random place: the flows looked at
	// are a sample.
	var victim *Flow
	seen, start := 0, t.cfg.Rand.IntN(shardCount)
	for i := 0; i < shardCount && seen < reclaimTries && victim == nil; i++ {
		s := &t.shards[(start+i)%shardCount]
		s.mu.RLock()
		for _, f := range s.out {
			if seen++; seen > reclaimTries {
				break
			}
			if t.droppable(f, now) && (victim == nil || f.lastSeen.Load() < victim.lastSeen.Load()) {
				victim = f
			}
		}
		s.mu.RUnlock()
	}
	if victim == nil || !t.removeLocked(victim) {
		return ended, false
	}
	t.earlyDrops.Add(1)
	return append(ended, victim), true
}

// reclaimPortLocked frees a port of p on addr in the range and of the
// parity an inside port want would get, held by a mapping whose only flow
// may be dropped, and reports whether it did. The flow is appended to
// ended.
func (t *Table) reclaimPortLocked(p Proto, addr netip.Addr, want uint16, now int64, ended []*Flow) ([]*Flow, bool) {
	s := t.alloc.set(p, addr)
	lo, hi, step := 1024, 65535, 2
	switch {
	case p == ICMP:
		lo, step = 0, 1
	case want < 1024:
		lo, hi = 0, 1023
	}
	if step == 2 {
		lo += int(want&1) - lo&1 // the wanted port's parity
	}
	for range reclaimTries {
		port := lo + t.cfg.Rand.IntN((hi-lo)/step+1)*step
		// A mapping that has had one flow: the one the flood makes.
		m := s.owner[port].Load()
		if m == nil || m.static || m.expect != nil || len(t.pinholes[m]) > 0 || m.n != 1 || m.remotes != nil {
			continue
		}
		if f := m.one; !t.droppable(f, now) || !t.removeLocked(f) {
			continue
		}
		t.earlyDrops.Add(1)
		return append(ended, m.one), true
	}
	return ended, false
}
