package session

import (
	"fmt"
	"net/netip"
	"slices"

	"github.com/fwx-dev/fwx/nat"
)

// The user-mode path for UDP. A UDP flow has nothing to reassemble, so it
// does not go through a netstack: the forward loop hands each datagram of
// a user-mode flow to [Manager.DeliverDatagram], which queues a copy of it
// for the flow's connection. One goroutine per connection raises the
// connection's event when its first datagram arrives, then passes each
// datagram through the datagram filters, and sends what they pass on with
// the flow's translation ([UserPath.SendDatagram]):
//
//	forward loop ─ DeliverDatagram ─► queue (receive buffer) ─► goroutine:
//	    EventUDPDestination once, then per datagram:
//	    filter … filter (inside → outside in chain order, back in reverse)
//	    ─► UserPath.SendDatagram ─► the device, translated
//
// A connection lives as long as its NAT flow: the flow's end
// ([Manager.EndFlow]) ends it, and killing it ends the flow.

// udpConn is a user-mode UDP flow: its connection object, its datagram
// queue and the chain its goroutine runs.
type udpConn struct {
	m     *Manager
	c     *Connection
	owner *Connection // the grant the flow came through, or nil
	q     *datagramQueue
	chain []attachedFilter // set by open, then read by the goroutine only
}

// DeliverDatagram hands payload, a datagram of the user-mode UDP flow f,
// to the flow's connection: fromInside says it came from the inside, and
// ttl is its TTL once forwarded. It copies payload and never blocks: a
// datagram that does not fit in the connection's receive buffer is
// dropped. The forward loop calls it for each datagram the NAT table
// diverts.
func (m *Manager) DeliverDatagram(f *nat.Flow, fromInside bool, ttl uint8, payload []byte) {
	v, ok := m.udp.Load(f)
	if !ok {
		u := m.newUDPConn(f)
		if u == nil {
			return
		}
		if v, ok = m.udp.LoadOrStore(f, u); !ok {
			v = u
			if !u.start() {
				return
			}
		}
	}
	v.(*udpConn).q.push(payload, fromInside, ttl)
}

// EndFlow ends the user-mode UDP connection of flow f, if it has one:
// fwx calls it when the NAT flow ends.
func (m *Manager) EndFlow(f *nat.Flow) {
	if v, ok := m.udp.Load(f); ok {
		v.(*udpConn).c.Kill()
	}
}

// newUDPConn makes the connection of flow f in its inside host's session,
// or returns nil when there is none (fwx is stopping).
func (m *Manager) newUDPConn(f *nat.Flow) *udpConn {
	s := m.Session(f.Inside().Addr())
	if s == nil {
		return nil
	}
	addr := f.Target() // where the client sent
	if f.Origin() == nat.Inbound {
		addr = f.External() // the bound or published address
	}
	c := newConnection(s, UDP, f.Protocol(), f.Filter(), addr, f.Inside())
	c.peer, c.inbound, c.flow, c.external, c.rule = f.Remote(), f.Origin() == nat.Inbound, f, f.External(), f.Rule()
	u := &udpConn{m: m, c: c, owner: ownerOf(f)}
	c.dg = u
	c.settings = m.policy.Load().Settings(f.Rule(), f.Origin() == nat.Inbound)
	if u.owner != nil {
		c.settings = u.owner.settings
	}
	rcvbuf := rcvbufDefault
	if u.owner != nil && u.owner.rcvbuf > 0 {
		rcvbuf = u.owner.rcvbuf
	}
	u.q = newDatagramQueue(rcvbuf)
	return u
}

// start runs the connection's goroutine in its session, and reports
// whether it runs.
func (u *udpConn) start() bool {
	c := u.c
	ok := c.s.track(c)
	if ok {
		c.onKilled(u.stop)
		ok = c.s.spawn(u.run)
	}
	if !ok {
		u.m.udp.CompareAndDelete(c.flow, u)
		c.Kill()
		return false
	}
	if c.flow.Removed() {
		// The flow ended before the connection was indexed, so EndFlow
		// could not find it.
		c.Kill()
	}
	return true
}

// stop runs when the connection is killed: its goroutine ends, the flow
// ends with it, and a later datagram of the client's starts a new flow.
func (u *udpConn) stop() {
	u.q.close()
	u.m.udp.CompareAndDelete(u.c.flow, u)
	if u.owner != nil {
		u.owner.forgetPeer(u)
	}
	u.m.cfg.Table.EndFlow(u.c.flow, u.m.cfg.Clock.Now())
}

// run raises the connection's event, then passes its datagrams through
// the chain until the connection is killed.
func (u *udpConn) run() {
	c := u.c
	defer c.Kill()
	if err := u.open(); err != nil {
		c.s.mgr.cfg.Log.Debug().Err(err).Stringer("client", c.ClientAddr()).Stringer("peer", c.peer).Msg("UDP destination refused by a filter")
		// Denied (ISA's IFWXUdpDestination::Deny): the flow's datagrams
		// are dropped until it idles out.
		u.m.refuse(c, err)
		u.chain = []attachedFilter{{dg: dropAll}}
	} else {
		u.m.admit(c)
	}
	var batch []queued
	for {
		if batch = u.q.pop(batch); batch == nil {
			return
		}
		for i := range batch {
			u.handle(&batch[i])
			putBuf(batch[i].buf)
			batch[i] = queued{}
		}
	}
}

var dropAll = DatagramFilterFunc(func(*Connection, *Datagram) Verdict { return Drop })

