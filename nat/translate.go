package nat

import (
	"net/netip"
	"time"

	"gvisor.dev/gvisor/pkg/tcpip/header"
)

// Verdict tells the caller what to do with a packet after translation.
type Verdict uint8

// Verdicts.
const (
	// Drop discards the packet silently.
	Drop Verdict = iota
	// Forward sends the rewritten packet out of the other side.
	Forward
	// Hairpin sends the rewritten packet back out of the side it came from:
	// an inside host reached another through its external endpoint.
	Hairpin
	// Local means the packet is addressed to fwx itself; the caller answers
	// it (echo) or refuses it.
	Local
	// Reject means the policy denied a new flow; the caller answers with a
	// RST or an ICMP administratively-prohibited error, or drops it,
	// as configured.
	Reject
	// TimeExceeded means the packet's TTL ran out; the caller may answer
	// with an ICMP time-exceeded error.
	TimeExceeded
	// Divert means the packet belongs to a user-mode flow: the caller hands
	// it, unchanged, to the netstack on the side it came from.
	Divert
	// Reset means a TCP segment belongs to no connection fwx knows of (one
	// lost in a restart, say): the caller answers with a RST, as a host
	// with no such connection would (RFC 9293 section 3.10.7.1), whatever
	// the policy's reject mode.
	Reset
)

var verdictNames = [...]string{"drop", "forward", "hairpin", "local", "reject", "time-exceeded", "divert", "reset"}

// String returns the verdict's name.
func (v Verdict) String() string {
	if int(v) < len(verdictNames) {
		return verdictNames[v]
	}
	return "verdict?"
}

// Outbound translates packet p, read from the inside, in place: it finds or
// creates its flow and rewrites its source to the flow's external endpoint.
//
//	inside packet ─► parse ─► to fwx? ─► ICMP error? ─► flow lookup ─► policy on miss ─► SNAT ─► hairpin?
func (t *Table) Outbound(p *Packet, now time.Time) Verdict {
	n := now.UnixNano()
	switch p.Kind {
	case Invalid:
		return t.drop(p.Reason)
	case Fragment:
		return t.drop(DropFragment)
	}
	if why, bad := t.fromInside(p); bad {
		return t.refuseIngress(p, Outbound, why, n)
	}
	switch p.Kind {
	case Error:
		return t.outboundError(p, n)
	case Query:
		if !p.echoRequest() {
			return t.drop(DropStale) // inside hosts do not answer pings from the outside
		}
	}
	dst := p.Dst.Addr()
	f := t.lookupAt(true, p.Proto, p.Src, p.Dst, n)
	if f != nil && p.Proto == TCP && p.opens() && f.tcp.state().ended() {
		f = t.reopen(f, Outbound, n)
	}
	if f == nil {
		if (t.IsInternal(dst) || (t.IsExternal(dst) && p.Kind == Query)) && !t.hasExpectation(p, n) {
			return Local
		}
		if !p.ChecksumValid() {
			return t.drop(DropChecksum) // it opens nothing, and gets no RST
		}
		// Only a SYN opens a TCP flow; another segment is one of a
		// connection fwx lost (a restart), picked up again or reset.
		if p.Proto == TCP && !p.opens() {
			if p.TCPFlags&(header.TCPFlagSyn|header.TCPFlagRst) != 0 {
				return t.stale(p, DropStale)
			}
			if f = t.pickup(p.Src, p.Dst, n); f == nil {
				return t.stale(p, DropStale)
			}
		}
		var why DropReason
		if f == nil {
			f, why = t.outbound(p.Proto, p.Src, p.Dst, n)
		}
		if f == nil {
			if why == DropUnarmed {
				return t.drop(why)
			}
			t.drops[why].Add(1)
			if why.clientLimit() {
				// Over its limits: as under a flood, the client's
				// retries are its pace.
				return Drop
			}
			return Reject
		}
	}
	if f.inboundOnly {
		return t.drop(DropInboundOnly)
	}
	t.account(f, p, true, n)
	if f.userMode {
		return Divert
	}
	if !p.DecrementTTL() {
		t.drops[DropTTL].Add(1)
		return TimeExceeded
	}
	p.SetSource(f.External())
	if f.target != f.remote {
		p.SetDestination(f.Remote())
	}
	if t.ownsOutside(p.Dst.Addr()) {
		// Hairpinning (RFC 4787 REQ-9, RFC 5382 REQ-8): the packet, now
		// from the sender's external endpoint, arrives at the receiver's
		// mapping as if from the outside.
		if t.translateInbound(p, n) != Forward {
			return Drop
		}
		return Hairpin
	}
	return Forward
}

