package session

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rs/zerolog"
)

// Session is the state fwx keeps for one SecureNAT client address (ISA's
// IFWXSession): the connection objects and permissions its filters created,
// and the filters attached to it. Everything a session created ends with
// it: pinholes are revoked, ports freed, goroutines ended.
//
// A Session is safe for concurrent use.
type Session struct {
	mgr    *Manager
	client netip.Addr
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup // goroutines working for the session
	dials  atomic.Int32   // user-mode connections waiting for their server

	mu struct {
		sync.Mutex
		ended     bool
		active    time.Time                // when the session last created or served something
		conns     map[*Connection]struct{} // bound ports: the session's pinholes
		live      map[*Connection]struct{} // user-mode connections in progress
		actions   map[*FirewallAction]struct{}
		filters   map[*filterEntry]SessionFilter
		factories []*factory
	}
}

func newSession(m *Manager, client netip.Addr) *Session {
	s := &Session{mgr: m, client: client}
	s.mu.active = m.cfg.Clock.Now()
	s.ctx, s.cancel = context.WithCancel(context.Background())
	s.mu.conns = make(map[*Connection]struct{})
	s.mu.live = make(map[*Connection]struct{})
	s.mu.actions = make(map[*FirewallAction]struct{})
	s.mu.filters = make(map[*filterEntry]SessionFilter)
	return s
}

// ClientAddr returns the client's address (ISA's GetClientAddress).
func (s *Session) ClientAddr() netip.Addr { return s.client }

// Log returns fwx's diagnostic logger, with the session's client; filters
// log through it.
func (s *Session) Log() zerolog.Logger {
	return s.mgr.cfg.Log.With().Stringer("client", s.client).Logger()
}

// FirewallRecord starts a record of the firewall log, with "event" and
// "time" (at, or now on fwx's clock if at is zero) set; the caller adds
// its fields and ends it with Msg. Filters write what they open and refuse
// with it. It returns nil, on which every method is a no-op, when the log
// is off.
func (s *Session) FirewallRecord(event string, at time.Time) *zerolog.Event {
	if at.IsZero() {
		at = s.mgr.cfg.Clock.Now()
	}
	return s.mgr.cfg.FirewallLog.Info().Time("time", at).Str("event", event)
}

// Context returns a context that is done when the session ends.
func (s *Session) Context() context.Context { return s.ctx }

// End ends the session: every connection object is killed, every action
// cancelled, every attached filter detached, and End waits for the
// session's goroutines. It is idempotent.
func (s *Session) End() {
	s.mu.Lock()
	if s.mu.ended {
		s.mu.Unlock()
		return
	}
	s.mu.ended = true
	conns := append(keys(s.mu.conns), keys(s.mu.live)...)
	actions := keys(s.mu.actions)
	filters := s.mu.filters
	s.mu.filters = nil
	s.mu.Unlock()

	for _, a := range actions {
		a.Cancel()
	}
	for _, c := range conns {
		c.Kill()
	}
	s.cancel()
	s.wg.Wait()
	for _, sf := range filters {
		sf.Detach()
	}
	s.mgr.forget(s)
}

