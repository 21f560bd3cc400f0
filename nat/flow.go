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
	// TCPSynSent is the idle timeout of a TCP flow whose opening SYN has no
	// answer yet: 2 minutes by default, Linux conntrack's SYN_SENT timer.
	TCPSynSent time.Duration
	// TCPSynRecv is the idle timeout of a TCP flow whose SYN was answered
	// but whose opener has not acknowledged the answer: 60 seconds by
	// default, conntrack's SYN_RECV timer. A client that sends SYNs and
	// ignores the replies holds its ports this long, not for the
	// established timer.
	TCPSynRecv time.Duration
	// TCPEstablished is the idle timeout of a TCP flow whose handshake
	// completed and that has not started closing: at least 2 h 4 min (RFC
	// 5382 REQ-5), the default.
	TCPEstablished time.Duration
	// TCPTransitory is the idle timeout of a TCP flow that is closing, or
	// has closed both ways (TIME_WAIT): at least 4 minutes (RFC 5382
	// REQ-5), the default.
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
		TCPSynSent:     2 * time.Minute,
		TCPSynRecv:     60 * time.Second,
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
		{&t.UDP, &d.UDP}, {&t.TCPSynSent, &d.TCPSynSent}, {&t.TCPSynRecv, &d.TCPSynRecv},
		{&t.TCPEstablished, &d.TCPEstablished}, {&t.TCPTransitory, &d.TCPTransitory},
		{&t.TCPRST, &d.TCPRST}, {&t.ICMP, &d.ICMP},
	} {
		if *f.v <= 0 {
			*f.v = *f.def
		}
	}
	return t
}

// Flow is one session through a mapping: the mapping's inside endpoint
// talking to one remote endpoint. What identifies it is fixed when it is
// created; its counters, timer and TCP state are updated per packet
// without locks, and its methods are safe for concurrent use.
//
// A flow is about 128 bytes: endpoints are packed IPv4, its names are
// shared with the other flows of the same rule, and what it shares with
// its mapping (the external endpoint) is kept there.
type Flow struct {
	inside, target, remote endpoint
	proto                  Proto
	origin                 Direction
	userMode               bool
	inboundOnly            bool // a UDP flow the inside may not answer on (a bind without Bidirectional)
	v6                     bool // the endpoints hold IPv6 handles (addr6.go)
	labels                 *labels
	start                  int64 // unix nanoseconds
	mapping                *mapping
	expect                 *Expectation // the pinhole the flow came through, if any
	client                 *client      // whose limits the flow counts against; nil if none
	// addrs6 points at an IPv6 flow's addresses whole (inside, target,
	// remote, external), for its accessors: the dictionary's copies
	// (addr6.go), which the flow keeps after it gives its handles back.
	addrs6 *[4]*[16]byte

	lastSeen atomic.Int64  // unix nanoseconds of the last packet that refreshed the flow
	tcp      tcpTracker    // TCP state, and the flow's lifecycle bits
	bytesOut atomic.Uint64 // inside → outside, IP bytes
	bytesIn  atomic.Uint64 // outside → inside
	pktsOut  atomic.Uint64
	pktsIn   atomic.Uint64
}

// labels are the names a flow carries for the log: the rule that admitted
// it, its policy protocol and application filter. Flows admitted alike
// share one.
type labels struct{ rule, protocol, filter string }

// Proto returns the flow's transport protocol.
func (f *Flow) Proto() Proto { return f.proto }

// Inside returns the inside endpoint: the client of an outbound flow, the
// server of a published one.
func (f *Flow) Inside() netip.AddrPort { return f.addr(0, f.inside) }

// External returns fwx's endpoint for the flow (its mapping's).
func (f *Flow) External() netip.AddrPort { return f.addr(3, f.mapping.external) }

// Target returns the endpoint the inside host addresses: the same as
// [Flow.Remote] except for a redirected flow (RedirectConnections), where
// the inside host talks to an address of fwx's and the flow really goes to
// Remote.
func (f *Flow) Target() netip.AddrPort { return f.addr(1, f.target) }

// Remote returns the endpoint on the outside (for a hairpinned flow, the
// other inside host's external endpoint).
func (f *Flow) Remote() netip.AddrPort { return f.addr(2, f.remote) }

// addr unpacks endpoint e, the i-th of the flow's addresses.
func (f *Flow) addr(i int, e endpoint) netip.AddrPort {
	if f.addrs6 != nil {
		return netip.AddrPortFrom(netip.AddrFrom16(*f.addrs6[i]), e.port)
	}
	return e.addrPort()
}

// Is6 reports whether the flow is an IPv6 flow.
func (f *Flow) Is6() bool { return f.v6 }