// refuseIngress drops a packet that failed the ingress checks, counting
// why; one that could open a flow is also reported as denied, so the log
// says why a misconfigured client gets nowhere.
func (t *Table) refuseIngress(p *Packet, dir Direction, why DropReason, now int64) Verdict {
	if p.Kind == Transport && (p.Proto != TCP || p.opens()) || p.Kind == Query {
		t.denied(Denial{Proto: p.Proto, Origin: dir, Src: p.Src, Dst: p.Dst, Rule: why.String(), Reason: why}, now)
	}
	return t.drop(why)
}

// opens reports whether a TCP packet is a bare SYN, the only packet that
// may open a flow.
func (p *Packet) opens() bool {
	return p.TCPFlags&(header.TCPFlagSyn|header.TCPFlagAck|header.TCPFlagRst) == header.TCPFlagSyn
}

// hasExpectation reports whether an outbound pinhole waits for p's
// destination; it is asked only for packets to fwx's own addresses, which
// a redirect (RedirectConnections) may have claimed.
func (t *Table) hasExpectation(p *Packet, now int64) bool {
	if t.nexpects.Load() == 0 {
		return false // the common case, without the table's lock
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.outboundExpectLocked(p.Proto, p.Src.Addr(), p.Dst, now) != nil
}

// Inbound translates packet p, read from the outside, in place: it finds its
// flow (or admits a new one through a mapping's filtering or a published
// server) and rewrites its destination to the inside endpoint.
//
//	outside packet ─► parse ─► to fwx? ─► ICMP error? ─► flow lookup ─► filtering/publishing on miss ─► DNAT
func (t *Table) Inbound(p *Packet, now time.Time) Verdict {
	n := now.UnixNano()
	switch p.Kind {
	case Invalid:
		return t.drop(p.Reason)
	case Fragment:
		return t.drop(DropFragment)
	}
	if why, bad := t.fromOutside(p); bad {
		return t.refuseIngress(p, Inbound, why, n)
	}
	if !t.ownsOutside(p.Dst.Addr()) {
		// Addressed past fwx, to an inside host or elsewhere: nothing
		// reaches the inside unasked. Logged like any unsolicited flow.
		if p.Kind == Transport && (p.Proto != TCP || p.opens()) {
			t.denied(Denial{Proto: p.Proto, Origin: Inbound, Src: p.Src, Dst: p.Dst, Rule: "default-deny", Reason: DropUnsolicited}, n)
		}
		return t.drop(DropUnsolicited)
	}
	switch p.Kind {
	case Error:
		return t.inboundError(p, n)
	case Query:
		if p.echoRequest() && t.IsExternal(p.Dst.Addr()) {
			return Local // an NPTv6 address is an inside host's
		}
	}
	return t.translateInbound(p, n)
}

// Hairpinned translates p, a packet the user-mode path sends from a flow's
// external endpoint to another of fwx's external endpoints (hairpinning,
// RFC 4787 REQ-9), as Outbound turns a fast-path packet around: as if it
// arrived from the outside, but without the outside's ingress checks,
// since its source is fwx's own address. It returns Forward (p rewritten
// for the inside endpoint), Divert (that flow takes the user-mode path;
// p unchanged), or Drop.
func (t *Table) Hairpinned(p *Packet, now time.Time) Verdict {
	if p.Kind != Transport || !t.IsExternal(p.Src.Addr()) || !t.IsExternal(p.Dst.Addr()) {
		return t.drop(DropInvalid)
	}
	return t.translateInbound(p, now.UnixNano())
}

func (t *Table) translateInbound(p *Packet, n int64) Verdict {
	f := t.lookupAt(false, p.Proto, p.Dst, p.Src, n)
	if f != nil && p.Proto == TCP && p.opens() && f.tcp.state().ended() {
		f = t.reopen(f, Inbound, n)
	}
	if f == nil {
		if p.Kind == Query {
			return t.drop(DropStale) // an echo reply nobody asked for
		}
		if !p.ChecksumValid() {
			return t.drop(DropChecksum)
		}
		var why DropReason
		if f, why = t.inbound(p.Proto, p.Src, p.Dst, p.opens(), n); f == nil {
			if p.Proto == TCP && (why == DropStale || why == DropPinholeGone) {
				return t.stale(p, why)
			}
			return t.drop(why)
		}
	}
	t.account(f, p, false, n)
	if f.userMode {
		return Divert
	}
	if !p.DecrementTTL() {
		t.drops[DropTTL].Add(1)
		return TimeExceeded
	}
	p.SetDestination(f.Inside())
	if f.target != f.remote {
		p.SetSource(f.Target())
	}
	return Forward
}

// inboundError translates an ICMP error from the outside about a packet fwx
// sent: the quoted packet's source is put back to the inside endpoint and the
// error is addressed to the inside host (RFC 5508 REQ-4/5). The error does
// not refresh the flow (RFC 5508 REQ-6) and never ends it (RFC 5382 REQ-10).
// An error about a user-mode TCP flow goes to the netstack that sent the
// segment; one about a user-mode UDP flow is translated as on the fast
// path, since the user-mode path sends its datagrams with the flow's
// translation (no socket of fwx's would hear it).
func (t *Table) inboundError(p *Packet, n int64) Verdict {
	q := p.Quoted()
	f := t.lookupAt(false, q.Proto, q.Src, q.Dst, n)
	switch {
	case f == nil:
		return t.drop(DropStale)
	case f.userMode && f.proto != UDP:
		return Divert
	case !p.DecrementTTL():
		return t.drop(DropTTL)
	}
	p.SetQuotedSource(f.Inside())
	if f.target != f.remote {
		p.SetQuotedDestination(f.Target())
	}
	p.SetDestination(netip.AddrPortFrom(f.Inside().Addr(), 0))
	return Forward
}

// outboundError translates an ICMP error an inside host sends about a packet
// it received through fwx: the quoted destination becomes the external
// endpoint again and the error leaves from fwx's external address. Like all
// errors it does not refresh the flow (RFC 7857 section 2.3). An error
// about a user-mode TCP flow answers fwx's netstack, not the peer, and is
// dropped; one about a user-mode UDP flow is translated (see
// inboundError).
func (t *Table) outboundError(p *Packet, n int64) Verdict {
	q := p.Quoted()
	f := t.lookupAt(true, q.Proto, q.Dst, q.Src, n)
	switch {
	case f == nil || f.userMode && f.proto != UDP:
		return t.drop(DropStale)
	case !p.DecrementTTL():
		return t.drop(DropTTL)
	}
	if f.target != f.remote {
		p.SetQuotedSource(f.Remote())
	}
	ext := f.External()
	p.SetQuotedDestination(ext)
	p.SetSource(netip.AddrPortFrom(ext.Addr(), 0))
	return Forward
}

// reopen handles a SYN that arrives on a TCP flow whose connection ended
// (TIME_WAIT, or after a RST), from side dir: the same four-tuple opening
// a new connection, as a client that reuses its ports does. From the side
// that opened the old connection, the old flow makes way and the caller
// creates a new one, so the new connection is decided, logged and timed
// as new; it returns nil then. From the other side it returns f, whose
// packets then pass as the late packets of the old connection do.
func (t *Table) reopen(f *Flow, dir Direction, now int64) *Flow {
	if f.origin != dir {
		return f
	}
	t.end(f, now)
	return nil
}

// stale counts a TCP segment of no connection fwx knows (why: stale, or
// pinhole-gone) and answers it with a RST, unless it is one.
func (t *Table) stale(p *Packet, why DropReason) Verdict {
	t.drops[why].Add(1)
	if p.TCPFlags&header.TCPFlagRst != 0 {
		return Drop
	}
	return Reset
}
