package nat

import (
	"encoding/binary"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"
)

// Fair shares: what one client may hold of the table, so that none can
// starve the others (ISA Server's flood mitigation: connections, half-open
// connections and new connections per client address). A client is the
// address that starts a flow: an inside host for outbound flows, an
// outside one for inbound flows (published servers, pinholes).

// NoLimit turns a limit off.
const NoLimit = -1

// Limits bound what a client and the table as a whole may hold. A zero
// field takes its default; [NoLimit] turns it off.
type Limits struct {
	// MaxFlows bounds the flows of the whole table: about 300 bytes each,
	// 1,048,576 (300 MB) by default. When it is reached, a new flow takes
	// the place of one that is not established (early drop), or is
	// refused.
	MaxFlows int
	// ClientFlows bounds a client's concurrent flows: 4096 by default.
	// Connections that have closed (TIME_WAIT) or were reset do not count.
	ClientFlows int
	// ClientHalfOpen bounds a client's TCP connections whose handshake has
	// not completed: 512 by default.
	ClientHalfOpen int
	// ClientRate bounds the new flows a client may start per second,
	// with bursts of as many: 1000 by default.
	ClientRate int
}

// DefaultLimits returns the limits fwx uses when none are configured.
func DefaultLimits() Limits {
	return Limits{MaxFlows: 1 << 20, ClientFlows: 4096, ClientHalfOpen: 512, ClientRate: 1000}
}

// WithDefaults returns l with every zero field replaced by its default.
func (l Limits) WithDefaults() Limits {
	d := DefaultLimits()
	for _, f := range []struct{ v, def *int }{
		{&l.MaxFlows, &d.MaxFlows}, {&l.ClientFlows, &d.ClientFlows},
		{&l.ClientHalfOpen, &d.ClientHalfOpen}, {&l.ClientRate, &d.ClientRate},
	} {
		if *f.v == 0 {
			*f.v = *f.def
		}
	}
	return l
}

// exceeds reports whether n reaches limit, a limit being off when negative.
func exceeds(n int32, limit int) bool { return limit >= 0 && int(n) >= limit }

// refusalInterval is how often a client's refusals are reported: the
// first at once, then at most one record per interval with their count.
const refusalInterval = 10 * time.Second

// client is one client's share: what it holds, its rate bucket, and the
// refusals not reported yet.
type client struct {
	addr     netip.Addr
	flows    atomic.Int32 // flows counted against it
	halfOpen atomic.Int32 // of which TCP handshakes in progress

	mu       sync.Mutex
	tokens   float64 // new flows it may start now
	refilled int64   // when tokens was last brought up to date
	refused  uint64  // refusals since the last report
	last     Denial  // the latest refusal
	reported int64   // when refusals were last reported
}

// clients holds the clients with flows or refusals, by address, sharded so
// that starting flows for different clients shares no lock.
type clients [shardCount]clientShard

type clientShard struct {
	mu sync.Mutex
	m  map[netip.Addr]*client
	_  [40]byte // one shard per cache line
}

func (cs *clients) shard(a netip.Addr) *clientShard {
	b := a.As16()
	h := mix64(binary.BigEndian.Uint64(b[:8]) ^ binary.BigEndian.Uint64(b[8:]))
	return &cs[h>>58]
}

// getLocked returns client a, new at now with a full bucket for rate if
// the shard had none. The caller holds s.mu.
func (s *clientShard) getLocked(a netip.Addr, rate int, now int64) *client {
	if c := s.m[a]; c != nil {
		return c
	}
	c := &client{addr: a, tokens: float64(max(rate, 0)), refilled: now}
	if s.m == nil {
		s.m = make(map[netip.Addr]*client)
	}
	s.m[a] = c
	return c
}

// admit reserves a new flow of protocol p for client a at now: a flow, a
// half-open connection for TCP, a token of its rate. It returns the client
// to charge, or nil and the limit it reached. A reservation the caller
// does not turn into a flow is given back with release.
func (t *Table) admit(a netip.Addr, p Proto, now int64) (*client, DropReason) {
	l := t.limits.Load()
	s := t.clients.shard(a)
	s.mu.Lock()
	c := s.getLocked(a, l.ClientRate, now)
	// Counted under the shard's lock, so the sweep never deletes a client
	// that is being charged.
	switch {
	case exceeds(c.flows.Load(), l.ClientFlows):
		s.mu.Unlock()
		return nil, DropClientFlows
	case p == TCP && exceeds(c.halfOpen.Load(), l.ClientHalfOpen):
		s.mu.Unlock()
		return nil, DropClientHalfOpen
	case !c.take(l.ClientRate, now):
		s.mu.Unlock()
		return nil, DropClientRate
	}
	c.flows.Add(1)
	if p == TCP {
		c.halfOpen.Add(1)
	}
	s.mu.Unlock()
	return c, 0
}

