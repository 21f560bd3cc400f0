package rtsp

import (
	"fmt"

	"github.com/fwx-dev/fwx/filters"
	"github.com/fwx-dev/fwx/session"
)

// Name is the name the filter registers under in [filters.Default]: a
// policy protocol turns it on with `filter: rtsp`.
const Name = "rtsp"

func init() {
	filters.Register(Name, func() session.Filter { return New(Config{}) })
}

// Config configures the filter. The zero value is the default.
type Config struct {
	// MaxHead is the longest message head (start line and header fields)
	// the filter reads, in bytes; a longer one ends the control
	// connection. 0 means 8192; at most 65536.
	MaxHead int
	// MaxStreams caps the media streams one control connection may hold:
	// those whose SETUP awaits the server's answer and those set up. A
	// SETUP beyond it is answered "503 Service Unavailable" by fwx. 0
	// means 8; at most 256.
	MaxStreams int
}

// Defaults and bounds of Config.
const (
	defaultMaxHead    = 8192
	defaultMaxStreams = 8
	maxMaxHead        = 1 << 16
	maxMaxStreams     = 256
)

// withDefaults fills the zero fields of c.
func (c Config) withDefaults() Config {
	if c.MaxHead == 0 {
		c.MaxHead = defaultMaxHead
	}
	if c.MaxStreams == 0 {
		c.MaxStreams = defaultMaxStreams
	}
	return c
}

func (c Config) check() error {
	switch {
	case c.MaxHead < 256 || c.MaxHead > maxMaxHead:
		return fmt.Errorf("filters/rtsp: MaxHead %d: want 256 to %d", c.MaxHead, maxMaxHead)
	case c.MaxStreams < 1 || c.MaxStreams > maxMaxStreams:
		return fmt.Errorf("filters/rtsp: MaxStreams %d: want 1 to %d", c.MaxStreams, maxMaxStreams)
	}
	return nil
}

// New returns an RTSP filter.
func New(cfg Config) *Filter { return &Filter{cfg: cfg.withDefaults()} }

// Filter is the RTSP filter. It attaches a control-connection data filter
// to every connection of its protocols: outbound ones (a player behind
// fwx) and inbound ones (a published RTSP server).
type Filter struct{ cfg Config }

var (
	_ session.Filter        = (*Filter)(nil)
	_ session.SessionFilter = (*sessionFilter)(nil)
	_ session.DataFilter    = (*control)(nil)
)

// Init implements session.Filter. A bad Config stops fwx from starting.
func (f *Filter) Init() (session.Hooks, error) {
	if err := f.cfg.check(); err != nil {
		return session.Hooks{}, err
	}
	return session.Hooks{Events: session.EventConnectTCP | session.EventAcceptedConnection}, nil
}

// AttachToSession implements session.Filter.
func (f *Filter) AttachToSession(s *session.Session) (session.SessionFilter, error) {
	return &sessionFilter{f: f}, nil
}

// Shutdown implements session.Filter. The filter holds nothing beyond its
// sessions, which fwx ends first.
func (f *Filter) Shutdown() {}

// sessionFilter puts the control filter on each RTSP control connection.
type sessionFilter struct{ f *Filter }

// HandleEvent implements session.SessionFilter.
func (sf *sessionFilter) HandleEvent(ev *session.Event) error {
	switch ev.Type {
	case session.EventConnectTCP, session.EventAcceptedConnection:
		// PriorityNAT: the filter edits addresses and ports, so it sits
		// nearest the client (ISA's fwx_dfpc_NAT).
		return ev.Conn.AttachDataFilter(newControl(sf.f.cfg, ev.Conn), session.PriorityNAT)
	}
	return nil
}

// Detach implements session.SessionFilter.
func (sf *sessionFilter) Detach() {}
