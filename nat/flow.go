package nat

import (
	"net/netip"
	"sync/atomic"
	"time"

	"gvisor.dev/gvisor/pkg/tcpip/header"
)

// Timeouts are the idle timers of flows. A zero field takes its default.
type Timeouts struct {
	// UDP is the idle timeout of a UDP flow: at least 2 minutes by RFC 4787
	// REQ-5, 5 minutes by default.
	UDP time.Duration
	// TCPEstablished is the idle timeout of a TCP flow whose handshake
	// completed and that has not closed: at least 2 h 4 min (RFC 5382
	// REQ-5), the default.
	TCPEstablished time.Duration
	// TCPTransitory is the idle timeout of a TCP flow that is opening or has
	// closed in both directions: at least 4 minutes (RFC 5382 REQ-5), the
	// default.
	TCPTransitory time.Duration
	// TCPRST is how long a TCP flow lives after a RST: 4 minutes by default,
	// so a stray RST cannot tear down a live mapping (RFC 7857 section 2.2).
	TCPRST time.Duration
	// ICMP is the idle timeout of an ICMP query flow: at least 60 seconds
	// (RFC 5508 REQ-2), the default.
	ICMP time.Duration
}

// DefaultTimeouts returns the timers fwx uses when none are configured.
func DefaultTimeouts() Timeouts {
	return Timeouts{
		UDP:            5 * time.Minute,
		TCPEstablished: 2*time.Hour + 4*time.Minute,
		TCPTransitory:  4 * time.Minute,
		TCPRST:         4 * time.Minute,
		ICMP:           60 * time.Second,
	}
}

// WithDefaults returns t with every zero (or negative) field replaced by
// its default.
func (t Timeouts) WithDefaults() Timeouts {
	d := DefaultTimeouts()
	for _, f := range []struct{ v, def *time.Duration }{
		{&t.UDP, &d.UDP}, {&t.TCPEstablished, &d.TCPEstablished},
		{&t.TCPTransitory, &d.TCPTransitory}, {&t.TCPRST, &d.TCPRST}, {&t.ICMP, &d.ICMP},
	} {
		if *f.v <= 0 {
			*f.v = *f.def
		}
	}
	return t
}

// Mapping is an endpoint-independent mapping (RFC 4787 REQ-1, RFC 5382
// REQ-1): one inside endpoint bound to one external endpoint for every
// destination. It lives while any of its flows lives, or for ever when it is
// static (a published server).
type Mapping struct {
	Proto    Proto
	Inside   netip.AddrPort
	External netip.AddrPort
	// Static mappings come from server publishing and never expire.
	Static bool

	expect *Expectation // an inbound pinhole holding the mapping; guarded by Table.mu
	flows  []*Flow      // guarded by Table.mu
}

// Flow is one session through a mapping: the mapping's inside endpoint
// talking to one remote endpoint. Its counters and timer are updated per
// packet without locks.
type Flow struct {
	Proto Proto
	// Inside is the inside endpoint: the client of an outbound flow, the
	// server of a published one.
	Inside netip.AddrPort
	// External is fwx's endpoint for the flow (the mapping's).
	External netip.AddrPort
	// Target is the endpoint the inside host addresses: the same as Remote
	// except for a redirected flow (RedirectConnections), where the inside
	// host talks to an address of fwx's and the flow really goes to Remote.
	Target netip.AddrPort
	// Remote is the endpoint on the outside (for a hairpinned flow, the
	// other inside host's external endpoint).
	Remote netip.AddrPort
	// Origin is the side that started the flow.
	Origin Direction
	// Rule names the policy rule that admitted the flow.
	Rule string
	// UserMode says the flow takes the user-mode path: its packets are
	// handed to a netstack instead of being rewritten ([Divert]).
	UserMode bool
	// Protocol and Filter name the flow's policy protocol and application
	// filter, as the Decider or the expectation gave them.
	Protocol, Filter string
	// Start is when the flow was created.
	Start time.Time

	mapping     *Mapping
	expect      *Expectation  // the pinhole the flow came through, if any
	inboundOnly bool          // a UDP flow the inside may not answer on (a bind without Bidirectional)
	lastSeen    atomic.Int64  // unix nanoseconds of the last packet that refreshed the flow
	tcp         atomic.Uint32 // tcpState bits
	bytesOut    atomic.Uint64 // inside → outside, IP bytes
	bytesIn     atomic.Uint64 // outside → inside
	pktsOut     atomic.Uint64
	pktsIn      atomic.Uint64
	ended       atomic.Bool
}

