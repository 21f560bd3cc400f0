package nat

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"
)

// Errors returned by the table.
var (
	// ErrPortInUse means a requested external port is already taken.
	ErrPortInUse = errors.New("nat: external port in use")
	// ErrNoPorts means no external port is free.
	ErrNoPorts = errors.New("nat: no free external port")
)

// Decision is a policy's verdict on a new flow.
type Decision struct {
	Allow bool
	// Rule names the rule that decided.
	Rule string
	// UserMode sends the flow to the user-mode path: an application
	// filter handles its protocol.
	UserMode bool
	// Protocol and Filter name the policy protocol and the application
	// filter of the flow, for the user-mode path and the log.
	Protocol, Filter string
}

// Decider is the policy the table consults, once, for each new flow. Its
// methods are called on the packet path and must be quick and must not call
// back into the table.
type Decider interface {
	// Outbound decides a flow a client on the inside starts from src to dst.
	Outbound(p Proto, src, dst netip.AddrPort) Decision
	// Inbound decides a flow from src on the outside to dst, an external
	// endpoint of a published server.
	Inbound(p Proto, src, dst netip.AddrPort) Decision
}

// Denial describes a flow the table refused.
type Denial struct {
	Proto  Proto
	Origin Direction
	Src    netip.AddrPort
	Dst    netip.AddrPort
	// Rule names the rule that denied the flow: a policy rule, or
	// "default-deny" for unsolicited inbound traffic, or the Reason.
	Rule string
	// Reason is why the flow was refused.
	Reason DropReason
	// Count is how many refusals the record stands for: refusals that
	// come in floods (a client over its limits) are reported once per
	// client and interval, with their number. At least 1.
	Count uint64
}

// Observer is told when flows start, are denied and end; fwx's firewall log
// is one. It is called synchronously from the packet path and from
// [Table.Expire], never with the table locked, so it must be quick and
// must not block. FlowDenied is called for every packet that would have
// opened a refused flow, retransmissions and floods included.
type Observer interface {
	// FlowStarted is called when a flow is created, with its first packet.
	FlowStarted(f *Flow)
	// FlowDenied is called when a new flow is refused.
	FlowDenied(d Denial)
	// FlowEnded is called once per flow: for a TCP flow when its
	// connection closes (both FINs acknowledged) or is reset, at that
	// packet's time; for any other flow (and a TCP flow that never
	// closed) when it is removed, at the time its timer ran out. A TCP
	// flow may stay in the table after it ended, on its TIME_WAIT or
	// RST timer.
	FlowEnded(f *Flow, at time.Time)
}

// Config configures a [Table].
type Config struct {
	// External is fwx's address on the outside: the SecureNAT source
	// address. Required.
	External netip.Addr
	// Internal is fwx's own address on the inside, if any; packets to it
	// are handed back to the caller as [Local].
	Internal netip.Addr
	// Timeouts are the flow timers; zero fields take their defaults.
	Timeouts Timeouts
	// Filtering is the filtering behaviour of dynamic mappings. The zero
	// value is [AddressDependent].
	Filtering Filtering
	// Decider is the policy. Nil allows every outbound flow and no inbound
	// one.
	Decider Decider
	// Observer is told of flows starting, denied and ending. Nil tells no
	// one.
	Observer Observer
	// Rand is the random source for port selection. Nil means a source
	// seeded from the operating system; tests pass a seeded one.
	Rand *rand.Rand
	// Ports, if set, holds every external port on the host before the
	// table hands it out (host mode). Nil: the external address is fwx's
	// alone.
	Ports Ports
	// UserModeTCP sends every TCP flow to the user-mode path: in host mode
	// TCP reaches the outside only through host sockets.
	UserModeTCP bool
	// InsideNetworks are the networks of the inside: packets from the
	// inside with another source are dropped, and packets from the
	// outside with one of these sources too (BCP 38). Empty means any
	// unicast source may come from the inside.
	InsideNetworks []netip.Prefix
	// Fragments bound the reassembly of fragmented datagrams.
	Fragments FragmentLimits
	// SpecialDestinations are the loopback, multicast and broadcast
	// destinations that may be forwarded from the inside (the policy's
	// rules still decide); others are dropped.
	SpecialDestinations []netip.Prefix
}

