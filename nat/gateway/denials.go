package gateway

import (
	"net/netip"
	"slices"
	"sync"
	"time"

	"github.com/fwx-dev/fwx/nat"
)

// denials summarises refused flows: a denied flow is one record, written
// once the flow has not been retried for quiet (a TCP client retrying its
// SYN, a UDP application its datagram), or longest after its first
// attempt if it never stops, with the number of attempts. Its memory is
// bounded: beyond maxPendingDenials flows, attempts are only counted per
// protocol, direction and rule, and reported as one summary record, so a
// flood of unsolicited packets from random sources writes a few records,
// not one per packet.
type denials struct {
	quiet, longest time.Duration

	mu       sync.Mutex
	pending  map[denialKey]*pendingDenial
	overflow map[overflowKey]*overflowDenials
	byRule   map[string]uint64 // attempts since the start
}

// maxPendingDenials bounds the denied flows remembered one by one.
const maxPendingDenials = 4096

type denialKey struct {
	proto    nat.Proto
	origin   nat.Direction
	src, dst netip.AddrPort
	rule     string // after a reload, another rule's denial is another record
}

type pendingDenial struct {
	nat.Denial
	first, last time.Time
	attempts    uint64
}

type overflowKey struct {
	proto  nat.Proto
	origin nat.Direction
	rule   string
}

type overflowDenials struct {
	key         overflowKey
	first, last time.Time
	attempts    uint64
}

// add counts an attempt of a denied flow at now.
func (ds *denials) add(d nat.Denial, now time.Time) {
	k := denialKey{d.Proto, d.Origin, d.Src, d.Dst, d.Rule}
	n := max(d.Count, 1) // a record of the table's may stand for several
	ds.mu.Lock()
	defer ds.mu.Unlock()
	ds.byRule[d.Rule] += n
	if p := ds.pending[k]; p != nil {
		p.attempts += n
		p.last = now
		return
	}
	if len(ds.pending) < maxPendingDenials {
		ds.pending[k] = &pendingDenial{Denial: d, first: now, last: now, attempts: n}
		return
	}
	ok := overflowKey{d.Proto, d.Origin, d.Rule}
	o := ds.overflow[ok]
	if o == nil {
		o = &overflowDenials{key: ok, first: now}
		ds.overflow[ok] = o
	}
	o.attempts += n
	o.last = now
}

// due removes and returns the denials whose records are due at now (all of
// them when all is set), oldest first.
func (ds *denials) due(now time.Time, all bool) ([]*pendingDenial, []*overflowDenials) {
	ds.mu.Lock()
	defer ds.mu.Unlock()
	var flows []*pendingDenial
	for k, p := range ds.pending {
		if all || now.Sub(p.last) >= ds.quiet || now.Sub(p.first) >= ds.longest {
			flows = append(flows, p)
			delete(ds.pending, k)
		}
	}
	var over []*overflowDenials
	for k, o := range ds.overflow {
		if all || now.Sub(o.first) >= ds.quiet {
			over = append(over, o)
			delete(ds.overflow, k)
		}
	}
	sortByFirst(flows, func(p *pendingDenial) time.Time { return p.first })
	sortByFirst(over, func(o *overflowDenials) time.Time { return o.first })
	return flows, over
}

func sortByFirst[T any](s []T, first func(T) time.Time) {
	slices.SortStableFunc(s, func(a, b T) int { return first(a).Compare(first(b)) })
}
