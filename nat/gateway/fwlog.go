package gateway

import (
	"maps"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rs/zerolog"

	"github.com/fwx-dev/fwx/nat"
	"github.com/fwx-dev/fwx/session"
)

// flowLog writes the firewall log: one record when a flow is allowed, one
// when it ends, and one per denied flow however often it was retried,
// with the fields of ISA Server's firewall log (client, original
// destination, translated address, protocol, rule, action, bytes and
// packets each way, duration, and the path that carried the flow). Each
// record's "time" is the event's time on fwx's clock.
//
// A user-mode flow is written only once its filters have decided it
// (session.Decisions): "allowed" when they let it through, and one
// "denied" record, at its end, when one refused it, so that every record
// is true when written.
//
// The logger is called on the packet path: what it writes to must not
// block (cmd/fwx puts an fwx.LogQueue under it).
type flowLog struct {
	log     zerolog.Logger
	clock   session.Clock
	denials denials

	userMu    sync.Mutex
	undecided map[*nat.Flow]struct{} // user-mode flows their filters have not decided yet
	refused   map[*nat.Flow]string   // by the filter named, until they end

	createdMu sync.Mutex
	created   map[string]uint64 // flows admitted, by rule

	// What the flows whose end was logged carried, from their clients'
	// side: status and metrics add the live flows to it.
	bytesSent, bytesReceived, pktsSent, pktsReceived atomic.Uint64
}

var (
	_ nat.Observer      = (*flowLog)(nil)
	_ session.Decisions = (*flowLog)(nil)
)

func newFlowLog(log zerolog.Logger, clock session.Clock, quiet time.Duration) *flowLog {
	if quiet <= 0 {
		quiet = 30 * time.Second
	}
	return &flowLog{
		log:       log,
		clock:     clock,
		created:   make(map[string]uint64),
		undecided: make(map[*nat.Flow]struct{}),
		refused:   make(map[*nat.Flow]string),
		denials: denials{
			quiet:    quiet,
			longest:  max(5*time.Minute, quiet),
			pending:  make(map[denialKey]*pendingDenial),
			overflow: make(map[overflowKey]*overflowDenials),
			byRule:   make(map[string]uint64),
		},
	}
}

// ruleCounts returns how many flows each rule admitted, and how many
// attempts each refused, since the start.
func (l *flowLog) ruleCounts() (created, denied map[string]uint64) {
	l.createdMu.Lock()
	created = cloneCounts(l.created)
	l.createdMu.Unlock()
	l.denials.mu.Lock()
	denied = cloneCounts(l.denials.byRule)
	l.denials.mu.Unlock()
	return created, denied
}

// endedCounts returns what the flows whose end was logged carried.
func (l *flowLog) endedCounts() Counters {
	return Counters{l.bytesSent.Load(), l.bytesReceived.Load(), l.pktsSent.Load(), l.pktsReceived.Load()}
}

// FlowStarted implements nat.Observer. A user-mode flow waits for its
// filters' decision.
func (l *flowLog) FlowStarted(f *nat.Flow) {
	if f.UserMode() && f.Proto() != nat.ICMP {
		l.userMu.Lock()
		l.undecided[f] = struct{}{}
		l.userMu.Unlock()
		return
	}
	l.allowed(f)
}

// FlowAdmitted implements session.Decisions.
func (l *flowLog) FlowAdmitted(f *nat.Flow) {
	if l.decide(f) {
		l.allowed(f)
	}
}

// FlowRefused implements session.Decisions: the flow's record is written
// at its end, with the attempts it saw.
func (l *flowLog) FlowRefused(f *nat.Flow, filter string) {
	if l.decide(f) {
		l.userMu.Lock()
		l.refused[f] = filter
		l.userMu.Unlock()
	}
}

// decide reports whether f waited for its filters' decision, and
// forgets that it did.
func (l *flowLog) decide(f *nat.Flow) bool {
	l.userMu.Lock()
	defer l.userMu.Unlock()
	_, ok := l.undecided[f]
	delete(l.undecided, f)
	return ok
}

// allowed writes the record of a flow fwx let through, and counts it.
func (l *flowLog) allowed(f *nat.Flow) {
	l.createdMu.Lock()
	l.created[f.Rule()]++
	l.createdMu.Unlock()
	ev := l.log.Info()
	if ev == nil {
		return
	}
	flowFields(ev.Time("time", f.Start()), f).Str("event", "allowed").Str("action", "allow").Msg("flow")
}