// Origin returns the side that started the flow.
func (f *Flow) Origin() Direction { return f.origin }

// Rule names the policy rule (or pinhole) that admitted the flow.
func (f *Flow) Rule() string { return f.labels.rule }

// UserMode reports whether the flow takes the user-mode path: its packets
// are handed to a netstack instead of being rewritten ([Divert]).
func (f *Flow) UserMode() bool { return f.userMode }

// Protocol names the flow's policy protocol, as the Decider or the
// expectation gave it.
func (f *Flow) Protocol() string { return f.labels.protocol }

// Filter names the flow's application filter, if any.
func (f *Flow) Filter() string { return f.labels.filter }

// Start returns when the flow was created: the time of its first packet.
func (f *Flow) Start() time.Time { return time.Unix(0, f.start) }

// LastSeen returns the time of the flow's last packet (ICMP errors about
// it excepted, RFC 5508 REQ-6). The flow's duration is LastSeen - Start.
func (f *Flow) LastSeen() time.Time { return time.Unix(0, f.lastSeen.Load()) }

// Expectation returns the pinhole the flow came through, or nil.
func (f *Flow) Expectation() *Expectation { return f.expect }

// Removed reports whether the flow is gone from the table: expired,
// killed or closed down.
func (f *Flow) Removed() bool { return f.tcp.bits.Load()&flowRemoved != 0 }

// Counters returns the bytes and packets the flow carried each way, counted
// as whole IP packets: out is inside → outside.
func (f *Flow) Counters() (bytesOut, bytesIn, pktsOut, pktsIn uint64) {
	return f.bytesOut.Load(), f.bytesIn.Load(), f.pktsOut.Load(), f.pktsIn.Load()
}

// TCPState returns the state of a TCP flow's connection; [TCPNone] for
// other protocols.
func (f *Flow) TCPState() TCPState {
	if f.proto != TCP {
		return TCPNone
	}
	return f.tcp.state()
}

// Established reports whether a TCP flow's opener has completed the
// handshake and neither side has started closing it or reset it.
func (f *Flow) Established() bool { return f.TCPState() == TCPEstablished }

// account records a packet of the flow going out (inside → outside) or in:
// its timer, its counters and its TCP state. It takes no lock. It returns
// the flow's lifecycle bits before and after, which differ when the packet
// moved a TCP connection on.
func (f *Flow) account(p *Packet, out bool, now int64) (old, next uint32) {
	f.touch(now)
	if out {
		f.bytesOut.Add(uint64(len(p.b)))
		f.pktsOut.Add(1)
	} else {
		f.bytesIn.Add(uint64(len(p.b)))
		f.pktsIn.Add(1)
	}
	if p.Proto != TCP {
		return 0, 0
	}
	seg := segment{flags: p.TCPFlags, fromOrigin: out == (f.origin == Outbound)}
	if !f.userMode {
		// The fast path sees both ends' sequence numbers; the user-mode
		// path sees two connections that do not share them.
		seg.seq, seg.ack, seg.len, seg.numbered = p.tcpSeq(), p.tcpAck(), uint32(len(p.Payload())), true
	}
	return f.tcp.observe(seg)
}

// Observe records what happened on flow f's outside where no packet of it
// crosses the table: in host mode a host socket carries the outside of a
// TCP flow, and this is how the flow's timer, counters and state learn of
// it. n counts payload bytes; flags are those a packet would have carried
// (a SYN when the connection to the server is up, a FIN at its end of
// stream, a RST when it was reset). When this closes the connection, the
// [Observer] is told.
func (t *Table) Observe(f *Flow, out bool, n int, flags header.TCPFlags, now time.Time) {
	f.touch(now.UnixNano())
	if out {
		f.bytesOut.Add(uint64(n))
	} else {
		f.bytesIn.Add(uint64(n))
	}
	if f.proto != TCP {
		return
	}
	if flags&header.TCPFlagSyn == 0 {
		// Whatever a socket reports after its handshake, its peer
		// acknowledged what came before.
		flags |= header.TCPFlagAck
	}
	old, next := f.tcp.observe(segment{flags: flags, fromOrigin: out == (f.origin == Outbound)})
	t.moved(f, old, next, now.UnixNano())
}

// timeout returns the flow's idle timer under t.
func (f *Flow) timeout(t *Timeouts) time.Duration {
	switch f.proto {
	case UDP:
		return t.UDP
	case ICMP:
		return t.ICMP
	}
	switch f.tcp.state() {
	case TCPSynSent:
		return t.TCPSynSent
	case TCPSynReceived:
		return t.TCPSynRecv
	case TCPEstablished:
		return t.TCPEstablished
	case TCPReset:
		return t.TCPRST
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
