package nat

import (
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"time"
)

// ErrPinholeGone means an expectation was used up, cancelled or timed out.
var ErrPinholeGone = errors.New("nat: pinhole gone")

// RemoteFilter restricts which outside addresses may use an inbound
// expectation (ISA's IFWXIpFilter).
type RemoteFilter interface {
	Contains(netip.Addr) bool
}

// Expectation is a pinhole: permission for a secondary flow that the policy
// alone would not allow, which an application filter grants after reading a
// primary connection (ISA's AllowFutureConnect, BindForClient and
// RedirectConnections; netfilter's expectations). A flow created through it
// is an ordinary flow from then on, on the fast path unless UserMode.
//
// An outbound expectation lets Client connect to Dst (optionally
// redirected to Redirect); an inbound one lets outside peers connect to
// External and forwards them to Inside. Fields are read-only once the
// expectation is handed to the table, except through the table's methods.
type Expectation struct {
	Proto Proto

	// Client may use an outbound expectation: the session's client.
	Client netip.Addr
	// Dst is where the client connects.
	Dst netip.AddrPort
	// Redirect, if valid, is where an outbound flow to Dst really goes
	// (RedirectConnections): Dst is then an address of fwx's inside.
	Redirect netip.AddrPort
	// ReleaseDst frees the port of Dst, reserved by the caller on fwx's
	// inside address, when the expectation ends.
	ReleaseDst bool
	// ExternalAddr pins the source address of an outbound flow on a
	// firewall with several outside addresses; unset means the table's.
	ExternalAddr netip.Addr
	// ExternalPort, if set, pins the source port of an outbound flow too:
	// the caller reserved it on ExternalAddr (or the table's address) with
	// ReservePort, and the flow's mapping takes it over. A flow whose inside
	// endpoint already holds a mapping on another port is refused, so the
	// port serves one inside endpoint. The table frees the port if no flow
	// took it when the expectation ends.
	ExternalPort uint16

	// External is the external endpoint of an inbound expectation,
	// reserved by the caller with ReservePort or ReserveBlock.
	External netip.AddrPort
	// Inside is where inbound flows are forwarded; an invalid value means
	// not known yet (see [Table.SetExpectationInside]) and refuses flows.
	Inside netip.AddrPort
	// Remotes, if not nil, lists the outside addresses that may use an
	// inbound expectation.
	Remotes RemoteFilter
	// Bidirectional lets the inside answer a UDP peer that sent to the
	// pinhole; without it an inbound UDP flow only receives.
	Bidirectional bool

	// Multiple lets the expectation serve more than one flow; otherwise
	// the first flow uses it up, except that an inbound UDP expectation
	// serves one source instead: the first peer's flows, for as long as it
	// lives (ISA: "if only a single source will send datagrams").
	Multiple bool
	// Unarmed reserves the pinhole without letting anything through until
	// [Table.Arm]: the filter that asked for it waits for the other end to
	// agree (an FTP PORT until the server's 200). A packet that would open
	// a flow through it meanwhile is dropped without a reply or a log
	// record (counted as [DropUnarmed]), so its sender retransmits it (a
	// TCP SYN after about a second) and finds the pinhole armed or gone.
	Unarmed bool
	// Deadline, if set, is when the expectation lapses if unused.
	Deadline time.Time
	// CloseIdle ends an inbound UDP expectation once it was used and its
	// last flow has ended, idle or killed (ISA's FWX_FLAG_TIMEOUT for UDP:
	// "closed automatically when they are detected to be idle").
	CloseIdle bool
	// UserMode sends flows created through the expectation to the
	// user-mode path.
	UserMode bool
	// Rule is logged as the rule of flows created through it.
	Rule string
	// Protocol and Filter name the policy protocol and application filter
	// of flows created through it.
	Protocol, Filter string
	// Owner is the caller's object for the expectation (the SDK's
	// connection or action); the table does not look at it.
	Owner any
	// OnFlow, if set, is called with each flow created through the
	// expectation, after the table is unlocked.
	OnFlow func(*Flow)
	// OnLapse, if set, is called once, after the table is unlocked, when
	// the expectation lapsed unused at its Deadline and the table let it
	// go (in [Table.Expire], or in Arm, Cancel or Kill after the deadline).
	OnLapse func()

	// guarded by Table.mu
	done       bool
	expired    bool // done because its deadline passed unused
	lapsed     bool // OnLapse is due or was called
	used       int
	flows      int                // live flows created through e
	flowSet    map[*Flow]struct{} // those flows, and for a bind every flow on its port
	source     netip.AddrPort     // the one peer of an inbound UDP expectation without Multiple
	mapping    *mapping           // inbound: the mapping holding External
	portHanded bool               // ExternalPort went to a mapping
}