// open raises the connection's event: EventUDPDestination, for a new
// destination of the client or a new peer of a bound or published port.
// A redirected flow raised its event when the redirect was made, and does
// not raise it again. Filters of the grant the flow came through (for
// this peer) come first in the chain, then those attached now.
func (u *udpConn) open() error {
	c, f := u.c, u.c.flow
	secondary := u.owner != nil
	if secondary {
		u.owner.rememberPeer(u)
	}
	err := c.s.applyFactories(c, EventUDPDestination, f.Remote())
	if err == nil && !(secondary && u.owner.redirect) {
		ev := &Event{Type: EventUDPDestination, Conn: c, Addr: c.addr, Local: f.External(), Remote: f.Remote(),
			Protocol: c.protocol, Secondary: secondary}
		if !c.inbound {
			ev.Local = f.Inside()
		}
		if secondary {
			ev.Context = u.owner.context
		}
		err = c.s.dispatch(ev, c.filter)
	}
	if err != nil {
		return err
	}
	var chain []attachedFilter
	if secondary {
		chain = u.owner.datagramFilters(f.Remote())
	}
	chain = append(chain, c.datagramFilters(f.Remote())...)
	slices.SortStableFunc(chain, func(a, b attachedFilter) int { return int(a.prio) - int(b.prio) })
	u.chain = chain
	return nil
}

// handle passes one datagram through the chain and sends it on.
func (u *udpConn) handle(q *queued) {
	f := u.c.flow
	d := Datagram{Payload: q.payload(), FromInside: q.fromInside, Inside: f.Inside(), Peer: f.Remote()}
	n := len(u.chain)
	for i := range n {
		af := u.chain[i]
		if !q.fromInside {
			af = u.chain[n-1-i]
		}
		if af.dg.HandleDatagram(u.c, &d) == Drop {
			return
		}
		if len(d.Payload) > MaxDatagram {
			u.m.cfg.Log.Debug().Int("bytes", len(d.Payload)).Stringer("peer", f.Remote()).Msg("a datagram filter made a datagram too large to send; dropped")
			return
		}
	}
	u.send(!q.fromInside, q.ttl, d.Payload)
}

func (u *udpConn) send(toInside bool, ttl uint8, payload []byte) error {
	if err := u.m.cfg.UserPath.SendDatagram(u.c.flow, toInside, ttl, payload); err != nil {
		u.m.cfg.Log.Debug().Err(err).Stringer("peer", u.c.peer).Msg("user-mode UDP send failed")
		return err
	}
	return nil
}

// injectTTL is the TTL of datagrams filters make.
const injectTTL = 64

// Inject sends payload as a datagram a filter made (ISA's IFWXSocket::Send
// and SendTo on a UDP socket): toward the inside host when toInside, from
// peer, or from the inside host to peer otherwise, with the connection's
// translation, as if it had passed every filter. peer must be the peer of
// a live flow of the connection: its own for a client's or published
// connection, one of those a bound port received from for a bind. Inject
// may be called from HandleDatagram or from any goroutine.
//
// Errors: ErrInvalidArgument (not a UDP connection, too large, or no live
// flow with peer), ErrTerminating (the connection was killed).
func (c *Connection) Inject(toInside bool, peer netip.AddrPort, payload []byte) error {
	switch {
	case c.proto != UDP || len(payload) > MaxDatagram:
		return fmt.Errorf("session: Inject: %w", ErrInvalidArgument)
	case c.Killed():
		return fmt.Errorf("session: Inject: %w", ErrTerminating)
	}
	u := c.peerConn(peer)
	if u == nil {
		return fmt.Errorf("session: Inject to %v: no live flow with that peer: %w", peer, ErrInvalidArgument)
	}
	return u.send(toInside, injectTTL, payload)
}

// peerConn returns the live user-mode flow of c with peer, or nil.
func (c *Connection) peerConn(peer netip.AddrPort) *udpConn {
	if c.dg != nil {
		if c.peer == peer {
			return c.dg
		}
		return nil
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.mu.peers[peer]
}

// rememberPeer and forgetPeer keep a grant's live user-mode flows by peer,
// for Inject.
func (c *Connection) rememberPeer(u *udpConn) {
	c.mu.Lock()
	if c.mu.peers == nil {
		c.mu.peers = make(map[netip.AddrPort]*udpConn)
	}
	c.mu.peers[u.c.peer] = u
	c.mu.Unlock()
}

func (c *Connection) forgetPeer(u *udpConn) {
	c.mu.Lock()
	if c.mu.peers[u.c.peer] == u {
		delete(c.mu.peers, u.c.peer)
	}
	c.mu.Unlock()
}

// datagramFilters returns the datagram filters of c that apply to peer.
func (c *Connection) datagramFilters(peer netip.AddrPort) []attachedFilter {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []attachedFilter
	for _, af := range c.mu.filters {
		if af.dg != nil && af.matches(peer) {
			out = append(out, af)
		}
	}
	return out
}

// matches reports whether a filter attached for af.peer applies to peer:
// an unset peer matches every one, port 0 every port of the address.
func (af attachedFilter) matches(peer netip.AddrPort) bool {
	w := af.peer
	return !w.IsValid() || (w.Addr() == peer.Addr() && (w.Port() == 0 || w.Port() == peer.Port()))
}

// ReceiveBuffer reports how many datagrams of a user-mode UDP connection
// wait for its datagram filters, and how many its receive buffer dropped
// because it was full; zeros for other connections.
func (c *Connection) ReceiveBuffer() (waiting int, dropped uint64) {
	if c.dg == nil {
		return 0, 0
	}
	q := c.dg.q
	q.mu.Lock()
	waiting = len(q.mu.items)
	q.mu.Unlock()
	return waiting, q.drops.Load()
}
