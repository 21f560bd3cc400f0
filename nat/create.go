package nat

import (
	"net/netip"
	"time"
)

// Flows are created here, on the first packet that matches none: from the
// inside when a pinhole or the policy allows, from the outside when a
// pinhole, a mapping's filtering or a published server admits the packet;
// in both cases only when the client that starts it has room under its
// limits, and the table under its own. The decisions are made without the
// table's lock; the flow and its mapping are made under it, in constant
// time.

// outbound returns the flow for a packet from the inside endpoint src to
// dst, creating it (and its mapping) when a pinhole or the policy allows,
// or nil and the reason when it may not be created.
func (t *Table) outbound(p Proto, src, dst netip.AddrPort, now int64) (*Flow, DropReason) {
	var e *Expectation
	held := false
	if t.nexpects.Load() > 0 {
		t.mu.Lock()
		e = t.outboundExpectLocked(p, src.Addr(), dst, now)
		if held = e != nil && e.Unarmed; held {
			e = nil // the policy alone may still allow the flow
		}
		t.mu.Unlock()
	}
	fs := flowSpec{target: dst, remote: dst, origin: Outbound}
	if e != nil {
		fs.rule, fs.userMode, fs.expect = e.Rule, e.UserMode, e
		fs.protocol, fs.filter = e.Protocol, e.Filter
		if e.Redirect.IsValid() {
			fs.remote = e.Redirect
		}
	} else {
		d := t.cfg.Decider.Outbound(p, src, dst)
		if !d.Allow && held {
			return nil, DropUnarmed // not logged: the client retransmits
		}
		if !d.Allow {
			t.denied(Denial{Proto: p, Origin: Outbound, Src: src, Dst: dst, Rule: d.Rule, Reason: DropPolicy}, now)
			return nil, DropPolicy
		}
		fs.rule, fs.userMode, fs.protocol, fs.filter = d.Rule, d.UserMode, d.Protocol, d.Filter
	}
	c, why := t.admit(src.Addr(), p, now)
	if c == nil {
		t.refuse(Denial{Proto: p, Origin: Outbound, Src: src, Dst: dst, Rule: why.String(), Reason: why}, now)
		return nil, why
	}
	fs.client = c

	var ended []*Flow
	fail := func(why DropReason, rule string) (*Flow, DropReason) {
		t.mu.Unlock()
		c.release(p)
		t.notifyAll(ended, now)
		t.denied(Denial{Proto: p, Origin: Outbound, Src: src, Dst: dst, Rule: rule, Reason: why}, now)
		return nil, why
	}
	t.mu.Lock()
	k, known := t.key(p, src, dst)
	if f := t.live(true, k, now); known && f != nil {
		// Another packet created the flow meanwhile.
		t.mu.Unlock()
		c.release(p)
		return f, 0
	}
	if known {
		ended = t.endExpiredLocked(k, now, ended)
	}
	m := t.mappingOf(p, src)
	var pinned netip.AddrPort
	if e != nil && e.ExternalPort != 0 {
		// A pinned source port: the mapping must be on it, and a mapping
		// made for it takes the port over (before the claim, which may
		// end the expectation and would free the port).
		pinned = netip.AddrPortFrom(t.externalAddr(e), e.ExternalPort)
		if (m != nil && t.addrPort(m.external, m.v6) != pinned) || (m == nil && e.portHanded) {
			return fail(DropNoPort, "pinned-port-taken")
		}
		e.portHanded = true
	}
	if e != nil && !t.claimLocked(e, now) {
		// The pinhole was used up or cancelled meanwhile.
		if m == nil && pinned.IsValid() {
			e.portHanded = false // not taken: ending e frees it
			t.finishLocked(e)
		}
		return fail(DropPolicy, e.Rule)
	}
	var ok bool
	if ended, ok = t.roomLocked(now, ended); !ok {
		return fail(DropTableFull, "table-full")
	}
	nptAddr, npt := netip.Addr{}, false
	if m == nil && e == nil && !fs.userMode && !(p == TCP && t.cfg.UserModeTCP) && len(t.npts) > 0 {
		nptAddr, npt = t.nptOut(src.Addr())
	}
	switch {
	case m == nil && pinned.IsValid():
		m = t.mapLocked(p, src, pinned, false)
	case npt:
		// NPTv6: the inside address translated, the port kept.
		m = t.mapLocked(p, src, netip.AddrPortFrom(nptAddr, src.Port()), false)
	case m == nil:
		extAddr, ok := t.ExternalFor(src.Addr())
		if e != nil && e.ExternalAddr.IsValid() {
			extAddr, ok = e.ExternalAddr, true
		}
		if !ok {
			return fail(DropNoAddress, "no-external-address")
		}
		port, ok := t.alloc.allocate(p, extAddr, src.Port())
		if !ok {
			// Short of ports: one held by flows that may go makes room.
			if ended, ok = t.reclaimPortLocked(p, extAddr, src.Port(), now, ended); ok {
				port, ok = t.alloc.allocate(p, extAddr, src.Port())
			}
		}
		if !ok {
			return fail(DropNoPort, "no-free-port")
		}
		m = t.mapLocked(p, src, netip.AddrPortFrom(extAddr, port), false)
	}
	f := t.newFlowLocked(m, fs, now)
	t.mu.Unlock()
	t.notifyAll(ended, now)
	t.started(f)
	return f, 0
}