// admitsLocked reports whether an inbound flow from remote may use e.
func (e *Expectation) admitsLocked(remote netip.AddrPort, now int64) bool {
	return !e.Unarmed && e.wouldAdmitLocked(remote, now)
}

// wouldAdmitLocked reports whether an inbound flow from remote may use e
// once it is armed.
func (e *Expectation) wouldAdmitLocked(remote netip.AddrPort, now int64) bool {
	return !e.doneLocked(now) && e.Inside.IsValid() &&
		(e.Remotes == nil || e.Remotes.Contains(remote.Addr())) &&
		(!e.source.IsValid() || e.source == remote)
}

// lapseLocked reports whether e lapsed unused at its deadline and its
// OnLapse is yet to be called, and marks the call as made. Call doneLocked
// first.
func (e *Expectation) lapseLocked() bool {
	if !e.expired || e.lapsed || e.OnLapse == nil {
		return false
	}
	e.lapsed = true
	return true
}

// oneSource reports whether e serves one source rather than one flow: an
// inbound UDP expectation without Multiple.
func (e *Expectation) oneSource() bool { return e.Proto == UDP && e.mapping != nil && !e.Multiple }

func (e *Expectation) doneLocked(now int64) bool {
	if !e.done && !e.Deadline.IsZero() && e.used == 0 && now > e.Deadline.UnixNano() {
		e.done, e.expired = true, true
	}
	return e.done
}

// claimLocked records a use of e, reporting false if it is used up.
func (t *Table) claimLocked(e *Expectation, now int64) bool {
	if e.doneLocked(now) {
		return false
	}
	e.used++
	if !e.Multiple && !e.oneSource() {
		t.finishLocked(e)
	}
	return true
}

type expectKey struct {
	proto  Proto
	client netip.Addr
	dst    netip.AddrPort
}

// outboundExpectLocked finds a live outbound expectation for client's
// packet to dst.
func (t *Table) outboundExpectLocked(p Proto, client netip.Addr, dst netip.AddrPort, now int64) *Expectation {
	e := t.expects[expectKey{p, client, dst}]
	if e == nil || e.doneLocked(now) {
		return nil
	}
	return e
}

// ReservePort takes the external endpoint ap for a caller that will hand it
// to ExpectInbound (ISA's BindForClient with a forced port).
func (t *Table) ReservePort(p Proto, ap netip.AddrPort) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	if err := t.alloc.reserve(p, ap); err != nil {
		return fmt.Errorf("nat: %v %v: %w", p, ap, err)
	}
	return nil
}

// ReserveBlock takes n consecutive free ports on addr, the lowest a multiple
// of n, all or nothing, and returns the lowest.
func (t *Table) ReserveBlock(p Proto, addr netip.Addr, n int) (netip.AddrPort, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	port, ok := t.alloc.allocateBlock(p, addr, n)
	if !ok {
		return netip.AddrPort{}, fmt.Errorf("nat: %d consecutive %v ports on %v: %w", n, p, addr, ErrNoPorts)
	}
	return netip.AddrPortFrom(addr, port), nil
}

