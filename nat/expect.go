package nat

import (
	"errors"
	"fmt"
	"net/netip"
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
	// the first flow uses it up.
	Multiple bool
	// Deadline, if set, is when the expectation lapses if unused.
	Deadline time.Time
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

	// guarded by Table.mu
	done    bool
	used    int
	mapping *mapping // inbound: the mapping holding External
}

// admitsLocked reports whether an inbound flow from remote may use e.
func (e *Expectation) admitsLocked(remote netip.Addr, now int64) bool {
	return !e.doneLocked(now) && e.Inside.IsValid() && (e.Remotes == nil || e.Remotes.Contains(remote))
}

func (e *Expectation) doneLocked(now int64) bool {
	if !e.done && !e.Deadline.IsZero() && e.used == 0 && now > e.Deadline.UnixNano() {
		e.done = true
	}
	return e.done
}

// claimLocked records a use of e, reporting false if it is used up.
func (t *Table) claimLocked(e *Expectation, now int64) bool {
	if e.doneLocked(now) {
		return false
	}
	e.used++
	if !e.Multiple {
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
	k := expectKey{e.Proto, e.Client, e.Dst}
	t.mu.Lock()
	defer t.mu.Unlock()
	if old := t.expects[k]; old != nil && !old.doneLocked(now.UnixNano()) {
		return fmt.Errorf("nat: expectation for %v to %v: %w", e.Client, e.Dst, ErrPortInUse)
	}
	t.expects[k] = e
	return nil
}

// ExpectInbound installs an inbound expectation on its reserved External
// endpoint. The endpoint stays taken until the expectation is cancelled
// and its last flow has ended.
func (t *Table) ExpectInbound(e *Expectation) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	k := mapKey{e.Proto, e.External}
	if t.byExt[k] != nil {
		return fmt.Errorf("nat: %v %v: %w", e.Proto, e.External, ErrPortInUse)
	}
	m := &mapping{table: t, proto: e.Proto, inside: e.Inside, external: e.External, expect: e}
	e.mapping = m
	t.byExt[k] = m
	return nil
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
	e.Inside = inside
	e.mapping.inside = inside
	return nil
}

// Cancel withdraws an expectation: no new flow may use it. Flows already
// created through it live on. It returns ErrPinholeGone if the expectation
// had already been used up, cancelled or timed out.
func (t *Table) Cancel(e *Expectation, now time.Time) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	if e.doneLocked(now.UnixNano()) {
		t.finishLocked(e)
		return ErrPinholeGone
	}
	t.finishLocked(e)
	return nil
}

// Kill withdraws an expectation and ends every flow created through it.
func (t *Table) Kill(e *Expectation, now time.Time) {
	t.mu.Lock()
	t.finishLocked(e)
	ended := t.flowsWhere(func(f *Flow) bool { return f.expect == e })
	live := ended[:0]
	for _, f := range ended {
		if t.removeLocked(f) {
			live = append(live, f)
		}
	}
	t.mu.Unlock()
	for _, f := range live {
		t.notifyEnded(f, now.UnixNano())
	}
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
		if e.Redirect.IsValid() && e.ReleaseDst {
			t.alloc.release(e.Proto, e.Dst)
		}
	}
	if m := e.mapping; m != nil {
		t.dropMappingLocked(m)
	}
}

// expireExpectationsLocked drops expectations whose deadline passed.
func (t *Table) expireExpectationsLocked(now int64) {
	for _, e := range t.expects {
		if e.doneLocked(now) {
			t.finishLocked(e)
		}
	}
	for _, m := range t.byExt {
		if e := m.expect; e != nil && e.doneLocked(now) {
			t.finishLocked(e)
		}
	}
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
	if e.mapping != nil {
		return len(e.mapping.flows) > 0
	}
	return len(t.flowsWhere(func(f *Flow) bool { return f.expect == e })) > 0
}
