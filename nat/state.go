package nat

import (
	"encoding/gob"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"slices"
	"time"
)

// Saving and restoring the table across a restart (an upgrade, a
// reconfiguration): fwx writes its flows when it stops and reads them when
// it starts, so connections through it go on. A flow keeps its mapping's
// external port, its timers, TCP state and counters, its names for the
// log. What lived in fwx's memory only cannot be restored: the user-mode
// path's connections (terminated in its netstacks; their clients get a RST
// at their next segment) and the filters' pinholes (their filters'
// sessions are gone). Of the pinholes, the table remembers where they
// were: a connection to a port bound for one is refused with a RST, not
// left to time out, until the pinhole would have lapsed.

// ErrState means a saved table could not be read or does not belong to
// this table.
var ErrState = errors.New("nat: unusable saved table")

// stateVersion numbers the format of a saved table; another is refused.
const stateVersion = 1

// goneGrace is how long a bound port whose pinhole was lost is answered
// with a RST when the pinhole had no deadline of its own.
const goneGrace = 2 * time.Minute

type savedTable struct {
	Version  int
	External []netip.Addr
	Saved    time.Time
	Flows    []savedFlow
	Binds    []savedBind
}

type savedFlow struct {
	Proto                            Proto
	Origin                           Direction
	Inside, External, Target, Remote netip.AddrPort
	Rule, Protocol, Filter           string
	InboundOnly                      bool
	Start, LastSeen                  int64
	Bits, ISN                        uint32
	FinEnd                           [2]uint32
	BytesOut, BytesIn                uint64
	PktsOut, PktsIn                  uint64
}

type savedBind struct {
	Proto    Proto
	External netip.AddrPort
	Until    int64
}

// Save writes the table's flows to w, as of now, for [Table.Restore] in
// the next run; user-mode flows are left out. It returns how many it
// wrote, and handover, to be called once what it wrote is safely stored:
// the flows are then not reported ended by [Table.Close], since they go on
// in the next run. Without handover (the file could not be written) they
// end here, with their records. Call it once forwarding has stopped.
func (t *Table) Save(w io.Writer, now time.Time) (n int, handover func(), err error) {
	st := savedTable{Version: stateVersion, External: t.cfg.External, Saved: now}
	at := now.UnixNano()
	var saved []*Flow
	for _, f := range t.Flows() {
		if f.userMode || f.Removed() || f.expired(at, &t.cfg.Timeouts) {
			continue
		}
		out, in, pout, pin := f.Counters()
		st.Flows = append(st.Flows, savedFlow{
			Proto: f.proto, Origin: f.origin,
			Inside: f.Inside(), External: f.External(), Target: f.Target(), Remote: f.Remote(),
			Rule: f.labels.rule, Protocol: f.labels.protocol, Filter: f.labels.filter,
			InboundOnly: f.inboundOnly, Start: f.start, LastSeen: f.lastSeen.Load(),
			Bits: f.tcp.bits.Load() &^ flowRemoved, ISN: f.tcp.isn.Load(),
			FinEnd:   [2]uint32{f.tcp.finEnd[0].Load(), f.tcp.finEnd[1].Load()},
			BytesOut: out, BytesIn: in, PktsOut: pout, PktsIn: pin,
		})
		saved = append(saved, f)
	}
	t.mu.Lock()
	for e := range t.binds {
		if e.doneLocked(at) {
			continue
		}
		until := at + int64(goneGrace)
		if !e.Deadline.IsZero() {
			until = e.Deadline.UnixNano()
		}
		st.Binds = append(st.Binds, savedBind{Proto: e.Proto, External: e.External, Until: until})
	}
	t.mu.Unlock()
	if err := gob.NewEncoder(w).Encode(&st); err != nil {
		return 0, nil, fmt.Errorf("nat: save: %w", err)
	}
	return len(saved), func() {
		for _, f := range saved {
			f.tcp.set(flowReported) // its end will be reported by the next run
		}
	}, nil
}

