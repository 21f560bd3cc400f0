package nat

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"slices"
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
	// External lists fwx's addresses on the outside, IPv4 and IPv6: the
	// SecureNAT source addresses. A client's mappings of one family all
	// take the same one (paired pooling, RFC 4787 REQ-2; see
	// [Table.ExternalFor]). At least one is required; a packet of a family
	// with none is not translated.
	External []netip.Addr
	// Internal lists fwx's own addresses on the inside, if any; packets to
	// them are handed back to the caller as [Local].
	Internal []netip.Addr
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
	// Limits bound what one client, and the table, may hold; zero fields
	// take their defaults.
	Limits Limits
	// NPTv6 lists IPv6 prefix translations (RFC 6296, see [NPTv6]): the
	// inside hosts they cover leave from an address of their own
	// instead of the pool's.
	NPTv6 []NPTv6
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

// Table is the SecureNAT flow table. It is safe for concurrent use: packets
// from the inside and from the outside may be translated at the same time.
//
// A packet of an existing flow takes one shard's read lock and nothing
// else (an IPv6 one also the read locks of its addresses' shards of the
// address dictionary, addr6.go). Creating and removing flows and mappings
// takes mu (held for a constant time each), and a mapping's stripe lock
// when its flows change; an unsolicited packet takes only its mapping's
// stripe lock; a client's admission only its client shard's lock. Lock
// order: mu, then a stripe or a shard.
type Table struct {
	cfg        Config
	limits     atomic.Pointer[Limits]
	shards     [shardCount]shard
	stripes    stripedLocks
	clients    clients
	flows      atomic.Int64
	nmappings  atomic.Int64
	nexpects   atomic.Int64 // outbound expectations in expects
	drops      [NumDropReasons]atomic.Uint64
	earlyDrops atomic.Uint64
	pickedUp   atomic.Uint64
	// pickupUntil ends the window of loose pickup (unix nanoseconds; 0:
	// none), see pickup.go.
	pickupUntil atomic.Int64
	// gone holds the ports bound for pinholes a restart lost, until when
	// (see state.go); nil when there are none.
	gone    atomic.Pointer[map[goneKey]int64]
	ingress atomic.Pointer[ingress]
	frags   *reassembler
	// own holds the port sets of the table's external addresses, by
	// protoIndex: inbound packets find their mapping there without a
	// lock. It is not changed after New.
	own map[netip.Addr]*[3]*portSet
	// pool4 and pool6 are the external addresses of each family.
	pool4, pool6 []netip.Addr
	// pairKey keys the hash that pairs a client with its external
	// address, so outsiders cannot tell which clients share one.
	pairKey uint64
	dict    dict // IPv6 addresses held by mappings and flows
	npts    []npt
	nptMaps nptIndex // the mappings of NPTv6 addresses

	mu       sync.Mutex
	byInside mappingIndex                // mappings by inside endpoint
	expects  map[expectKey]*Expectation  // outbound pinholes
	binds    map[*Expectation]struct{}   // inbound pinholes with a mapping of their own
	pinholes map[*mapping][]*Expectation // inbound pinholes on dynamic mappings
	labels   map[labels]*labels          // interned flow labels
	alloc    *allocator
}

// protoIndex numbers the protocols a table translates.
func protoIndex(p Proto) int {
	switch p {
	case TCP:
		return 0
	case UDP:
		return 1
	}
	return 2
}

// New returns an empty table.
func New(cfg Config) (*Table, error) {
	if len(cfg.External) == 0 {
		return nil, errors.New("nat: no external address")
	}
	for _, a := range append(slices.Clone(cfg.External), cfg.Internal...) {
		if !a.IsValid() || a.Is4In6() || a.Zone() != "" || special(a) {
			return nil, fmt.Errorf("nat: %v is not a unicast address fwx can own", a)
		}
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
		expects:  make(map[expectKey]*Expectation),
		binds:    make(map[*Expectation]struct{}),
		pinholes: make(map[*mapping][]*Expectation),
		labels:   make(map[labels]*labels),
		alloc:    newAllocator(cfg.Rand, cfg.Ports),
	}
	t.frags = newReassembler(cfg.Fragments, &t.drops)
	t.SetLimits(cfg.Limits)
	t.SetIngress(cfg.InsideNetworks, cfg.SpecialDestinations)
	t.own = make(map[netip.Addr]*[3]*portSet, len(cfg.External))
	for _, a := range cfg.External {
		if t.own[a] != nil {
			return nil, fmt.Errorf("nat: external address %v given twice", a)
		}
		var sets [3]*portSet
		for _, p := range []Proto{TCP, UDP, ICMP} {
			sets[protoIndex(p)] = t.alloc.set(p, a)
		}
		t.own[a] = &sets
		if a.Is4() {
			t.pool4 = append(t.pool4, a)
		} else {
			t.pool6 = append(t.pool6, a)
			t.dict.pin(a.As16())
		}
	}
	t.pairKey = cfg.Rand.Uint64()
	for _, n := range cfg.NPTv6 {
		x, err := newNPT(n)
		if err != nil {
			return nil, err
		}
		for _, o := range t.npts {
			if o.Inside.Overlaps(x.Inside) || o.Outside.Overlaps(x.Outside) || o.Inside.Overlaps(x.Outside) || o.Outside.Overlaps(x.Inside) {
				return nil, fmt.Errorf("nat: NPTv6 %v to %v overlaps %v to %v", n.Inside, n.Outside, o.Inside, o.Outside)
			}
		}
		for _, a := range cfg.External {
			if x.Outside.Contains(a) {
				return nil, fmt.Errorf("nat: NPTv6 outside prefix %v holds the external address %v", n.Outside, a)
			}
		}
		t.npts = append(t.npts, x)
	}
	return t, nil
}