// Expectation returns the pinhole the flow came through, or nil.
func (f *Flow) Expectation() *Expectation { return f.expect }

// Counters returns the bytes and packets the flow carried each way, counted
// as whole IP packets: out is inside → outside.
func (f *Flow) Counters() (bytesOut, bytesIn, pktsOut, pktsIn uint64) {
	return f.bytesOut.Load(), f.bytesIn.Load(), f.pktsOut.Load(), f.pktsIn.Load()
}

// LastSeen returns the time of the last packet that refreshed the flow.
func (f *Flow) LastSeen() time.Time { return time.Unix(0, f.lastSeen.Load()) }

// account records a packet of the flow going out (inside → outside) or in:
// its timer, its counters and its TCP state. It takes no lock.
func (f *Flow) account(p *Packet, out bool, now int64) {
	f.touch(now)
	if out {
		f.bytesOut.Add(uint64(len(p.b)))
		f.pktsOut.Add(1)
	} else {
		f.bytesIn.Add(uint64(len(p.b)))
		f.pktsIn.Add(1)
	}
	if p.Proto == TCP {
		f.observeTCP(p.TCPFlags, out)
	}
}

// Observe records what happened on a flow's outside where no packet of it
// crosses the table: in host mode a host socket carries the outside of a
// TCP flow, and this is how the flow's timer, counters and state learn of
// it. n counts payload bytes; flags are those a packet would have carried
// (a SYN when the connection to the server is up, a FIN at its end of
// stream, a RST when it was reset).
func (f *Flow) Observe(out bool, n int, flags header.TCPFlags, now time.Time) {
	f.touch(now.UnixNano())
	if out {
		f.bytesOut.Add(uint64(n))
	} else {
		f.bytesIn.Add(uint64(n))
	}
	if f.Proto == TCP {
		f.observeTCP(flags, out)
	}
}

// TCP state bits, one per event seen; the timer follows from them.
const (
	tcpSynOut uint32 = 1 << iota
	tcpSynIn
	tcpFinOut
	tcpFinIn
	tcpRST
)

// observeTCP records the flags of a packet going out (inside → outside) or
// in. It is lock-free: bits only accumulate.
func (f *Flow) observeTCP(flags header.TCPFlags, out bool) {
	var add uint32
	switch {
	case flags&header.TCPFlagRst != 0:
		add = tcpRST
	case out:
		if flags&header.TCPFlagSyn != 0 {
			add |= tcpSynOut
		}
		if flags&header.TCPFlagFin != 0 {
			add |= tcpFinOut
		}
	default:
		if flags&header.TCPFlagSyn != 0 {
			add |= tcpSynIn
		}
		if flags&header.TCPFlagFin != 0 {
			add |= tcpFinIn
		}
	}
	if add != 0 && f.tcp.Load()&add != add {
		f.tcp.Or(add)
	}
}

// Established reports whether a TCP flow has seen a SYN each way and has not
// closed or been reset.
func (f *Flow) Established() bool {
	s := f.tcp.Load()
	return s&(tcpSynOut|tcpSynIn) == tcpSynOut|tcpSynIn && s&tcpRST == 0 && s&(tcpFinOut|tcpFinIn) != tcpFinOut|tcpFinIn
}

// timeout returns the flow's idle timer under t.
func (f *Flow) timeout(t *Timeouts) time.Duration {
	switch f.Proto {
	case UDP:
		return t.UDP
	case ICMP:
		return t.ICMP
	}
	s := f.tcp.Load()
	switch {
	case s&tcpRST != 0:
		return t.TCPRST
	case f.Established():
		return t.TCPEstablished
	}
	return t.TCPTransitory
}

// expired reports whether the flow's timer ran out at now.
func (f *Flow) expired(now int64, t *Timeouts) bool {
	return now-f.lastSeen.Load() > int64(f.timeout(t))
}

// touch refreshes the flow's timer; packets are seen in batches, so it
// skips the store when the time has not moved.
func (f *Flow) touch(now int64) {
	if f.lastSeen.Load() != now {
		f.lastSeen.Store(now)
	}
}