// Ports makes the table's external ports real on a host. In fwx's host
// mode the outside is the host's own network stack, and an external port
// is fwx's only while a host socket holds it. The table calls Ports with
// its lock held, so each call must be quick (a bind).
type Ports interface {
	// Hold claims ap on the host, for a mapping's flows (inbound false)
	// or for connections to arrive on (inbound true: a published server,
	// a bound port). An error wrapping [ErrPortInUse] makes the table try
	// another port; any other error fails the allocation.
	Hold(p Proto, ap netip.AddrPort, inbound bool) error
	// Release gives back a port Hold claimed.
	Release(p Proto, ap netip.AddrPort)
}

const shardCount = 64

// shard holds the flows whose key hashes to it, in the two indices a packet
// is looked up by. A per-packet lookup takes only its shard's read lock, so
// no lock is shared by every packet of every flow.
type shard struct {
	mu  sync.RWMutex
	out map[flowKey]*Flow // by (proto, inside endpoint, remote endpoint)
	in  map[flowKey]*Flow // by (proto, external endpoint, remote endpoint)
	_   [64]byte          // keep shards' locks on separate cache lines
}

// flowKey identifies a flow from one side: local is the inside endpoint in
// the out index and the external endpoint in the in index.
type flowKey struct {
	proto  Proto
	local  netip.AddrPort
	remote netip.AddrPort
}

type mapKey struct {
	proto Proto
	ep    netip.AddrPort
}

// Table is the SecureNAT flow table. It is safe for concurrent use: packets
// from the inside and from the outside may be translated at the same time.
//
// Lock order: mu, then a shard's mu. Per-packet lookups take a shard's read
// lock only; mu is taken when flows are created or removed.
type Table struct {
	cfg        Config
	shards     [shardCount]shard
	flows      atomic.Int64
	nmappings  atomic.Int64
	drops      [NumDropReasons]atomic.Uint64
	earlyDrops atomic.Uint64
	ingress    ingress
	frags      *reassembler

	mu       sync.Mutex
	mappings map[mapKey]*mapping        // by inside endpoint
	byExt    map[mapKey]*mapping        // by external endpoint
	expects  map[expectKey]*Expectation // outbound pinholes
	alloc    *allocator
}

// New returns an empty table.
func New(cfg Config) (*Table, error) {
	if !cfg.External.Is4() {
		return nil, fmt.Errorf("nat: external address %v is not an IPv4 address", cfg.External)
	}
	cfg.Timeouts = cfg.Timeouts.WithDefaults()
	if cfg.Decider == nil {
		cfg.Decider = allowOutbound{}
	}
	if cfg.Rand == nil {
		cfg.Rand = rand.New(rand.NewPCG(rand.Uint64(), rand.Uint64()))
	}
	t := &Table{
		cfg:      cfg,
		mappings: make(map[mapKey]*mapping),
		byExt:    make(map[mapKey]*mapping),
		expects:  make(map[expectKey]*Expectation),
		alloc:    newAllocator(cfg.Rand, cfg.Ports),
		ingress:  newIngress(&cfg),
	}
	t.frags = newReassembler(cfg.Fragments, &t.drops)
	for i := range t.shards {
		t.shards[i].out = make(map[flowKey]*Flow)
		t.shards[i].in = make(map[flowKey]*Flow)
	}
	return t, nil
}

// UserModeTCP reports whether every TCP flow takes the user-mode path
// ([Config].UserModeTCP).
func (t *Table) UserModeTCP() bool { return t.cfg.UserModeTCP }

// Timeouts returns the timers in force, defaults filled in.
func (t *Table) Timeouts() Timeouts { return t.cfg.Timeouts }

// Len returns the number of live flows.
func (t *Table) Len() int { return int(t.flows.Load()) }

