package fwx

import (
	"time"

	"github.com/rs/zerolog"

	"github.com/fwx-dev/fwx/nat"
)

// flowLog writes the firewall log: one record when a flow is allowed or
// denied and one when it ends, with the fields of ISA Server's firewall log
// (client, original destination, translated address, protocol, rule, action,
// bytes each way, duration, and the path that carried the flow). Each
// record's "time" is the event's time on fwx's clock.
type flowLog struct {
	log   zerolog.Logger
	clock Clock
}

var _ nat.Observer = flowLog{}

// FlowStarted implements nat.Observer.
func (l flowLog) FlowStarted(f *nat.Flow) {
	ev := l.log.Info()
	if ev == nil {
		return
	}
	flowFields(ev.Time("time", f.Start()), f).Str("event", "allowed").Str("action", "allow").Msg("flow")
}

// FlowEnded implements nat.Observer.
func (l flowLog) FlowEnded(f *nat.Flow, at time.Time) {
	ev := l.log.Info()
	if ev == nil {
		return
	}
	out, in, _, _ := f.Counters()
	sent, received := out, in
	if f.Origin() == nat.Inbound {
		sent, received = in, out
	}
	flowFields(ev.Time("time", at), f).Str("event", "ended").Str("action", "allow").
		Uint64("bytes_sent", sent).Uint64("bytes_received", received).
		Float64("duration", at.Sub(f.Start()).Seconds()).Msg("flow")
}

// FlowDenied implements nat.Observer.
func (l flowLog) FlowDenied(d nat.Denial) {
	ev := l.log.Info()
	if ev == nil {
		return
	}
	ev.Time("time", l.clock.Now()).Str("event", "denied").Str("action", "deny").
		Str("protocol", d.Proto.String()).Str("direction", d.Origin.String()).
		Str("client", d.Src.String()).Str("destination", d.Dst.String()).
		Str("rule", d.Rule).Str("path", "fast").Msg("flow")
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
	path := "fast"
	if f.UserMode() {
		path = "user"
	}
	return ev.Str("rule", f.Rule()).Str("path", path)
}
