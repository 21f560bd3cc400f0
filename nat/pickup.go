package nat

import (
	"net/netip"
	"time"
)

// Recovering from a restart that lost the table (a crash, kill -9): the
// connections that were open go on sending mid-stream segments that match
// no flow. Linux conntrack's loose pickup (nf_conntrack_tcp_loose) takes
// such a segment from the inside as an established connection when the
// policy allows it; fwx does the same for a while after such a crash, on
// the port the connection had before, which port preservation makes the
// inside port: where that port is free, the connection goes on. Every other
// TCP segment that matches no flow is answered with a RST, as a host with no
// such connection would answer it (RFC 9293 section 3.10.7.1), so that
// neither end waits in silence for its own timeout.

// SetPickup lets mid-stream TCP segments from the inside re-create their
// flow until until (see [Table.Outbound]); fwx sets it when it starts and
// finds no state of a clean stop where it keeps one (the previous run
// crashed), for as long as an established connection may stay idle. The
// zero time turns pickup off.
func (t *Table) SetPickup(until time.Time) { t.pickupUntil.Store(unixNano(until)) }

// pickup re-creates, as an established connection, the flow of a
// mid-stream TCP segment from the inside endpoint src to dst, when the
// pickup window is open, the policy allows it on the fast path, and the
// endpoint's mapping is, or can be, on the port it had. It returns nil
// when it does not.
func (t *Table) pickup(src, dst netip.AddrPort, now int64) *Flow {
	if until := t.pickupUntil.Load(); until == 0 || now > until {
		return nil
	}
	if t.cfg.UserModeTCP {
		return nil // a connection fwx terminated cannot go on
	}
	d := t.cfg.Decider.Outbound(TCP, src, dst)
	if !d.Allow || d.UserMode {
		return nil // refused, or one fwx would terminate
	}
	c, _ := t.admit(src.Addr(), TCP, now)
	if c == nil {
		return nil
	}
	fs := flowSpec{target: dst, remote: dst, origin: Outbound, client: c, bits: tcpPickedUp,
		rule: d.Rule, protocol: d.Protocol, filter: d.Filter}
	var ended []*Flow
	var f *Flow
	created := false
	t.mu.Lock()
	if k, ok := t.key(TCP, src, dst); ok {
		f = t.live(true, k, now) // another packet may have re-created it
	}
	ext, hasAddr := t.ExternalFor(src.Addr())
	if a, ok := t.nptOut(src.Addr()); ok {
		ext, hasAddr = a, true // a fast-path flow of an NPTv6 host leaves from its own address
	}
	if f == nil && hasAddr {
		var ok bool
		ended, ok = t.roomLocked(now, ended)
		m := t.mappingOf(TCP, src)
		if m == nil && ok {
			m = t.mappingOnLocked(TCP, src, netip.AddrPortFrom(ext, src.Port()))
		}
		if created = m != nil && ok; created {
			f = t.newFlowLocked(m, fs, now)
			t.pickedUp.Add(1)
		}
	}
	t.mu.Unlock()
	t.notifyAll(ended, now)
	if !created {
		c.release(TCP)
		return f
	}
	t.started(f)
	return f
}

// tcpPickedUp are the bits of a connection taken up mid-stream: its
// handshake is long done.
const tcpPickedUp = tcpSynOrigin | tcpSynAnswer | tcpHandshake

// mappingOnLocked returns a new mapping of inside endpoint src on the
// external endpoint ext, or nil when ext is taken, or is an NPTv6 address
// and port other than src's own.
func (t *Table) mappingOnLocked(p Proto, src, ext netip.AddrPort) *mapping {
	if t.nptOutside(ext.Addr()) {
		if a, ok := t.nptOut(src.Addr()); !ok || netip.AddrPortFrom(a, src.Port()) != ext || t.nptMaps.get(p, ext) != nil {
			return nil
		}
	} else if err := t.alloc.take(p, ext, false); err != nil {
		return nil
	}
	return t.mapLocked(p, src, ext, false)
}