// Publish creates a static mapping: packets from the outside to external are
// forwarded to the inside server, when the Decider's Inbound admits them,
// and the server's own outbound flows from that endpoint leave from
// external. The external port is reserved for as long as the table lives.
func (t *Table) Publish(p Proto, external, server netip.AddrPort) error {
	if !external.Addr().IsValid() {
		external = netip.AddrPortFrom(t.cfg.External, external.Port())
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if m := t.mappings[mapKey{p, server}]; m != nil {
		if m.withdrawn && m.external == external {
			// Published again before its last flow ended (a reload
			// undone): the mapping is the publication's again.
			m.static, m.withdrawn = true, false
			return nil
		}
		return fmt.Errorf("nat: publish %v %v: %v already published: %w", p, external, server, ErrPortInUse)
	}
	if err := t.alloc.reserve(p, external); err != nil {
		return fmt.Errorf("nat: publish %v %v: %w", p, external, err)
	}
	m := &mapping{table: t, proto: p, inside: server, external: external, static: true}
	t.mappings[mapKey{p, server}] = m
	t.addMappingLocked(m)
	return nil
}

// hash mixes a flow key into a shard index. It is a cheap multiplicative
// hash over the fields that vary between flows.
func (k *flowKey) hash() uint32 {
	a, b := k.local.Addr().As4(), k.remote.Addr().As4()
	h := uint64(k.proto)
	h = h*0x9e3779b97f4a7c15 + uint64(a[0])<<24 | uint64(a[1])<<16 | uint64(a[2])<<8 | uint64(a[3])
	h = h*0x9e3779b97f4a7c15 + uint64(b[0])<<24 | uint64(b[1])<<16 | uint64(b[2])<<8 | uint64(b[3])
	h = h*0x9e3779b97f4a7c15 + uint64(k.local.Port())<<16 | uint64(k.remote.Port())
	h ^= h >> 29
	return uint32(h)
}

func (t *Table) shard(k *flowKey) *shard { return &t.shards[k.hash()%shardCount] }

// lookup finds a live flow by key in the out or in index. A flow whose timer
// ran out is removed here, so expiry is exact on the caller's clock whatever
// the sweep's pace.
func (t *Table) lookup(out bool, k flowKey, now int64) *Flow {
	s := t.shard(&k)
	s.mu.RLock()
	var f *Flow
	if out {
		f = s.out[k]
	} else {
		f = s.in[k]
	}
	s.mu.RUnlock()
	if f != nil && f.expired(now, &t.cfg.Timeouts) {
		t.end(f, now)
		return nil
	}
	return f
}

// flowSpec is what a new flow needs beyond its mapping.
type flowSpec struct {
	target, remote   netip.AddrPort
	origin           Direction
	rule             string
	protocol, filter string
	userMode         bool
	inboundOnly      bool
	expect           *Expectation
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
		inside:      m.inside,
		external:    m.external,
		target:      fs.target,
		remote:      fs.remote,
		origin:      fs.origin,
		rule:        fs.rule,
		userMode:    fs.userMode,
		protocol:    fs.protocol,
		filter:      fs.filter,
		start:       now,
		mapping:     m,
		inboundOnly: fs.inboundOnly,
		expect:      fs.expect,
	}
	f.lastSeen.Store(now)
	m.flows = append(m.flows, f)
	if fs.expect != nil {
		fs.expect.flows++
	}
	ko := flowKey{m.proto, m.inside, f.target}
	ki := flowKey{m.proto, m.external, f.remote}
	so, si := t.shard(&ko), t.shard(&ki)
	so.mu.Lock()
	so.out[ko] = f
	so.mu.Unlock()
	si.mu.Lock()
	si.in[ki] = f
	si.mu.Unlock()
	t.flows.Add(1)
	return f
}

// live returns the flow indexed under k if it is still alive. It takes
// only the shard's lock.
func (t *Table) live(out bool, k flowKey, now int64) *Flow {
	s := t.shard(&k)
	s.mu.RLock()
	defer s.mu.RUnlock()
	f := s.out[k]
	if !out {
		f = s.in[k]
	}
	if f == nil || f.expired(now, &t.cfg.Timeouts) {
		return nil
	}
	return f
}

// EndFlow ends flow f now, as if its timer ran out: the user-mode path
// ends a flow whose connection a filter killed. Its next packet starts a
// new flow.
func (t *Table) EndFlow(f *Flow, now time.Time) { t.end(f, now.UnixNano()) }

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
	if f.reported.Swap(true) || t.cfg.Observer == nil {
		return
	}
	t.cfg.Observer.FlowEnded(f, time.Unix(0, now))
}

// account records a packet of flow f (see [Flow.account]) and reports the
// flow's end when the packet closed its connection.
func (t *Table) account(f *Flow, p *Packet, out bool, now int64) {
	if f.account(p, out, now) {
		t.closed(f, now)
	}
}