// UserModeTCP reports whether every TCP flow takes the user-mode path
// ([Config].UserModeTCP).
func (t *Table) UserModeTCP() bool { return t.cfg.UserModeTCP }

// Timeouts returns the timers in force, defaults filled in.
func (t *Table) Timeouts() Timeouts { return t.cfg.Timeouts }

// Limits returns the limits in force, defaults filled in.
func (t *Table) Limits() Limits { return *t.limits.Load() }

// SetLimits puts limits l in force (zero fields take their defaults), for
// new flows: a policy reload changes them.
func (t *Table) SetLimits(l Limits) {
	l = l.WithDefaults()
	t.limits.Store(&l)
}

// SetIngress sets the inside networks and the special destinations that
// may be forwarded (see [Config]), from the next packet on.
func (t *Table) SetIngress(inside, special []netip.Prefix) {
	t.ingress.Store(newIngress(inside, special))
}

// Len returns the number of live flows.
func (t *Table) Len() int { return int(t.flows.Load()) }

// Publish creates a static mapping: packets from the outside to external are
// forwarded to the inside server, when the Decider's Inbound admits them,
// and the server's own outbound flows from that endpoint leave from
// external. The external port is reserved for as long as the table lives.
func (t *Table) Publish(p Proto, external, server netip.AddrPort) error {
	if !external.Addr().IsValid() {
		a, ok := t.firstExternal(server.Addr().Is6())
		if !ok {
			return fmt.Errorf("nat: publish %v %v: no external address of its family", p, server)
		}
		external = netip.AddrPortFrom(a, external.Port())
	}
	if !t.IsExternal(external.Addr()) || external.Addr().Is6() != server.Addr().Is6() {
		return fmt.Errorf("nat: publish %v %v on %v: not an external address of its family", p, server, external)
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if m := t.mappingOf(p, server); m != nil {
		if m.withdrawn && t.addrPort(m.external, m.v6) == external {
			// Published again before its last flow ended (a reload
			// undone): the mapping is the publication's again.
			t.setKindLocked(m, true, false)
			return nil
		}
		return fmt.Errorf("nat: publish %v %v: %v already published: %w", p, external, server, ErrPortInUse)
	}
	if err := t.alloc.reserve(p, external); err != nil {
		return fmt.Errorf("nat: publish %v %v: %w", p, external, err)
	}
	t.mapLocked(p, server, external, true)
	return nil
}

// owner returns the mapping that holds the external endpoint ep, or nil.
// For the table's own address it takes no lock; for another address the
// caller holds mu.
func (t *Table) owner(p Proto, ep netip.AddrPort) *mapping {
	if len(t.npts) > 0 && t.nptOutside(ep.Addr()) {
		return t.nptMaps.get(p, ep)
	}
	var s *portSet
	if sets := t.own[ep.Addr()]; sets != nil {
		s = sets[protoIndex(p)]
	} else if s = t.alloc.sets[portSpace{p, ep.Addr()}]; s == nil {
		return nil
	}
	return s.owner[ep.Port()].Load()
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
	k, ok := t.key(p, src, dst)
	if !ok {
		return nil
	}
	return t.live(true, k, now.UnixNano())
}

// LookupInbound returns the live flow a packet from the outside endpoint
// src to the external endpoint dst belongs to, or nil.
func (t *Table) LookupInbound(p Proto, src, dst netip.AddrPort, now time.Time) *Flow {
	k, ok := t.key(p, dst, src)
	if !ok {
		return nil
	}
	return t.live(false, k, now.UnixNano())
}

// Admit decides a new connection from src on the outside to the external
// endpoint dst that reached fwx without a packet crossing the table: in
// host mode, a host listener accepted it. The rules of an opening packet
// apply (pinholes, published servers, filtering, limits); a refusal is
// logged as one. It returns the connection's flow, or nil.
func (t *Table) Admit(p Proto, src, dst netip.AddrPort, now time.Time) *Flow {
	n := now.UnixNano()
	if k, ok := t.key(p, dst, src); ok {
		if f := t.lookup(false, k, n); f != nil {
			return f
		}
	}
	f, why := t.inbound(p, src, dst, true, n)
	if f == nil {
		t.drops[why].Add(1)
	}
	return f
}

// EndFlow ends flow f now, as if its timer ran out: the user-mode path
// ends a flow whose connection a filter killed. Its next packet starts a
// new flow.
func (t *Table) EndFlow(f *Flow, now time.Time) { t.end(f, now.UnixNano()) }

// Flows returns a snapshot of the live flows, in no particular order.
func (t *Table) Flows() []*Flow { return t.flowsWhere(nil) }
