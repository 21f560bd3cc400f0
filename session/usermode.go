package session

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"time"

	"github.com/fwx-dev/fwx/nat"
	"github.com/fwx-dev/fwx/session/stream"
)

// The user-mode path: connections that need a data filter (or were granted
// with NoKernelMode) are terminated in fwx's netstacks, and their bytes are
// spliced through the connection's data filters. The session layer decides
// and runs the chain; the netstacks are behind [UserPath].
//
//	client ─ inside netstack ─ Socket ─┤ filter … filter ├─ Socket ─ outside netstack ─ server

// Conn is a connection of the user-mode path: a Socket with its endpoints.
type Conn interface {
	Socket
	LocalAddrPort() netip.AddrPort
	RemoteAddrPort() netip.AddrPort
}

// Listener accepts user-mode connections on a bound port.
type Listener interface {
	Accept() (Conn, error)
	Close() error
}

// UserPath gives sessions the sockets of the user-mode path; fwx implements
// it with its two netstacks.
type UserPath interface {
	// ListenOutside accepts connections to fwx's external endpoint local.
	ListenOutside(local netip.AddrPort, backlog int) (Listener, error)
	// DialInside connects to an inside client from local, any address:
	// the client sees the real peer.
	DialInside(ctx context.Context, local, remote netip.AddrPort) (Conn, error)
	// DialOutside connects to remote from fwx's external endpoint local.
	DialOutside(ctx context.Context, local, remote netip.AddrPort) (Conn, error)
	// SendDatagram sends payload as a datagram of the user-mode UDP flow
	// f with the flow's translation: to the inside host from the address
	// it talks to when toInside, else from the flow's external endpoint to
	// its remote. It does not keep payload.
	SendDatagram(f *nat.Flow, toInside bool, ttl uint8, payload []byte) error
}

// dialTimeout bounds how long the user-mode path waits for a server.
const dialTimeout = 30 * time.Second

// Intercepted is a connection a client started that the inside netstack
// intercepted for the user-mode path.
type Intercepted struct {
	// Client and Dst are the endpoints as the client sees them.
	Client, Dst netip.AddrPort
	// Flow is the NAT flow of the connection: where it really goes
	// (Remote), fwx's endpoint for it (External), its protocol and filter,
	// and the pinhole it came through.
	Flow *nat.Flow
	// Accept completes the client's handshake; Reset refuses it with a
	// RST. Exactly one is called.
	Accept func() (Conn, error)
	Reset  func()
}

// ServeOutbound runs an intercepted connection to its end: the connect
// event (filters may deny it, attach data filters, emulate the server), the
// connection to the server from fwx's external endpoint, and the chain.
// A failure to reach the server reaches the client as a RST, so the client
// sees what it would have seen without fwx. It blocks until the connection
// ends; the caller runs it on its own goroutine.
func (m *Manager) ServeOutbound(r Intercepted) {
	s := m.Session(r.Client.Addr())
	if s == nil || m.cfg.UserPath == nil {
		r.Reset()
		return
	}
	f := r.Flow
	owner := ownerOf(f)
	c := newConnection(s, TCP, f.Protocol(), f.Filter(), r.Dst, r.Client)
	c.peer, c.external, c.flow, c.rule = f.Remote(), f.External(), f, f.Rule()
	c.settings = m.policy.Load().Settings(f.Rule(), false)
	if owner != nil {
		c.settings = owner.settings
	}
	if !s.track(c) {
		r.Reset()
		return
	}
	defer s.untrack(c)
	// A redirected connection raised its connect event, and got its data
	// filters, when the redirect was made.
	var err error
	if owner == nil || !owner.redirect {
		err = s.applyFactories(c, EventConnectTCP, f.Remote())
		if err == nil {
			ev := &Event{Type: EventConnectTCP, Conn: c, Addr: r.Dst, Protocol: f.Protocol(), Secondary: owner != nil}
			if owner != nil {
				ev.Context = owner.context
			}
			err = s.dispatch(ev, f.Filter())
		}
	}
	if err != nil {
		m.refuse(c, err)
		m.cfg.Log.Debug().Err(err).Stringer("client", r.Client).Stringer("dst", r.Dst).Msg("connect refused by a filter")
		r.Reset()
		return
	}
	var filters []DataFilter
	if owner != nil {
		filters = owner.DataFilters() // attached when the grant was made
	}
	filters = append(filters, c.DataFilters()...)
	emulated := c.Emulated() != nil
	// A client's connections waiting for their server are bounded (the
	// policy's limits.client-dials), so one client dialing an address
	// that never answers cannot hold the netstack's pending connections:
	// beyond its share, its new ones are reset at once.
	if !emulated && !s.startDial(m.policy.Load().Options().Limits.ClientDials) {
		if m.cfg.Decisions != nil {
			m.cfg.Decisions.FlowRefused(f, "") // the table records why
		}
		m.cfg.Table.RefuseFlow(f, nat.DropClientDials, m.cfg.Clock.Now())
		r.Reset()
		return
	}
	m.admit(c)
	var server Conn
	if !emulated {
		ctx, cancel := context.WithTimeout(c.ctx, dialTimeout)
		server, err = m.cfg.UserPath.DialOutside(ctx, f.External(), f.Remote())
		cancel()
		s.dials.Add(-1)
		if err != nil {
			m.cfg.Log.Debug().Err(err).Stringer("remote", f.Remote()).Msg("user-mode connect failed")
			r.Reset()
			return
		}
	}
	client, err := r.Accept()
	if err != nil {
		if server != nil {
			server.Abort()
		}
		return
	}
	s.runChain(c, client, server, filters)
}