// ReleasePort frees a port taken by ReservePort or ReserveBlock that was
// never handed to ExpectInbound.
func (t *Table) ReleasePort(p Proto, ap netip.AddrPort) {
	t.mu.Lock()
	t.alloc.release(p, ap)
	t.mu.Unlock()
}

// ExpectOutbound installs an outbound expectation. Only one may be live per
// client and destination at now.
func (t *Table) ExpectOutbound(e *Expectation, now time.Time) error {
	v6 := e.Dst.Addr().Is6()
	if e.Client.Is6() != v6 || (e.Redirect.IsValid() && e.Redirect.Addr().Is6() != v6) ||
		(e.ExternalAddr.IsValid() && e.ExternalAddr.Is6() != v6) {
		return fmt.Errorf("nat: expectation for %v to %v: the families differ (fwx does not translate between IPv4 and IPv6)", e.Client, e.Dst)
	}
	k := expectKey{e.Proto, e.Client, e.Dst}
	t.mu.Lock()
	defer t.mu.Unlock()
	old := t.expects[k]
	if old != nil && !old.doneLocked(now.UnixNano()) {
		return fmt.Errorf("nat: expectation for %v to %v: %w", e.Client, e.Dst, ErrPortInUse)
	}
	if old != nil {
		t.finishLocked(old)
	}
	t.expects[k] = e
	t.nexpects.Add(1)
	return nil
}

// ExpectInbound installs an inbound expectation on its reserved External
// endpoint. The endpoint stays taken until the expectation is cancelled
// and its last flow has ended.
func (t *Table) ExpectInbound(e *Expectation) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.owner(e.Proto, e.External) != nil {
		return fmt.Errorf("nat: %v %v: %w", e.Proto, e.External, ErrPortInUse)
	}
	if e.Inside.IsValid() && e.Inside.Addr().Is6() != e.External.Addr().Is6() {
		return fmt.Errorf("nat: %v %v for %v: the families differ", e.Proto, e.External, e.Inside)
	}
	m := t.newMappingLocked(e.Proto, e.Inside, e.External)
	m.expect = e
	e.mapping = m
	t.addMappingLocked(m)
	t.binds[e] = struct{}{}
	t.bindInsideLocked(m)
	return nil
}

// bindInsideLocked makes the mapping of a UDP bind whose inside endpoint
// is known the mapping of that endpoint too, unless the endpoint already
// has one: what it sends out (where the policy or a pinhole lets it) then
// leaves from the bound port, one external endpoint for every destination
// (RFC 4787 REQ-1). An RTP receiver's reports and NAT-opening packets so
// come from the very ports its peer was told to send to. The mapping
// leaves the inside index when it ends (dropMappingLocked).
func (t *Table) bindInsideLocked(m *mapping) {
	if m.proto == UDP && m.expect.Inside.IsValid() && t.byInside.get(mapKey{m.proto, m.v6, m.inside}) == nil {
		t.byInside.put(m)
	}
}

// ExpectOnMapping installs an inbound expectation on the dynamic mapping
// that holds e.External for an inside endpoint of client: the peers it
// admits may reach that endpoint whatever the filtering behaviour, and
// take precedence over it (ISA's RetroactiveAllowBind: a socket the client
// has had for a while is allowed secondary inbound flows; TFTP's transfer
// comes back to the port the request left from). It sets e.Inside to the
// mapping's inside endpoint. While the expectation is live it keeps the
// mapping; when the mapping ends, so does the expectation. It fails with
// ErrPinholeGone when no such mapping lives.
func (t *Table) ExpectOnMapping(e *Expectation, client netip.Addr) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	m := t.owner(e.Proto, e.External)
	if m == nil || m.static || m.expect != nil || t.addrPort(m.inside, m.v6).Addr() != client {
		return fmt.Errorf("nat: no mapping of %v on %v %v: %w", client, e.Proto, e.External, ErrPinholeGone)
	}
	e.Inside, e.mapping = t.addrPort(m.inside, m.v6), m
	t.pinholes[m] = append(t.pinholes[m], e)
	mu := t.stripe(m)
	mu.Lock()
	m.pinned = true
	mu.Unlock()
	return nil
}

