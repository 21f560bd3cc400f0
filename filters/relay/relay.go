// Package relay is fwx's pass-through filter: it puts the connections of
// the protocols bound to it on the user-mode path and copies their bytes
// unchanged, so that an operator can measure what the user-mode path itself
// costs, or force a protocol through it.
package relay

import (
	"context"
	"errors"
	"fmt"

	"github.com/rs/zerolog"

	"github.com/fwx-dev/fwx/session"
	"github.com/fwx-dev/fwx/session/stream"
)

// MaxBufferSize is the largest Config.BufferSize: a copy buffer is taken
// per direction and connection, so a larger one costs memory per
// connection without making a copy faster.
const MaxBufferSize = 4 << 20

// errNoPeer is what Serve returns when fwx gives it only one socket, which
// happens only to a filter that emulates a server or a bind; relay never
// does, so it is a bug in fwx.
var errNoPeer = errors.New("filters/relay: a connection without both sockets")

// Config configures the filter. The zero value is the default.
type Config struct {
	// BufferSize is the size of each direction's copy buffer; 0 means
	// stream.DefaultBufferSize. Init rejects a negative size or one above
	// MaxBufferSize.
	BufferSize int
	// Log receives one debug record per connection when it ends, with the
	// bytes copied each way; the zero value logs nothing.
	Log zerolog.Logger
}

// New returns a relay filter.
func New(cfg Config) *Filter { return &Filter{cfg: cfg} }

// Filter is the relay filter. It attaches a pass-through data filter to
// every connection of its protocols: outbound ones (a client behind fwx
// connects out) and inbound ones (a published server). It keeps no state
// of its own and is safe for concurrent use.
type Filter struct{ cfg Config }

var (
	_ session.Filter        = (*Filter)(nil)
	_ session.SessionFilter = sessionFilter{}
	_ session.DataFilter    = passThrough{}
)

// Init implements session.Filter. It rejects a bad Config, which stops
// fwx from starting, and hooks the connect events of the protocols the
// policy binds to the filter.
func (f *Filter) Init() (session.Hooks, error) {
	if f.cfg.BufferSize < 0 || f.cfg.BufferSize > MaxBufferSize {
		return session.Hooks{}, fmt.Errorf("filters/relay: BufferSize %d: want 0 to %d", f.cfg.BufferSize, MaxBufferSize)
	}
	return session.Hooks{Events: session.EventConnectTCP | session.EventAcceptedConnection}, nil
}

// AttachToSession implements session.Filter.
func (f *Filter) AttachToSession(s *session.Session) (session.SessionFilter, error) {
	return sessionFilter{cfg: f.cfg}, nil
}

// Shutdown implements session.Filter. The filter holds nothing beyond its
// connections, which fwx ends first.
func (f *Filter) Shutdown() {}

// sessionFilter gives each connection of the filter's protocols its own
// pass-through data filter.
type sessionFilter struct{ cfg Config }

// HandleEvent implements session.SessionFilter.
func (sf sessionFilter) HandleEvent(ev *session.Event) error {
	switch ev.Type {
	case session.EventConnectTCP, session.EventAcceptedConnection:
		// PriorityMiddle: the relay neither edits addresses nor plays a
		// peer, so it goes where a content scanner would, in the middle.
		//lint:ignore S1016 a session filter and a data filter share a configuration, not a meaning
		return ev.Conn.AttachDataFilter(passThrough{cfg: sf.cfg}, session.PriorityMiddle)
	}
	return nil
}

// Detach implements session.SessionFilter.
func (sf sessionFilter) Detach() {}

// passThrough is the data filter: stream.Relay between the two sockets,
// with its half-close and abort propagation, and nothing else. What it
// costs over the fast path is the user-mode path's own cost.
type passThrough struct{ cfg Config }

// Serve implements session.DataFilter.
func (p passThrough) Serve(ctx context.Context, c *session.Connection, internal, external session.Socket) error {
	if internal == nil || external == nil {
		for _, s := range []session.Socket{internal, external} {
			if s != nil {
				s.Abort()
				s.Close()
			}
		}
		return errNoPeer
	}
	up, down, err := stream.Relay(ctx, internal, external, p.cfg.BufferSize)
	if ev := p.cfg.Log.Debug(); ev != nil {
		ev.Str("protocol", c.Protocol()).Stringer("client", c.ClientAddr()).Stringer("addr", c.Addr()).
			Bool("inbound", c.Inbound()).Int64("client_to_server", up).Int64("server_to_client", down).
			AnErr("error", err).Msg("relay: connection ended")
	}
	return err
}