// Restore puts back the flows [Table.Save] wrote, as of now: each on its
// mapping's external port, with its timers, state and counters, charged to
// its client (beyond its limits if need be: it held them before). A flow
// whose timer ran out meanwhile, or whose port is taken (by a publication
// since), is left out. It returns how many flows it restored and how many
// it left out, or an error wrapping [ErrState] when r holds no table saved
// for this one (another external address, another format). Call it before
// forwarding starts.
func (t *Table) Restore(r io.Reader, now time.Time) (restored, skipped int, err error) {
	var st savedTable
	if err := gob.NewDecoder(r).Decode(&st); err != nil {
		return 0, 0, fmt.Errorf("%w: %w", ErrState, err)
	}
	switch {
	case st.Version != stateVersion:
		return 0, 0, fmt.Errorf("%w: format %d, want %d", ErrState, st.Version, stateVersion)
	case !slices.ContainsFunc(st.External, t.IsExternal):
		return 0, 0, fmt.Errorf("%w: saved for external addresses %v, not %v", ErrState, st.External, t.cfg.External)
	}
	n := now.UnixNano()
	var started []*Flow
	t.mu.Lock()
	for i := range st.Flows {
		if f := t.restoreLocked(&st.Flows[i], n); f != nil {
			started = append(started, f)
		}
	}
	gone := make(map[goneKey]int64)
	for _, b := range st.Binds {
		if b.Until > n && t.IsExternal(b.External.Addr()) && t.owner(b.Proto, b.External) == nil {
			gone[goneKey{b.Proto, b.External}] = b.Until
		}
	}
	t.mu.Unlock()
	if len(gone) > 0 {
		t.gone.Store(&gone)
	}
	return len(started), len(st.Flows) - len(started), nil
}

// restoreLocked puts back saved flow s, or returns nil.
func (t *Table) restoreLocked(s *savedFlow, now int64) *Flow {
	v6 := s.External.Addr().Is6()
	for _, ap := range []netip.AddrPort{s.Inside, s.External, s.Target, s.Remote} {
		if !ap.Addr().IsValid() || ap.Addr().Is6() != v6 || ap.Addr().Is4In6() {
			return nil
		}
	}
	switch {
	case s.Proto != TCP && s.Proto != UDP && s.Proto != ICMP,
		s.Origin != Outbound && s.Origin != Inbound,
		s.Bits&flowRemoved != 0 || s.Proto != TCP && s.Bits&^flowReported != 0,
		!t.ownsOutside(s.External.Addr()):
		return nil
	}
	var probe Flow // its timer, to know whether it ran out meanwhile
	probe.proto = s.Proto
	probe.tcp.bits.Store(s.Bits)
	probe.lastSeen.Store(s.LastSeen)
	if probe.expired(now, &t.cfg.Timeouts) {
		return nil
	}
	if k, ok := t.key(s.Proto, s.Inside, s.Target); ok && t.get(true, k) != nil {
		return nil
	}
	m := t.mappingOf(s.Proto, s.Inside)
	switch {
	case m == nil:
		if m = t.mappingOnLocked(s.Proto, s.Inside, s.External); m == nil {
			return nil
		}
	case t.addrPort(m.external, m.v6) != s.External:
		return nil
	}
	fs := flowSpec{target: s.Target, remote: s.Remote, origin: s.Origin, rule: s.Rule,
		protocol: s.Protocol, filter: s.Filter, inboundOnly: s.InboundOnly,
		client: t.charge(s.clientAddr(), s.Proto), bits: s.Bits, start: s.Start}
	f := t.newFlowLocked(m, fs, now)
	f.lastSeen.Store(s.LastSeen)
	f.tcp.isn.Store(s.ISN)
	f.tcp.finEnd[0].Store(s.FinEnd[0])
	f.tcp.finEnd[1].Store(s.FinEnd[1])
	f.bytesOut.Store(s.BytesOut)
	f.bytesIn.Store(s.BytesIn)
	f.pktsOut.Store(s.PktsOut)
	f.pktsIn.Store(s.PktsIn)
	return f
}

// clientAddr is the address the saved flow is charged to: who started it.
func (s *savedFlow) clientAddr() netip.Addr {
	if s.Origin == Inbound {
		return s.Remote.Addr()
	}
	return s.Inside.Addr()
}

// goneKey is a port bound for a pinhole that a restart lost.
type goneKey struct {
	proto Proto
	ep    netip.AddrPort
}

// lostBind reports whether ep is a port bound for a pinhole that a restart
// lost, until that pinhole would have lapsed.
func (t *Table) lostBind(p Proto, ep netip.AddrPort, now int64) bool {
	g := t.gone.Load()
	if g == nil {
		return false
	}
	until, ok := (*g)[goneKey{p, ep}]
	return ok && now < until
}
