package ftp

import (
	"github.com/fwx-dev/fwx/filters"
	"github.com/fwx-dev/fwx/session"
)

// Names the filter registers under in [filters.Default]. A policy protocol
// turns one on with `filter: ftp`; `filter: ftp-readonly` refuses uploads
// and changes (ISA's "FTP client read only" protocol), so read-only access
// is a matter of which protocol a rule allows.
const (
	Name         = "ftp"
	NameReadOnly = "ftp-readonly"
)

func init() {
	filters.Register(Name, func() session.Filter { return New(Config{}) })
	filters.Register(NameReadOnly, func() session.Filter { return New(Config{ReadOnly: true}) })
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
	return &sessionFilter{f: f}, nil
}

// Shutdown implements session.Filter.
func (f *Filter) Shutdown() {}

// sessionFilter puts the control filter on each FTP control connection.
type sessionFilter struct{ f *Filter }

// HandleEvent implements session.SessionFilter.
func (sf *sessionFilter) HandleEvent(ev *session.Event) error {
	switch ev.Type {
	case session.EventConnectTCP, session.EventAcceptedConnection:
		// PriorityNAT: the filter edits addresses, so it sits nearest the
		// client (ISA's fwx_dfpc_NAT).
		return ev.Conn.AttachDataFilter(newControl(sf.f.cfg), session.PriorityNAT)
	}
	return nil
}

// Detach implements session.SessionFilter.
func (sf *sessionFilter) Detach() {}
