package nat

import (
	"net/netip"
	"time"
)

// Flows are created here, under Table.mu, on the first packet that matches
// none: from the inside when a pinhole or the policy allows, from the
// outside when a pinhole, a mapping's filtering or a published server
// admits the packet.

// outbound returns the flow for a packet from the inside endpoint src to
// dst, creating it (and its mapping) when a pinhole or the policy allows,
// or nil and the reason when it may not be created.
func (t *Table) outbound(p Proto, src, dst netip.AddrPort, now int64) (*Flow, DropReason) {
	t.mu.Lock()
	// Another packet may have created the flow meanwhile.
	if f := t.live(true, flowKey{p, src, dst}, now); f != nil {
		t.mu.Unlock()
		return f, 0
	}
	e := t.outboundExpectLocked(p, src.Addr(), dst, now)
	held := e != nil && e.Unarmed
	if held {
		e = nil // the policy alone may still allow the flow
	}
	t.mu.Unlock()

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

	t.mu.Lock()
	if f := t.live(true, flowKey{p, src, dst}, now); f != nil {
		t.mu.Unlock()
		return f, 0
	}
	ended := t.endExpiredLocked(flowKey{p, src, dst}, now)
	m := t.mappings[mapKey{p, src}]
	var pinned netip.AddrPort
	if e != nil && e.ExternalPort != 0 {
		// A pinned source port: the mapping must be on it, and a mapping
		// made for it takes the port over (before the claim, which may
		// end the expectation and would free the port).
		pinned = netip.AddrPortFrom(t.externalAddr(e), e.ExternalPort)
		if (m != nil && m.external != pinned) || (m == nil && e.portHanded) {
			t.mu.Unlock()
			t.notifyEnded(ended, now)
			t.denied(Denial{Proto: p, Origin: Outbound, Src: src, Dst: dst, Rule: "pinned-port-taken", Reason: DropNoPort}, now)
			return nil, DropNoPort
		}
		e.portHanded = true
	}
	if e != nil && !t.claimLocked(e, now) {
		// The pinhole was used up or cancelled meanwhile.
		if m == nil && pinned.IsValid() {
			e.portHanded = false // not taken: ending e frees it
			t.finishLocked(e)
		}
		t.mu.Unlock()
		t.notifyEnded(ended, now)
		t.denied(Denial{Proto: p, Origin: Outbound, Src: src, Dst: dst, Rule: e.Rule, Reason: DropPolicy}, now)
		return nil, DropPolicy
	}
	if m == nil && pinned.IsValid() {
		m = &mapping{table: t, proto: p, inside: src, external: pinned}
		t.mappings[mapKey{p, src}] = m
		t.addMappingLocked(m)
	}
	if m == nil {
		extAddr := t.cfg.External
		if e != nil {
			extAddr = t.externalAddr(e)
		}
		port, ok := t.alloc.allocate(p, extAddr, src.Port())
		if !ok {
			t.mu.Unlock()
			t.notifyEnded(ended, now)
			t.denied(Denial{Proto: p, Origin: Outbound, Src: src, Dst: dst, Rule: "no-free-port", Reason: DropNoPort}, now)
			return nil, DropNoPort
		}
		m = &mapping{table: t, proto: p, inside: src, external: netip.AddrPortFrom(extAddr, port)}
		t.mappings[mapKey{p, src}] = m
		t.addMappingLocked(m)
	}
	f := t.newFlowLocked(m, fs, now)
	t.mu.Unlock()
	t.notifyEnded(ended, now)
	t.started(f)
	return f, 0
}