// DynamicMapping returns the inside endpoint of the dynamic mapping (one a
// flow from the inside made) that holds external, and whether there is
// one.
func (t *Table) DynamicMapping(p Proto, external netip.AddrPort) (netip.AddrPort, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	m := t.owner(p, external)
	if m == nil || m.static || m.expect != nil {
		return netip.AddrPort{}, false
	}
	return t.addrPort(m.inside, m.v6), true
}

// admittingLocked returns the expectation of mapping m that admits a new
// flow from remote: the bind's, or one of the pinholes on a dynamic
// mapping; nil if none does. held reports a bind that would admit it but
// is not armed yet.
func (t *Table) admittingLocked(m *mapping, remote netip.AddrPort, now int64) (e *Expectation, held bool) {
	if e := m.expect; e != nil {
		if e.admitsLocked(remote, now) {
			return e, false
		}
		return nil, e.Unarmed && e.wouldAdmitLocked(remote, now)
	}
	for _, e := range t.pinholes[m] {
		if e.admitsLocked(remote, now) {
			return e, false
		}
	}
	return nil, false
}

// Unarmed reports whether a new flow from src on the outside to the
// external endpoint dst waits on an unarmed pinhole: one that will admit
// it once armed. Host mode holds such a connection, which the host's
// kernel accepted before fwx could decide, until that changes.
func (t *Table) Unarmed(p Proto, src, dst netip.AddrPort, now time.Time) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	m := t.owner(p, dst)
	if m == nil {
		return false
	}
	_, held := t.admittingLocked(m, src, now.UnixNano())
	return held
}

// SetExpectationInside sets the inside endpoint of an inbound expectation
// created before it was known (ISA's IFWXConnection::SetClientAddress).
func (t *Table) SetExpectationInside(e *Expectation, inside netip.AddrPort) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	if e.mapping == nil {
		return errors.New("nat: not an inbound expectation")
	}
	if e.done {
		return ErrPinholeGone
	}
	m := e.mapping
	if inside.Addr().Is6() != m.v6 {
		return fmt.Errorf("nat: %v for %v %v: the families differ", inside, e.Proto, e.External)
	}
	e.Inside = inside
	t.let(m.inside, m.v6)
	m.inside = t.hold(inside)
	t.bindInsideLocked(m)
	return nil
}

// Cancel withdraws an expectation: no new flow may use it. Flows already
// created through it live on. It returns ErrPinholeGone if the expectation
// had already been used up, cancelled or timed out.
func (t *Table) Cancel(e *Expectation, now time.Time) error {
	t.mu.Lock()
	gone := e.doneLocked(now.UnixNano())
	t.finishLocked(e)
	lapsed := e.lapseLocked()
	t.mu.Unlock()
	if lapsed {
		e.OnLapse()
	}
	if gone {
		return ErrPinholeGone
	}
	return nil
}

// Arm lets an expectation installed Unarmed admit flows from now on. It
// returns ErrPinholeGone if the expectation was used up, cancelled or
// timed out meanwhile.
func (t *Table) Arm(e *Expectation, now time.Time) error {
	t.mu.Lock()
	gone := e.doneLocked(now.UnixNano())
	if !gone {
		e.Unarmed = false
	}
	lapsed := e.lapseLocked()
	t.mu.Unlock()
	if lapsed {
		e.OnLapse()
	}
	if gone {
		return ErrPinholeGone
	}
	return nil
}

// Kill withdraws an expectation and ends every flow created through it;
// for a bind, every flow on its port (those the inside endpoint started
// from it too).
func (t *Table) Kill(e *Expectation, now time.Time) {
	t.mu.Lock()
	e.doneLocked(now.UnixNano())
	lapsed := e.lapseLocked()
	t.finishLocked(e)
	live := make([]*Flow, 0, len(e.flowSet))
	for f := range e.flowSet {
		if t.removeLocked(f) {
			live = append(live, f)
		}
	}
	t.mu.Unlock()
	if lapsed {
		e.OnLapse()
	}
	for _, f := range live {
		t.notifyEnded(f, now.UnixNano())
	}
}