// startDial counts a dial of the session's client toward the server of a
// user-mode connection, and reports false, counting nothing, when the
// client already has limit of them in progress (negative: no limit).
func (s *Session) startDial(limit int) bool {
	if n := s.dials.Add(1); limit >= 0 && int(n) > limit {
		s.dials.Add(-1)
		return false
	}
	return true
}

// ownerOf returns the connection object of the grant a flow came through,
// or nil.
func ownerOf(f *nat.Flow) *Connection {
	if e := f.Expectation(); e != nil {
		c, _ := e.Owner.(*Connection)
		return c
	}
	return nil
}

// listenUserMode makes a bound connection accept on the user-mode path:
// each connection accepted on the bound port raises the accepted event,
// and is spliced through the data filters to the client.
func (m *Manager) listenUserMode(c *Connection, backlog int) error {
	if m.cfg.UserPath == nil {
		return fmt.Errorf("user-mode bind of %v: no user-mode path: %w", c.addr, ErrNotSupported)
	}
	ln, err := m.cfg.UserPath.ListenOutside(c.addr, backlog)
	if err != nil {
		return fmt.Errorf("user-mode bind of %v: %w: %w", c.addr, ErrAddressInUse, err)
	}
	c.onKilled(func() { ln.Close() })
	s := c.s
	if !s.spawn(func() {
		for {
			peer, err := ln.Accept()
			if err != nil {
				return
			}
			if !s.spawn(func() { s.serveAccepted(c, peer) }) {
				peer.Abort()
				return
			}
		}
	}) {
		ln.Close()
		return fmt.Errorf("user-mode bind of %v: %w", c.addr, ErrTerminating)
	}
	return nil
}

// serveAccepted runs one connection accepted on a user-mode bind.
func (s *Session) serveAccepted(bound *Connection, peer Conn) {
	c := newConnection(s, TCP, bound.protocol, bound.filter, bound.addr, bound.ClientAddr())
	c.inbound, c.peer, c.external, c.settings, c.rule = true, peer.RemoteAddrPort(), bound.addr, bound.settings, bound.rule
	c.flow = s.mgr.cfg.Table.LookupInbound(nat.TCP, c.peer, bound.addr, s.mgr.cfg.Clock.Now())
	if !s.track(c) {
		peer.Abort()
		return
	}
	defer s.untrack(c)
	ev := &Event{Type: EventAcceptedConnection, Conn: c, Addr: bound.addr, Local: peer.LocalAddrPort(),
		Remote: peer.RemoteAddrPort(), Protocol: bound.protocol, Secondary: true, Context: bound.context}
	err := s.applyFactories(c, EventAcceptedConnection, bound.addr)
	if err == nil {
		err = s.dispatch(ev, bound.filter)
	}
	if err != nil {
		s.mgr.refuse(c, err)
		peer.Abort()
		return
	}
	s.mgr.admit(c)
	if em := bound.Emulated(); em != nil {
		// The filter plays the client of the bind.
		bound.connected(peer)
		defer peer.Close()
		if err := em.Serve(c.ctx, c, nil, peer); err != nil && !errors.Is(err, context.Canceled) {
			s.mgr.cfg.Log.Debug().Err(err).Stringer("bound", bound.addr).Msg("emulated bind ended with an error")
		}
		return
	}
	client := bound.ClientAddr()
	ctx, cancel := context.WithTimeout(c.ctx, dialTimeout)
	conn, err := s.mgr.cfg.UserPath.DialInside(ctx, peer.RemoteAddrPort(), client)
	cancel()
	if err != nil {
		s.mgr.cfg.Log.Debug().Err(err).Stringer("client", client).Msg("user-mode connect to the client failed")
		peer.Abort()
		return
	}
	bound.connected(peer)
	s.runChain(c, conn, peer, append(bound.DataFilters(), c.DataFilters()...))
}