// inbound returns a new flow for a packet from src on the outside to the
// external endpoint dst that matched no flow, or nil and the reason when
// neither a pinhole, a mapping's filtering nor a published server admits
// it.
func (t *Table) inbound(p Proto, src, dst netip.AddrPort, syn bool, now int64) (*Flow, DropReason) {
	t.mu.Lock()
	if f := t.live(false, flowKey{p, dst, src}, now); f != nil {
		t.mu.Unlock()
		return f, 0
	}
	m := t.byExt[mapKey{p, dst}]
	opening := p != TCP || syn
	admit, fs := false, flowSpec{remote: src, origin: Inbound}
	var e *Expectation
	var held bool
	if m != nil && opening {
		e, held = m.admittingLocked(src, now)
	}
	switch {
	case m == nil || !opening || m.withdrawn:
	case held:
		// An unarmed bind: dropped unlogged, for the peer to retransmit.
		t.mu.Unlock()
		return nil, DropUnarmed
	case e != nil:
		if e.oneSource() {
			e.source = src
		}
		fs.rule, fs.userMode, fs.expect = e.Rule, e.UserMode, e
		fs.protocol, fs.filter = e.Protocol, e.Filter
		fs.inboundOnly = p == UDP && !e.Bidirectional
		ended := t.endExpiredLocked(flowKey{p, m.inside, src}, now)
		f := t.newFlowLocked(m, fs, now)
		t.claimLocked(e, now) // after the flow holds the mapping
		t.mu.Unlock()
		t.notifyEnded(ended, now)
		t.started(f)
		return f, 0
	case m.expect != nil:
		fs.rule = m.expect.Rule // a bind that does not admit src
	case m.static:
		admit = true // the policy decides below
	default:
		admit, fs.rule = t.filterLocked(m, src, now)
	}
	t.mu.Unlock()
	if admit && m.static {
		d := t.cfg.Decider.Inbound(p, src, dst)
		admit, fs.rule, fs.userMode = d.Allow, d.Rule, d.UserMode
		fs.protocol, fs.filter = d.Protocol, d.Filter
	}
	if !admit {
		// Unsolicited or filtered out: dropped without a reply (RFC 5382
		// REQ-4). Only packets that could open a flow are logged, so a
		// stray ACK does not fill the log.
		if !opening {
			return nil, DropStale
		}
		rule, why := "default-deny", DropUnsolicited
		if fs.rule != "" {
			rule = fs.rule
		}
		if m != nil && m.static {
			why = DropPolicy // a published server's rule refused the source
		}
		t.denied(Denial{Proto: p, Origin: Inbound, Src: src, Dst: dst, Rule: rule, Reason: why}, now)
		return nil, why
	}
	t.mu.Lock()
	if f := t.live(false, flowKey{p, dst, src}, now); f != nil {
		t.mu.Unlock()
		return f, 0
	}
	ended := t.endExpiredLocked(flowKey{p, m.inside, src}, now)
	if t.byExt[mapKey{p, dst}] != m { // the mapping ended meanwhile
		t.mu.Unlock()
		t.notifyEnded(ended, now)
		return nil, DropUnsolicited
	}
	f := t.newFlowLocked(m, fs, now)
	t.mu.Unlock()
	t.notifyEnded(ended, now)
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

// filterLocked applies the filtering behaviour of dynamic mapping m to a
// packet from src (RFC 4787 section 5). It returns the rule of the flow
// that opened the way, for the log.
func (t *Table) filterLocked(m *mapping, src netip.AddrPort, now int64) (bool, string) {
	for _, f := range m.flows {
		if f.expired(now, &t.cfg.Timeouts) {
			continue
		}
		switch t.cfg.Filtering {
		case EndpointIndependent:
			return true, f.rule
		case AddressDependent:
			if f.remote.Addr() == src.Addr() {
				return true, f.rule
			}
		}
	}
	return false, ""
}

// endExpiredLocked removes an expired flow that still holds key k in the out
// index, so a new flow can take its place, and returns it for notification.
func (t *Table) endExpiredLocked(k flowKey, now int64) *Flow {
	s := t.shard(&k)
	s.mu.RLock()
	f := s.out[k]
	s.mu.RUnlock()
	if f == nil || !f.expired(now, &t.cfg.Timeouts) || !t.removeLocked(f) {
		return nil
	}
	return f
}

func unixNano(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixNano()
}
