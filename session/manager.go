package session

import (
	"fmt"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rs/zerolog"

	"github.com/fwx-dev/fwx/nat"
	"github.com/fwx-dev/fwx/session/policy"
)

// Config configures a [Manager].
type Config struct {
	// Table is the NAT table whose pinholes sessions open. Required.
	Table *nat.Table
	// Policy decides which protocols a client may use. Nil denies all.
	Policy *policy.Policy
	// Clock is the time source: pinhole deadlines and the filters'
	// timers ([Session.AfterFunc]) run on it. Nil means the system clock.
	Clock Clock
	// PinholeTimeout is how long a permission granted with [Timeout]
	// waits to be used ("about one minute" in ISA). Zero means 60 s.
	PinholeTimeout time.Duration
	// MaxPinholes caps the live connection objects and actions of one
	// session. Zero means 128.
	MaxPinholes int
	// SessionIdle is how long a session that holds nothing lives on: then
	// it ends, its filters are detached, and the client's next event starts
	// a new one. Zero means 10 minutes.
	SessionIdle time.Duration
	// UserPath gives the user-mode path's sockets. Nil means there is none:
	// grants that need it fail with ErrNotSupported.
	UserPath UserPath
	// Log receives diagnostics. The zero value discards them.
	Log zerolog.Logger
	// Decisions, if set, hears what the user-mode path decided about
	// each of its flows.
	Decisions Decisions
	// FirewallLog is fwx's firewall log, where filters write the records
	// of the pinholes they open and refuse ([Session.FirewallRecord]). The
	// zero value discards them.
	FirewallLog zerolog.Logger
}

// Manager holds the sessions of a running fwx, one per SecureNAT client
// address, and the filters that receive their events. It is safe for
// concurrent use.
type Manager struct {
	cfg    Config
	policy atomic.Pointer[policy.Policy] // cfg.Policy, until a reload replaces it

	mu       sync.Mutex
	sessions map[netip.Addr]*Session
	filters  []*filterEntry // in registration order, which is event order
	closed   bool
	refusals map[string]uint64 // connections filters refused, by the protocol's filter

	udp sync.Map // *nat.Flow → *udpConn: the user-mode UDP connections
}

// filterEntry is a filter with its name and hooks.
type filterEntry struct {
	name  string
	f     Filter
	hooks Hooks
}

// NewManager returns a manager with no sessions and no filters.
func NewManager(cfg Config) *Manager {
	if cfg.Clock == nil {
		cfg.Clock = SystemClock
	}
	if cfg.PinholeTimeout <= 0 {
		cfg.PinholeTimeout = time.Minute
	}
	if cfg.MaxPinholes <= 0 {
		cfg.MaxPinholes = 128
	}
	if cfg.SessionIdle <= 0 {
		cfg.SessionIdle = 10 * time.Minute
	}
	m := &Manager{cfg: cfg, sessions: make(map[netip.Addr]*Session)}
	m.policy.Store(cfg.Policy)
	return m
}

// AddFilter initializes f and registers it under name: the policy binds
// protocols to it by that name. Filters receive events in the order they
// were added.
func (m *Manager) AddFilter(name string, f Filter) error {
	hooks, err := f.Init()
	if err != nil {
		return fmt.Errorf("session: filter %q: init: %w", name, err)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, e := range m.filters {
		if e.name == name {
			return fmt.Errorf("session: filter %q: %w", name, ErrAlreadyExists)
		}
	}
	m.filters = append(m.filters, &filterEntry{name: name, f: f, hooks: hooks})
	return nil
}

// Session returns the session of client, creating it (ISA's
// GetClientSession). It returns nil after Close.
func (m *Manager) Session(client netip.Addr) *Session {
	client = client.Unmap()
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return nil
	}
	s := m.sessions[client]
	if s == nil {
		s = newSession(m, client)
		m.sessions[client] = s
	}
	return s
}

// Sessions returns the live sessions.
func (m *Manager) Sessions() []*Session {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make([]*Session, 0, len(m.sessions))
	for _, s := range m.sessions {
		out = append(out, s)
	}
	return out
}

// EndIdle ends the sessions that have held nothing for the idle time at
// now, and returns how many. fwx calls it periodically.
func (m *Manager) EndIdle(now time.Time) int {
	n := 0
	for _, s := range m.Sessions() {
		if s.idleSince(now.Add(-m.cfg.SessionIdle)) {
			s.End()
			n++
		}
	}
	return n
}

// forget drops an ended session from the index.
func (m *Manager) forget(s *Session) {
	m.mu.Lock()
	if m.sessions[s.client] == s {
		delete(m.sessions, s.client)
	}
	m.mu.Unlock()
}

// Close ends every session and shuts the filters down.
func (m *Manager) Close() {
	m.mu.Lock()
	m.closed = true
	sessions := make([]*Session, 0, len(m.sessions))
	for _, s := range m.sessions {
		sessions = append(sessions, s)
	}
	filters := m.filters
	m.mu.Unlock()
	for _, s := range sessions {
		s.End()
	}
	for _, e := range filters {
		e.f.Shutdown()
	}
}

// hooked returns the filters that hooked ev for a connection of a protocol
// bound to filter (empty: none).
func (m *Manager) hooked(ev EventType, filter string, secondary bool) []*filterEntry {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []*filterEntry
	for _, e := range m.filters {
		bound := e.hooks.AnyProtocol || (filter != "" && e.name == filter)
		// Every filter that could have seen a connection hears of its
		// end, hooked or not (ISA: nobody registers for it).
		wants := e.hooks.Events&ev != 0 || (ev == EventConnectionTerminating && e.hooks.Events != 0)
		if bound && wants && (!secondary || e.hooks.Secondaries) {
			out = append(out, e)
		}
	}
	return out
}

// Hooks reports whether a filter wants event ev of a primary connection
// of a protocol bound to filter: a hooked connection takes the user-mode
// path, as in ISA, where hooking a connection's events is what keeps it
// out of kernel mode. fwx asks it when a flow is created; it does not
// allocate.
func (m *Manager) Hooks(ev EventType, filter string) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, e := range m.filters {
		if e.hooks.Events&ev != 0 && (e.hooks.AnyProtocol || (filter != "" && e.name == filter)) {
			return true
		}
	}
	return false
}

// permits checks that the policy lets client use protocol.
func (m *Manager) permits(client netip.Addr, protocol string) (policy.Decision, error) {
	d := m.policy.Load().Permits(client, protocol)
	if !d.Allow {
		return d, fmt.Errorf("session: %v may not use protocol %q (rule %s): %w", client, protocol, d.Rule, ErrProtocolDenied)
	}
	return d, nil
}