// removeLocked unindexes f and, when it was its mapping's last flow, frees the
// mapping and its port. It reports false if f was already gone.
func (t *Table) removeLocked(f *Flow) bool {
	if f.removed.Swap(true) {
		return false
	}
	ko := flowKey{f.proto, f.inside, f.target}
	ki := flowKey{f.proto, f.external, f.remote}
	so, si := t.shard(&ko), t.shard(&ki)
	so.mu.Lock()
	if so.out[ko] == f {
		delete(so.out, ko)
	}
	so.mu.Unlock()
	si.mu.Lock()
	if si.in[ki] == f {
		delete(si.in, ki)
	}
	si.mu.Unlock()
	t.flows.Add(-1)
	m := f.mapping
	for i, g := range m.flows {
		if g == f {
			m.flows[i] = m.flows[len(m.flows)-1]
			m.flows[len(m.flows)-1] = nil
			m.flows = m.flows[:len(m.flows)-1]
			break
		}
	}
	if e := f.expect; e != nil {
		e.flows--
		if e.CloseIdle && e.flows == 0 {
			t.finishLocked(e) // idle: a UDP Timeout bind closes
		}
	}
	if len(m.flows) == 0 {
		t.dropMappingLocked(m)
	}
	return true
}

// dropMappingLocked frees mapping m and its port, unless something still
// holds it: a publication, or a live expectation.
func (t *Table) dropMappingLocked(m *mapping) {
	if m.static || (m.expect != nil && !m.expect.done) || len(m.flows) > 0 || len(m.pinholes) > 0 {
		return
	}
	if t.mappings[mapKey{m.proto, m.inside}] == m {
		delete(t.mappings, mapKey{m.proto, m.inside})
	}
	if t.byExt[mapKey{m.proto, m.external}] == m {
		delete(t.byExt, mapKey{m.proto, m.external})
		t.nmappings.Add(-1)
		t.alloc.release(m.proto, m.external)
	}
}

// addMappingLocked indexes mapping m by its external endpoint.
func (t *Table) addMappingLocked(m *mapping) {
	t.byExt[mapKey{m.proto, m.external}] = m
	t.nmappings.Add(1)
}

// Expire ends every flow whose timer ran out at now. Lookups already ignore
// expired flows; Expire reclaims their memory and ports and reports their
// end. Callers run it periodically.
func (t *Table) Expire(now time.Time) int {
	n := now.UnixNano()
	dead := t.flowsWhere(func(f *Flow) bool { return f.expired(n, &t.cfg.Timeouts) })
	ended := dead[:0]
	t.mu.Lock()
	lapsed := t.expireExpectationsLocked(n)
	for _, f := range dead {
		if f.expired(n, &t.cfg.Timeouts) && t.removeLocked(f) {
			ended = append(ended, f)
		}
	}
	t.mu.Unlock()
	for _, e := range lapsed {
		e.OnLapse()
	}
	for _, f := range ended {
		t.notifyEnded(f, n)
	}
	return len(ended)
}

// Close ends every flow, reporting each to the observer, as when fwx stops.
func (t *Table) Close(now time.Time) {
	t.mu.Lock()
	all := t.Flows()
	ended := all[:0]
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

// allowOutbound is the Decider used when none is configured.
type allowOutbound struct{}

func (allowOutbound) Outbound(Proto, netip.AddrPort, netip.AddrPort) Decision {
	return Decision{Allow: true, Rule: "allow-outbound"}
}

func (allowOutbound) Inbound(Proto, netip.AddrPort, netip.AddrPort) Decision {
	return Decision{Rule: "default-deny"}
}

// LookupOutbound returns the live flow a packet from the inside endpoint
// src to dst belongs to, or nil. The user-mode path uses it to learn where
// an intercepted connection really goes.
func (t *Table) LookupOutbound(p Proto, src, dst netip.AddrPort, now time.Time) *Flow {
	return t.live(true, flowKey{p, src, dst}, now.UnixNano())
}

// Admit decides a new connection from src on the outside to the external
// endpoint dst that reached fwx without a packet crossing the table: in
// host mode, a host listener accepted it. The rules of an opening packet
// apply (pinholes, published servers, filtering); a refusal is logged as
// one. It returns the connection's flow, or nil.
func (t *Table) Admit(p Proto, src, dst netip.AddrPort, now time.Time) *Flow {
	n := now.UnixNano()
	if f := t.lookup(false, flowKey{p, dst, src}, n); f != nil {
		return f
	}
	f, why := t.inbound(p, src, dst, true, n)
	if f == nil {
		t.drops[why].Add(1)
	}
	return f
}

// LookupInbound returns the live flow a packet from the outside endpoint
// src to the external endpoint dst belongs to, or nil.
func (t *Table) LookupInbound(p Proto, src, dst netip.AddrPort, now time.Time) *Flow {
	return t.live(false, flowKey{p, dst, src}, now.UnixNano())
}

// Flows returns a snapshot of the live flows, in no particular order.
func (t *Table) Flows() []*Flow { return t.flowsWhere(nil) }

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