// charge charges client a for a flow of protocol p whatever its limits:
// a flow restored from a saved table, which it held before.
func (t *Table) charge(a netip.Addr, p Proto) *client {
	s := t.clients.shard(a)
	s.mu.Lock()
	defer s.mu.Unlock()
	c := s.getLocked(a, t.limits.Load().ClientRate, 0)
	c.flows.Add(1)
	if p == TCP {
		c.halfOpen.Add(1)
	}
	return c
}

// take takes a token from c's bucket, refilled at rate per second up to
// rate, and reports whether there was one.
func (c *client) take(rate int, now int64) bool {
	if rate < 0 {
		return true
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.refill(rate, now)
	if c.tokens < 1 {
		return false
	}
	c.tokens--
	return true
}

func (c *client) refill(rate int, now int64) {
	if d := now - c.refilled; d > 0 {
		c.tokens = min(float64(rate), c.tokens+float64(d)*float64(rate)/1e9)
		c.refilled = now
	}
}

// release gives back a reservation admit made for protocol p.
func (c *client) release(p Proto) {
	c.flows.Add(-1)
	if p == TCP {
		c.halfOpen.Add(-1)
	}
}

// charges says what a flow with lifecycle bits b counts against its
// client: a flow while it is in the table and not ended, a half-open
// connection while its TCP handshake is in progress.
func charges(p Proto, b uint32) (flow, halfOpen int32) {
	if b&flowRemoved != 0 {
		return 0, 0
	}
	if p != TCP {
		return 1, 0
	}
	switch stateOf(b) {
	case TCPSynSent, TCPSynReceived:
		return 1, 1
	case TCPClosed, TCPReset:
		return 0, 0
	}
	return 1, 0
}

// moved settles what changed when flow f's lifecycle bits went from old
// to next: its client's charges, and the report of its end when its TCP
// connection ended.
func (t *Table) moved(f *Flow, old, next uint32, now int64) {
	if old == next {
		return
	}
	if c := f.client; c != nil {
		f0, h0 := charges(f.proto, old)
		f1, h1 := charges(f.proto, next)
		if f1 != f0 {
			c.flows.Add(f1 - f0)
		}
		if h1 != h0 {
			c.halfOpen.Add(h1 - h0)
		}
	}
	if f.proto == TCP && !stateOf(old).ended() && stateOf(next).ended() {
		t.closed(f, now)
	}
}

// refuse reports a flow refused for a client limit (d.Reason), once per
// client and interval: the first at once, the next ones with their count.
// d.Src is the client, whichever side it is on.
func (t *Table) refuse(d Denial, now int64) {
	s := t.clients.shard(d.Src.Addr())
	s.mu.Lock()
	c := s.m[d.Src.Addr()]
	s.mu.Unlock()
	if c == nil {
		t.denied(d, now)
		return
	}
	c.mu.Lock()
	c.refused++
	c.last = d
	due := now-c.reported >= int64(refusalInterval)
	if due {
		d.Count, c.refused, c.reported = c.refused, 0, now
	}
	c.mu.Unlock()
	if due {
		t.denied(d, now)
	}
}

// sweepClients reports refusals that waited their interval, and forgets
// clients that hold nothing and whose bucket is full again.
func (t *Table) sweepClients(now int64) {
	rate := t.limits.Load().ClientRate
	var due []Denial
	for i := range t.clients {
		s := &t.clients[i]
		s.mu.Lock()
		for a, c := range s.m {
			c.mu.Lock()
			if c.refused > 0 && now-c.reported >= int64(refusalInterval) {
				d := c.last
				d.Count, c.refused, c.reported = c.refused, 0, now
				due = append(due, d)
			}
			c.refill(rate, now)
			idle := c.refused == 0 && (rate < 0 || c.tokens >= float64(rate))
			c.mu.Unlock()
			if idle && c.flows.Load() == 0 && c.halfOpen.Load() == 0 {
				delete(s.m, a)
			}
		}
		if len(s.m) == 0 {
			s.m = nil // a map does not shrink: let a wave's go
		}
		s.mu.Unlock()
	}
	for _, d := range due {
		t.denied(d, now)
	}
}

// RefuseFlow ends flow f, which the user-mode path refused for a limit of
// its own (why: [DropClientDials]), and counts and reports the refusal as
// the table's own limits are: once per client and interval.
func (t *Table) RefuseFlow(f *Flow, why DropReason, now time.Time) {
	n := now.UnixNano()
	t.drops[why].Add(1)
	src, dst := f.Inside(), f.Target()
	if f.origin == Inbound {
		src, dst = f.Remote(), f.External()
	}
	t.refuse(Denial{Proto: f.proto, Origin: f.origin, Src: src, Dst: dst, Rule: why.String(), Reason: why}, n)
	t.end(f, n)
}
