package fwx

import (
	"sync"
	"sync/atomic"
	"time"

	"github.com/rs/zerolog"

	"github.com/fwx-dev/fwx/nat"
)

// flowLog writes the firewall log: one record when a flow is allowed, one
// when it ends, and one per denied flow however often it was retried,
// with the fields of ISA Server's firewall log (client, original
// destination, translated address, protocol, rule, action, bytes and
// packets each way, duration, and the path that carried the flow). Each
// record's "time" is the event's time on fwx's clock.
//
// The logger is called on the packet path: what it writes to must not
// block (cmd/fwx puts a [LogQueue] under it).
type flowLog struct {
	log     zerolog.Logger
	clock   Clock
	denials denials

	createdMu sync.Mutex
	created   map[string]uint64 // flows admitted, by rule

	// What the flows whose end was logged carried, from their clients'
	// side: status and metrics add the live flows to it.
	bytesSent, bytesReceived, pktsSent, pktsReceived atomic.Uint64
}

var _ nat.Observer = (*flowLog)(nil)

func newFlowLog(log zerolog.Logger, clock Clock, quiet time.Duration) *flowLog {
	if quiet <= 0 {
		quiet = 30 * time.Second
	}
	return &flowLog{log: log, clock: clock, created: make(map[string]uint64), denials: denials{
		quiet:    quiet,
		longest:  max(5*time.Minute, quiet),
		pending:  make(map[denialKey]*pendingDenial),
		overflow: make(map[overflowKey]*overflowDenials),
		byRule:   make(map[string]uint64),
	}}
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
func (l *flowLog) endedCounts() (bytesSent, bytesReceived, pktsSent, pktsReceived uint64) {
	return l.bytesSent.Load(), l.bytesReceived.Load(), l.pktsSent.Load(), l.pktsReceived.Load()
}

// FlowStarted implements nat.Observer.
func (l *flowLog) FlowStarted(f *nat.Flow) {
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
// packet to its last, whenever its end is noticed.
func (l *flowLog) FlowEnded(f *nat.Flow, at time.Time) {
	sent, received, psent, preceived := sentReceived(f)
	l.bytesSent.Add(sent)
	l.bytesReceived.Add(received)
	l.pktsSent.Add(psent)
	l.pktsReceived.Add(preceived)
	ev := l.log.Info()
	if ev == nil {
		return
	}
	last := f.LastSeen()
	if last.Before(f.Start()) {
		last = f.Start()
	}
	flowFields(ev.Time("time", at), f).Str("event", "ended").Str("action", "allow").
		Uint64("bytes_sent", sent).Uint64("bytes_received", received).
		Uint64("packets_sent", psent).Uint64("packets_received", preceived).
		Float64("duration", last.Sub(f.Start()).Seconds()).Msg("flow")
}

// FlowDenied implements nat.Observer. The table calls it for every packet
// that would have opened a flow; the record waits until the flow's
// retries stop (see denials).
func (l *flowLog) FlowDenied(d nat.Denial) {
	l.denials.add(d, l.clock.Now())
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
	return ev.Str("rule", f.Rule()).Str("path", flowPath(f))
}

// flowPath names the path that carries a flow, as the log and status show it.
func flowPath(f *nat.Flow) string {
	if f.UserMode() {
		return "user"
	}
	return "fast"
}