// SetRemotes replaces the outside addresses an inbound expectation admits
// from now on (ISA's IFWXConnection::SetIpFilter); nil admits every
// address. Flows already admitted live on.
func (t *Table) SetRemotes(e *Expectation, r RemoteFilter) {
	t.mu.Lock()
	e.Remotes = r
	t.mu.Unlock()
}

// ExpectationLastSeen returns when a packet last crossed a live flow on an
// inbound expectation's port (a bind's: those its inside endpoint started
// from the port too), or the zero time when no flow lives there.
func (t *Table) ExpectationLastSeen(e *Expectation) time.Time {
	t.mu.Lock()
	defer t.mu.Unlock()
	var last int64
	if e.mapping != nil {
		for f := range e.flowSet {
			last = max(last, f.lastSeen.Load())
		}
	}
	if last == 0 {
		return time.Time{}
	}
	return time.Unix(0, last)
}

// ExpectationUsed reports how many flows used e.
func (t *Table) ExpectationUsed(e *Expectation) int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return e.used
}

// finishLocked marks e done, unindexes it and frees its mapping if no flow
// holds it.
func (t *Table) finishLocked(e *Expectation) {
	e.done = true
	k := expectKey{e.Proto, e.Client, e.Dst}
	if t.expects[k] == e {
		delete(t.expects, k)
		t.nexpects.Add(-1)
		if e.Redirect.IsValid() && e.ReleaseDst {
			t.alloc.release(e.Proto, e.Dst)
		}
		if e.ExternalPort != 0 && !e.portHanded {
			e.portHanded = true // released once
			t.alloc.release(e.Proto, netip.AddrPortFrom(t.externalAddr(e), e.ExternalPort))
		}
	}
	if m := e.mapping; m != nil {
		if m.expect == e {
			delete(t.binds, e)
		} else {
			t.unpinLocked(m, e)
		}
		t.dropMappingLocked(m)
	}
}

// externalAddr returns the address an outbound expectation's flows leave
// from.
func (t *Table) externalAddr(e *Expectation) netip.Addr {
	if e.ExternalAddr.IsValid() {
		return e.ExternalAddr
	}
	a, _ := t.ExternalFor(e.Client)
	return a
}

// expireExpectationsLocked drops expectations whose deadline passed, and
// returns those whose OnLapse is due.
func (t *Table) expireExpectationsLocked(now int64) []*Expectation {
	var lapsed []*Expectation
	expire := func(e *Expectation) {
		if e.doneLocked(now) {
			t.finishLocked(e)
			if e.lapseLocked() {
				lapsed = append(lapsed, e)
			}
		}
	}
	for _, e := range t.expects {
		expire(e)
	}
	for e := range t.binds {
		expire(e)
	}
	for _, es := range t.pinholes {
		for _, e := range slices.Clone(es) {
			expire(e)
		}
	}
	return lapsed
}

// unpinLocked removes pinhole e from dynamic mapping m.
func (t *Table) unpinLocked(m *mapping, e *Expectation) {
	es := slices.DeleteFunc(t.pinholes[m], func(x *Expectation) bool { return x == e })
	if len(es) > 0 {
		t.pinholes[m] = es
		return
	}
	delete(t.pinholes, m)
	mu := t.stripe(m)
	mu.Lock()
	m.pinned = false
	mu.Unlock()
}

// ExpectationLive reports whether e can still admit a flow at now.
func (t *Table) ExpectationLive(e *Expectation, now time.Time) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	return !e.doneLocked(now.UnixNano())
}

// ExpectationInUse reports whether e can still admit a flow at now or
// still has flows through it.
func (t *Table) ExpectationInUse(e *Expectation, now time.Time) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	if !e.doneLocked(now.UnixNano()) {
		return true
	}
	return e.flows > 0
}