func keys[K comparable, V any](m map[K]V) []K {
	out := make([]K, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	return out
}

// admit checks that the session may create n more objects.
func (s *Session) admitLocked(n int) error {
	if s.mu.ended {
		return fmt.Errorf("session %v: %w", s.client, ErrTerminating)
	}
	s.mu.active = s.mgr.cfg.Clock.Now()
	s.pruneLocked()
	if s.pinholesLocked()+n > s.mgr.cfg.MaxPinholes {
		return fmt.Errorf("session %v: more than %d pinholes: %w", s.client, s.mgr.cfg.MaxPinholes, ErrBusy)
	}
	return nil
}

// pruneLocked forgets actions that are spent (used, timed out or
// cancelled) and Timeout binds that are no longer live.
func (s *Session) pruneLocked() {
	now := s.mgr.cfg.Clock.Now()
	for a := range s.mu.actions {
		if a.expect != nil && !s.mgr.cfg.Table.ExpectationLive(a.expect, now) {
			delete(s.mu.actions, a)
		}
	}
	for c := range s.mu.conns {
		if c.timeout && !c.Live() {
			delete(s.mu.conns, c)
		}
	}
}

// pinholesLocked counts what holds a pinhole open: live permissions, and
// bound ports that may still accept a connection. A Timeout bind that was
// used no longer does, though the connection through it goes on.
func (s *Session) pinholesLocked() int {
	n := len(s.mu.actions)
	now := s.mgr.cfg.Clock.Now()
	for c := range s.mu.conns {
		if !c.timeout || c.admits(now) {
			n++
		}
	}
	return n
}

// idleSince reports whether the session holds nothing (no pinholes, no
// connection in progress) and has done nothing since before t.
func (s *Session) idleSince(t time.Time) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.pruneLocked()
	return !s.mu.ended && len(s.mu.conns) == 0 && len(s.mu.live) == 0 && len(s.mu.actions) == 0 &&
		len(s.mu.factories) == 0 && s.mu.active.Before(t)
}

// Pinholes returns how many bound ports and live permissions the session
// holds: what counts against its cap. Connections in progress (through a
// used pinhole, or on the user-mode path) do not count.
func (s *Session) Pinholes() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.pruneLocked()
	return s.pinholesLocked()
}

// attach returns the filter's object for this session, attaching it on
// first use (ISA's AttachToSession).
func (s *Session) attach(e *filterEntry) (SessionFilter, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.mu.ended {
		return nil, ErrTerminating
	}
	if sf := s.mu.filters[e]; sf != nil {
		return sf, nil
	}
	sf, err := e.f.AttachToSession(s)
	if err != nil {
		return nil, fmt.Errorf("session: filter %q: attach: %w", e.name, err)
	}
	s.mu.filters[e] = sf
	return sf, nil
}

// dispatch delivers ev to every filter that hooked it for a connection of
// a protocol bound to filter, in order, stopping at the first that denies
// or fails; it returns ErrDenied (wrapped) in that case.
func (s *Session) dispatch(ev *Event, filter string) error {
	for _, e := range s.mgr.hooked(ev.Type, filter, ev.Secondary) {
		sf, err := s.attach(e)
		if err != nil {
			return err
		}
		if err := s.deliver(sf, ev); err != nil {
			return &refusal{filter: e.name, ev: ev.Type, err: err}
		}
	}
	return nil
}

// deliver calls one handler with ev.Conn in its event context, so the
// methods legal only there work.
func (s *Session) deliver(sf SessionFilter, ev *Event) error {
	c := ev.Conn
	if c != nil {
		c.enterEvent(ev.Type)
		defer c.leaveEvent()
	}
	err := sf.HandleEvent(ev)
	if err == nil && c != nil && c.deniedInEvent() {
		err = ErrDenied
	}
	return err
}

// go runs f for the session, joined by End.
func (s *Session) spawn(f func()) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.mu.ended {
		return false
	}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		f()
	}()
	return true
}

// notifyEstablished sends the established-connection event to the session
// filter a grant named, with its context, off the packet path.
func (s *Session) notifyEstablished(sf SessionFilter, ev *Event) {
	if sf == nil {
		return
	}
	s.spawn(func() {
		if err := sf.HandleEvent(ev); err != nil && !errors.Is(err, ErrTerminating) {
			s.mgr.cfg.Log.Debug().Err(err).Stringer("client", s.client).Msg("established-connection handler failed")
		}
	})
}

func (s *Session) addConn(c *Connection) {
	s.mu.Lock()
	s.mu.conns[c] = struct{}{}
	s.mu.Unlock()
}

func (s *Session) removeConn(c *Connection) {
	s.mu.Lock()
	delete(s.mu.conns, c)
	delete(s.mu.live, c)
	s.mu.active = s.mgr.cfg.Clock.Now() // idle from now on, at most
	s.mu.Unlock()
}
