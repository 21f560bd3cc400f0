package ftp

import (
	"sync"

	"github.com/fwx-dev/fwx/filters"
	"github.com/fwx-dev/fwx/session"
	"github.com/fwx-dev/fwx/session/policy"
)

// Names the filter registers under in [filters.Default]. A policy protocol
// turns it on with `filter: ftp`; a rule that allows the protocol makes its
// connections read-only with `filter_settings: {read_only: true}` (ISA
// 2004's per-rule "Configure FTP": uploads and changes are refused).
// `filter: ftp-readonly` is kept as an alias of `ftp` whose rules are
// read-only unless they say `read_only: false`.
const (
	Name         = "ftp"
	NameReadOnly = "ftp-readonly"
)

// Settings are the keys a policy rule's filter_settings may give the
// filter: read_only, a bool (the Config field of that name, for the rule's
// connections).
var Settings = []policy.Setting{{Name: "read_only", Type: policy.BoolSetting}}

func init() {
	filters.Register(Name, func() session.Filter { return New(Config{}) }, Settings...)
	filters.Register(NameReadOnly, func() session.Filter { return New(Config{ReadOnly: true}) }, Settings...)
}

// Config configures the filter.
type Config struct {
	// ReadOnly refuses the commands that upload or change files with
	// "550" instead of passing them to the server.
	ReadOnly bool
}

// New returns an FTP filter.
func New(cfg Config) *Filter { return &Filter{cfg: cfg} }

// Filter is the FTP filter. It attaches a control-connection data filter
// to every connection of its protocols: outbound ones (a client behind fwx)
// and inbound ones (a published FTP server).
type Filter struct{ cfg Config }

var (
	_ session.Filter        = (*Filter)(nil)
	_ session.SessionFilter = (*sessionFilter)(nil)
	_ session.DataFilter    = (*control)(nil)
)

// Init implements session.Filter.
func (f *Filter) Init() (session.Hooks, error) {
	return session.Hooks{Events: session.EventConnectTCP | session.EventAcceptedConnection}, nil
}

// AttachToSession implements session.Filter.
func (f *Filter) AttachToSession(s *session.Session) (session.SessionFilter, error) {
	return &sessionFilter{f: f, s: s}, nil
}

// Shutdown implements session.Filter.
func (f *Filter) Shutdown() {}

// sessionFilter puts the control filter on each FTP control connection of
// a session, and keeps the pinholes they open (pinhole.go).
type sessionFilter struct {
	f *Filter
	s *session.Session

	mu   sync.Mutex
	open []*pinhole // not yet used or ended, over the session's control connections
}

// HandleEvent implements session.SessionFilter.
func (sf *sessionFilter) HandleEvent(ev *session.Event) error {
	switch ev.Type {
	case session.EventConnectTCP, session.EventAcceptedConnection:
		// PriorityNAT: the filter edits addresses, so it sits nearest the
		// client (ISA's fwx_dfpc_NAT).
		return ev.Conn.AttachDataFilter(newControl(sf.f.config(ev.Conn), sf), session.PriorityNAT)
	case session.EventEstablishedConnection:
		if h, ok := ev.Context.(*pinhole); ok {
			sf.usedBy(h, ev)
		}
	}
	return nil
}

// config returns the filter's Config for a connection: the rule's
// filter_settings override the filter's own.
func (f *Filter) config(c *session.Connection) Config {
	cfg := f.cfg
	if ro, ok := c.Settings().Bool("read_only"); ok {
		cfg.ReadOnly = ro
	}
	return cfg
}

// Detach implements session.SessionFilter.
func (sf *sessionFilter) Detach() {}
