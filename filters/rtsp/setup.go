package rtsp

import (
	"fmt"

	"github.com/fwx-dev/fwx/filters"
	"github.com/fwx-dev/fwx/session"
	"github.com/fwx-dev/fwx/session/policy"
)

// Name is the name the filter registers under in [filters.Default]: a
// policy protocol turns it on with `filter: rtsp`.
const Name = "rtsp"

// Settings are the keys a policy rule's filter_settings may give the
// filter, for the control connections the rule allows: max_streams and
// max_head (integers), the Config fields MaxStreams and MaxHead. A value
// out of the field's range is brought into it.
var Settings = []policy.Setting{
	{Name: "max_streams", Type: policy.IntSetting},
	{Name: "max_head", Type: policy.IntSetting},
}

func init() { Register(&filters.Default) }

// Register adds the filter, with the default Config, to r.
func Register(r *filters.Registry) {
	r.Register(Name, func() session.Filter { return New(Config{}) }, Settings...)
}

// Config configures the filter. The zero value is the default.
type Config struct {
	// MaxHead is the longest message head (start line and header fields)
	// the filter reads, in bytes; a longer one ends the control
	// connection. 0 means 8192; 256 to 65536.
	MaxHead int
	// MaxStreams caps the media streams one control connection may hold:
	// those whose SETUP awaits the server's answer and those set up. A
	// SETUP beyond it loses its UDP transport (and, offering no other, is
	// answered "461 Unsupported Transport" by fwx). 0 means 8; 1 to 256.
	MaxStreams int
}

// Defaults and bounds of Config.
const (
	defaultMaxHead    = 8192
	defaultMaxStreams = 8
	minMaxHead        = 256
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

// forConnection returns the Config for a connection a rule decided: its
// filter_settings override the filter's own, within their ranges.
func (c Config) forConnection(conn *session.Connection) Config {
	s := conn.Settings()
	if n, ok := s.Int("max_streams"); ok {
		c.MaxStreams = int(min(max(n, 1), maxMaxStreams))
	}
	if n, ok := s.Int("max_head"); ok {
		c.MaxHead = int(min(max(n, minMaxHead), maxMaxHead))
	}
	return c
}

func (c Config) check() error {
	switch {
	case c.MaxHead < minMaxHead || c.MaxHead > maxMaxHead:
		return fmt.Errorf("filters/rtsp: MaxHead %d: want %d to %d", c.MaxHead, minMaxHead, maxMaxHead)
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
		return ev.Conn.AttachDataFilter(newControl(sf.f.cfg.forConnection(ev.Conn), ev.Conn), session.PriorityNAT)
	}
	return nil
}

// Detach implements session.SessionFilter.
func (sf *sessionFilter) Detach() {}