// connected raises the established-connection event of a user-mode bind
// for a connection accepted from peer, now that both ends are up.
func (c *Connection) connected(peer Conn) {
	if c.made != nil {
		c.made(peer.RemoteAddrPort(), peer.LocalAddrPort(), peer.RemoteAddrPort())
	}
}

// runChain splices client and server (nil when emulated) through filters
// until the connection ends, then raises the terminating event.
func (s *Session) runChain(c *Connection, client, server Conn, filters []DataFilter) {
	stages := make([]stream.Stage, len(filters))
	for i, df := range filters {
		stages[i] = func(ctx context.Context, internal, external stream.Socket) error {
			return df.Serve(ctx, c, internal, external)
		}
	}
	var external stream.Socket // stays a nil interface when emulated
	if server != nil {
		external = server
	}
	if err := stream.Chain(c.ctx, client, external, stages, 0); err != nil && !errors.Is(err, context.Canceled) {
		s.mgr.cfg.Log.Debug().Err(err).Stringer("client", c.ClientAddr()).Msg("user-mode connection ended with an error")
	}
}

// track registers a live user-mode connection with the session, so the
// session's end kills it; it reports false when the session has ended.
func (s *Session) track(c *Connection) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.mu.ended {
		return false
	}
	s.mu.live[c] = struct{}{}
	s.mu.active = s.mgr.cfg.Clock.Now()
	return true
}

// untrack ends a user-mode connection: terminating event, forgotten.
func (s *Session) untrack(c *Connection) {
	c.Kill()
}

// Incoming is a connection from the outside to a published server whose
// protocol has a filter, as the outside netstack accepted it.
type Incoming struct {
	// Peer is the connection from the outside client.
	Peer Conn
	// Server is the published inside server; the session is its.
	Server netip.AddrPort
	// Rule, Protocol and Filter name the publish rule, its protocol and
	// its filter.
	Rule, Protocol, Filter string
}

// ServeInbound runs a connection to a published server to its end: the
// accepted-connection event in the server's session (filters may deny it
// or attach data filters), the connection to the server from the outside
// client's address, and the chain. The data filters' internal side is the
// published server. It blocks until the connection ends.
func (m *Manager) ServeInbound(r Incoming) {
	s := m.Session(r.Server.Addr())
	if s == nil || m.cfg.UserPath == nil {
		r.Peer.Abort()
		return
	}
	c := newConnection(s, TCP, r.Protocol, r.Filter, r.Peer.LocalAddrPort(), r.Server)
	c.inbound, c.peer, c.external, c.rule = true, r.Peer.RemoteAddrPort(), r.Peer.LocalAddrPort(), r.Rule
	c.settings = m.policy.Load().Settings(r.Rule, true)
	c.flow = m.cfg.Table.LookupInbound(nat.TCP, c.peer, r.Peer.LocalAddrPort(), m.cfg.Clock.Now())
	if !s.track(c) {
		r.Peer.Abort()
		return
	}
	defer s.untrack(c)
	err := s.applyFactories(c, EventAcceptedConnection, r.Peer.LocalAddrPort())
	if err == nil {
		err = s.dispatch(&Event{Type: EventAcceptedConnection, Conn: c, Addr: r.Peer.LocalAddrPort(),
			Local: r.Peer.LocalAddrPort(), Remote: r.Peer.RemoteAddrPort(), Protocol: r.Protocol}, r.Filter)
	}
	if err != nil {
		m.refuse(c, err)
		r.Peer.Abort()
		return
	}
	m.admit(c)
	ctx, cancel := context.WithTimeout(c.ctx, dialTimeout)
	server, err := m.cfg.UserPath.DialInside(ctx, r.Peer.RemoteAddrPort(), r.Server)
	cancel()
	if err != nil {
		m.cfg.Log.Debug().Err(err).Stringer("server", r.Server).Msg("user-mode connect to a published server failed")
		r.Peer.Abort()
		return
	}
	s.runChain(c, server, r.Peer, c.DataFilters())
}