// FlowEnded implements nat.Observer. A flow's duration runs from its first
// packet to its last, whenever its end is noticed. A user-mode flow that
// ends undecided (fwx stopping, say) was refused by no filter: it is
// written as allowed first; one a filter refused gets its denied record.
func (l *flowLog) FlowEnded(f *nat.Flow, at time.Time) {
	if f.UserMode() {
		l.userMu.Lock()
		filter, refused := l.refused[f]
		_, undecided := l.undecided[f]
		delete(l.refused, f)
		delete(l.undecided, f)
		l.userMu.Unlock()
		if refused {
			l.deniedByFilter(f, filter)
			return
		}
		if undecided {
			l.allowed(f)
		}
	}
	c := ClientCounters(f)
	l.bytesSent.Add(c.BytesSent)
	l.bytesReceived.Add(c.BytesReceived)
	l.pktsSent.Add(c.PacketsSent)
	l.pktsReceived.Add(c.PacketsReceived)
	ev := l.log.Info()
	if ev == nil {
		return
	}
	last := f.LastSeen()
	if last.Before(f.Start()) {
		last = f.Start()
	}
	flowFields(ev.Time("time", at), f).Str("event", "ended").Str("action", "allow").
		Uint64("bytes_sent", c.BytesSent).Uint64("bytes_received", c.BytesReceived).
		Uint64("packets_sent", c.PacketsSent).Uint64("packets_received", c.PacketsReceived).
		Float64("duration", last.Sub(f.Start()).Seconds()).Msg("flow")
}

// FlowDenied implements nat.Observer. The table calls it for every packet
// that would have opened a flow; the record waits until the flow's
// retries stop (see denials).
func (l *flowLog) FlowDenied(d nat.Denial) {
	l.denials.add(d, l.clock.Now())
}

// deniedByFilter writes the record of a user-mode flow a filter refused,
// now that it has ended: its attempts are the packets its client sent.
// With no filter named, fwx refused it over a limit, and the table's
// denial is its record.
func (l *flowLog) deniedByFilter(f *nat.Flow, filter string) {
	if filter == "" {
		return
	}
	attempts := max(ClientCounters(f).PacketsSent, 1)
	l.denials.mu.Lock()
	l.denials.byRule[f.Rule()] += attempts
	l.denials.mu.Unlock()
	ev := l.log.Info()
	if ev == nil {
		return
	}
	client, dst := f.Inside(), f.Target()
	if f.Origin() == nat.Inbound {
		client, dst = f.Remote(), f.External()
	}
	ev.Time("time", f.Start()).Str("event", "denied").Str("action", "deny").
		Str("protocol", f.Proto().String()).Str("direction", f.Origin().String()).
		Str("client", client.String()).Str("destination", dst.String()).
		Str("rule", f.Rule()).Str("reason", "filter").Str("filter", filter).Str("path", "user").
		Uint64("attempts", attempts).Time("last", f.LastSeen()).Msg("flow")
}

// flush writes the records of the denied flows that have not been retried
// for the quiet time at now, or all of them.
func (l *flowLog) flush(now time.Time, all bool) {
	flows, over := l.denials.due(now, all)
	for _, p := range flows {
		ev := l.log.Info()
		if ev == nil {
			return
		}
		ev.Time("time", p.first).Str("event", "denied").Str("action", "deny").
			Str("protocol", p.Proto.String()).Str("direction", p.Origin.String()).
			Str("client", p.Src.String()).Str("destination", p.Dst.String()).
			Str("rule", p.Rule).Str("reason", p.Reason.String()).Str("path", "fast").
			Uint64("attempts", p.attempts).Time("last", p.last).Msg("flow")
	}
	for _, o := range over {
		ev := l.log.Info()
		if ev == nil {
			return
		}
		ev.Time("time", o.first).Str("event", "denied-summary").Str("action", "deny").
			Str("protocol", o.key.proto.String()).Str("direction", o.key.origin.String()).
			Str("rule", o.key.rule).Uint64("attempts", o.attempts).Time("last", o.last).
			Msg("denied flows beyond the log's table of pending denials")
	}
}

// flowFields adds what identifies a flow: who started it, where to, and what
// fwx translated.
func flowFields(ev *zerolog.Event, f *nat.Flow) *zerolog.Event {
	ev = ev.Str("protocol", f.Proto().String()).Str("direction", f.Origin().String())
	if f.Origin() == nat.Inbound {
		ev = ev.Str("client", f.Remote().String()).Str("destination", f.External().String()).
			Str("translated_destination", f.Inside().String())
	} else {
		ev = ev.Str("client", f.Inside().String()).Str("destination", f.Remote().String()).
			Str("translated_source", f.External().String())
	}
	if e := f.Expectation(); e != nil && e.Filter != "" {
		// A secondary connection: its rule is that of the connection
		// it was negotiated on, and this is the filter that let it in.
		ev = ev.Str("opened_by", e.Filter)
	}
	return ev.Str("rule", f.Rule()).Str("path", Path(f))
}

// Path names the path that carries a flow, as the log and status show it:
// "user" or "fast".
func Path(f *nat.Flow) string {
	if f.UserMode() {
		return "user"
	}
	return "fast"
}

// Counters are what a flow carried, seen from its client: sent is from the
// client to its destination, received back.
type Counters struct {
	BytesSent, BytesReceived, PacketsSent, PacketsReceived uint64
}

// ClientCounters returns a flow's counters from its client's side.
func ClientCounters(f *nat.Flow) Counters {
	out, in, pout, pin := f.Counters()
	if f.Origin() == nat.Inbound {
		return Counters{in, out, pin, pout}
	}
	return Counters{out, in, pout, pin}
}

// cloneCounts copies a counter map, never nil.
func cloneCounts(m map[string]uint64) map[string]uint64 {
	if m == nil {
		return map[string]uint64{}
	}
	return maps.Clone(m)
}