// inbound returns a new flow for a packet from src on the outside to the
// external endpoint dst that matched no flow, or nil and the reason when
// neither a pinhole, a mapping's filtering nor a published server admits
// it. An unsolicited packet takes no lock shared beyond its mapping.
func (t *Table) inbound(p Proto, src, dst netip.AddrPort, syn bool, now int64) (*Flow, DropReason) {
	m := t.owner(p, dst)
	opening := p != TCP || syn
	if !opening {
		// Only packets that could open a flow are logged, so a stray
		// ACK does not fill the log.
		return nil, DropStale
	}
	fs := flowSpec{remote: src, origin: Inbound}
	admit, why := false, DropUnsolicited
	var e *Expectation
	var static, withdrawn, pinned bool
	if m != nil {
		static, withdrawn, pinned = t.kind(m)
	}
	switch {
	case m == nil && p == TCP && t.lostBind(p, dst, now):
		t.denied(Denial{Proto: p, Origin: Inbound, Src: src, Dst: dst, Rule: "pinhole-gone", Reason: DropPinholeGone}, now)
		return nil, DropPinholeGone
	case m == nil || withdrawn:
	case static:
		d := t.cfg.Decider.Inbound(p, src, dst)
		admit, fs.rule, fs.userMode = d.Allow, d.Rule, d.UserMode
		fs.protocol, fs.filter = d.Protocol, d.Filter
		if !admit {
			why = DropPolicy // a published server's rule refused the source
		}
	case m.expect != nil || pinned:
		var held bool
		t.mu.Lock()
		e, held = t.admittingLocked(m, src, now)
		t.mu.Unlock()
		switch {
		case held:
			// An unarmed bind: dropped unlogged, for the peer to
			// retransmit.
			return nil, DropUnarmed
		case e != nil:
			admit = true
			fs.rule, fs.userMode, fs.expect = e.Rule, e.UserMode, e
			fs.protocol, fs.filter = e.Protocol, e.Filter
			fs.inboundOnly = p == UDP && !e.Bidirectional
		case m.expect != nil:
			fs.rule = m.expect.Rule // a bind that does not admit src
		default:
			admit = fs.admittedBy(t.filter(m, src, now))
		}
	default:
		admit = fs.admittedBy(t.filter(m, src, now))
	}
	if !admit {
		// Unsolicited or filtered out: dropped without a reply (RFC 5382
		// REQ-4).
		rule := "default-deny"
		if fs.rule != "" {
			rule = fs.rule
		}
		t.denied(Denial{Proto: p, Origin: Inbound, Src: src, Dst: dst, Rule: rule, Reason: why}, now)
		return nil, why
	}
	c, why := t.admit(src.Addr(), p, now)
	if c == nil {
		t.refuse(Denial{Proto: p, Origin: Inbound, Src: src, Dst: dst, Rule: why.String(), Reason: why}, now)
		return nil, why
	}
	fs.client = c

	var ended []*Flow
	fail := func(why DropReason) (*Flow, DropReason) {
		t.mu.Unlock()
		c.release(p)
		t.notifyAll(ended, now)
		return nil, why
	}
	t.mu.Lock()
	if k, known := t.key(p, dst, src); known {
		if f := t.live(false, k, now); f != nil {
			t.mu.Unlock()
			c.release(p)
			return f, 0
		}
	}
	if t.owner(p, dst) != m || m.withdrawn || (e != nil && !e.admitsLocked(src, now)) {
		return fail(DropUnsolicited) // the mapping, its publication or the pinhole ended meanwhile
	}
	if r, known := t.find(src); known {
		ended = t.endExpiredLocked(flowKey{p, m.v6, m.inside, r}, now, ended)
	}
	var ok bool
	if ended, ok = t.roomLocked(now, ended); !ok {
		t.denied(Denial{Proto: p, Origin: Inbound, Src: src, Dst: dst, Rule: "table-full", Reason: DropTableFull}, now)
		return fail(DropTableFull)
	}
	if e != nil && e.oneSource() {
		e.source = src
	}
	f := t.newFlowLocked(m, fs, now)
	if e != nil {
		t.claimLocked(e, now) // after the flow holds the mapping
	}
	t.mu.Unlock()
	t.notifyAll(ended, now)
	t.started(f)
	return f, 0
}

func (t *Table) started(f *Flow) {
	if o := t.cfg.Observer; o != nil {
		o.FlowStarted(f)
	}
	if f.expect != nil && f.expect.OnFlow != nil {
		f.expect.OnFlow(f)
	}
}

// notifyAll reports the end of flows removed at now.
func (t *Table) notifyAll(fs []*Flow, now int64) {
	for _, f := range fs {
		t.notifyEnded(f, now)
	}
}

// endExpiredLocked removes an expired flow that still holds key k in the out
// index, so a new flow can take its place, and appends it to ended for
// notification.
func (t *Table) endExpiredLocked(k flowKey, now int64, ended []*Flow) []*Flow {
	f := t.get(true, k)
	if f == nil || !f.expired(now, &t.cfg.Timeouts) || !t.removeLocked(f) {
		return ended
	}
	return append(ended, f)
}

func unixNano(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixNano()
}
