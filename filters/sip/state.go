package sip

import (
	"net/netip"
	"sync"
	"time"

	"github.com/rs/zerolog"

	"github.com/fwx-dev/fwx/session"
)

// What the filter keeps per client (its sessionFilter), under one lock:
//
//   - calls, by Call-ID: the media streams their session descriptions
//     opened, each an aligned pair of outside ports (BindForClient, N = 2)
//     that leads to the client's RTP and RTCP ports;
//   - registrations, by the outside endpoint the client registered from
//     and the registrar: a permission on that endpoint
//     (RetroactiveAllowBind) that keeps it reachable from the registrar
//     until the registration expires.
//
// A call's streams are bound when the client's description names them,
// armed for the peer its answer or offer names, and killed by BYE, by
// CANCEL or a failure before the answer, when an offer goes unanswered
// for RingTimeout, or when the call has been quiet for MediaIdle.

// side is where a message came from.
type side uint8

const (
	nobody side = iota
	inside
	outside
)

// call is one dialog's media, by Call-ID.
type call struct {
	streams []*mediaStream // by m= line; nil for one without a pair
	// offerer is the side whose description is the offer being answered.
	offerer side
	// offered is what the outside's last offer named, by m= line: the
	// peer the client's answer is for (invalid where refused).
	offered  []peer
	answered bool
	started  time.Time
	signal   time.Time // the last message of the call
}

// peer is where a medium's peer sends from and receives on: the address
// and its RTP and RTCP ports.
type peer struct {
	addr      netip.Addr
	rtp, rtcp uint16
}

// mediaStream is one medium of a call: the pair bound for it and the
// permissions that let the client send to its peer.
type mediaStream struct {
	client [2]uint16 // the client's RTP and RTCP ports
	pair   *session.BindResult
	armed  bool
	grants []*session.FirewallAction
}

func (st *mediaStream) end() {
	for _, c := range st.pair.Conns {
		c.Kill()
	}
	for _, g := range st.grants {
		g.Cancel()
	}
}

// lastActive is the last time a packet crossed the stream's pair.
func (st *mediaStream) lastActive() time.Time {
	var last time.Time
	for _, c := range st.pair.Conns {
		if t := c.LastActive(); t.After(last) {
			last = t
		}
	}
	return last
}

// registration keeps a client's outside endpoint reachable from its
// registrar.
type registration struct {
	grant   *session.Connection
	expires time.Time
}

type regKey struct {
	external  netip.AddrPort
	registrar netip.Addr
}

// sessionFilter is the filter's state for one client.
type sessionFilter struct {
	f   *Filter
	s   *session.Session
	log zerolog.Logger

	mu struct {
		sync.Mutex
		ended    bool
		calls    map[string]*call
		regs     map[regKey]*registration
		sweeping bool // a sweep of the calls is scheduled
	}
}

func newSessionFilter(f *Filter, s *session.Session) *sessionFilter {
	sf := &sessionFilter{f: f, s: s, log: s.Log().With().Str("filter", Name).Logger()}
	sf.mu.calls = make(map[string]*call)
	sf.mu.regs = make(map[regKey]*registration)
	return sf
}

// HandleEvent implements session.SessionFilter: every SIP flow and
// connection a client starts gets the filter.
func (sf *sessionFilter) HandleEvent(ev *session.Event) error {
	switch ev.Type {
	case session.EventUDPDestination:
		return ev.Conn.AttachDatagramFilter(&datagrams{sf: sf, cfg: sf.f.cfg.forConnection(ev.Conn)}, session.PriorityNAT)
	case session.EventConnectTCP:
		return ev.Conn.AttachDataFilter(&tcpStream{sf: sf, cfg: sf.f.cfg.forConnection(ev.Conn)}, session.PriorityNAT)
	}
	return nil
}

// Detach implements session.SessionFilter. The session's end killed
// every port and permission; what is left is to forget them.
func (sf *sessionFilter) Detach() {
	sf.mu.Lock()
	defer sf.mu.Unlock()
	sf.mu.ended = true
	sf.mu.calls, sf.mu.regs = nil, nil
}

// callLocked returns the call with id, making it when create is set and
// the client may have one more under cfg; nil otherwise.
func (sf *sessionFilter) callLocked(id string, create bool, cfg *Config) *call {
	if sf.mu.ended {
		return nil
	}
	if c := sf.mu.calls[id]; c != nil || !create {
		return c
	}
	if len(sf.mu.calls) >= cfg.MaxCalls {
		return nil
	}
	now := sf.s.Now()
	c := &call{started: now, signal: now}
	sf.mu.calls[id] = c
	sf.scheduleSweepLocked()
	return c
}

// endCallLocked ends a call's media and forgets it.
func (sf *sessionFilter) endCallLocked(id, why string) {
	c := sf.mu.calls[id]
	if c == nil {
		return
	}
	delete(sf.mu.calls, id)
	for _, st := range c.streams {
		if st != nil {
			st.end()
		}
	}
	sf.log.Debug().Str("call", id).Str("why", why).Msg("sip: call's media closed")
}

// abandonLocked ends what a failed or cancelled offer opened: the
// streams not armed yet; a call left with none is over.
func (sf *sessionFilter) abandonLocked(id, why string) {
	c := sf.mu.calls[id]
	if c == nil {
		return
	}
	live := false
	for i, st := range c.streams {
		switch {
		case st == nil:
		case st.armed:
			live = true
		default:
			st.end()
			c.streams[i] = nil
		}
	}
	c.offerer = nobody
	if !live {
		sf.endCallLocked(id, why)
	}
}

// scheduleSweepLocked makes sure a sweep of the calls is due.
func (sf *sessionFilter) scheduleSweepLocked() {
	if sf.mu.sweeping {
		return
	}
	sf.mu.sweeping = true
	sf.s.AfterFunc(sweepEvery, sf.sweep)
}

// sweepEvery is how often a client's calls are looked at for expiry.
const sweepEvery = 10 * time.Second

// sweep ends the calls that expired: an offer unanswered for RingTimeout,
// an answered call quiet (no SIP message, no media packet) for MediaIdle.
func (sf *sessionFilter) sweep() {
	now := sf.s.Now()
	sf.mu.Lock()
	defer sf.mu.Unlock()
	sf.mu.sweeping = false
	if sf.mu.ended {
		return
	}
	for id, c := range sf.mu.calls {
		last := c.signal
		for _, st := range c.streams {
			if st != nil {
				if t := st.lastActive(); t.After(last) {
					last = t
				}
			}
		}
		switch {
		case !c.answered && now.Sub(c.started) >= sf.f.cfg.RingTimeout:
			sf.endCallLocked(id, "no answer")
		case c.answered && now.Sub(last) >= sf.f.cfg.MediaIdle:
			sf.endCallLocked(id, "idle")
		}
	}
	if len(sf.mu.calls) > 0 {
		sf.scheduleSweepLocked()
	}
}

// register keeps the client's outside endpoint external reachable from
// registrar for d (a 2xx to a REGISTER sent on primary), or ends that (d
// 0).
func (sf *sessionFilter) register(cfg *Config, primary *session.Connection, external netip.AddrPort, registrar netip.Addr, d time.Duration) {
	k := regKey{external, registrar}
	sf.mu.Lock()
	defer sf.mu.Unlock()
	if sf.mu.ended {
		return
	}
	r := sf.mu.regs[k]
	if d <= 0 {
		if r != nil {
			delete(sf.mu.regs, k)
			r.grant.Kill()
			sf.log.Debug().Stringer("external", external).Msg("sip: registration ended")
		}
		return
	}
	// A little longer than the registrar said, for the refresh to come.
	expires := sf.s.Now().Add(d + d/8 + 5*time.Second)
	if r != nil && r.grant.Live() {
		r.expires = expires
		return
	}
	if len(sf.mu.regs) >= cfg.MaxRegistrations {
		sf.log.Info().Stringer("external", external).Msg("sip: registration not kept reachable: too many for this client")
		return
	}
	grant, err := sf.keepReachable(primary, external, registrar)
	if err != nil {
		sf.log.Info().Err(err).Stringer("external", external).Msg("sip: registration not kept reachable")
		return
	}
	r = &registration{grant: grant, expires: expires}
	sf.mu.regs[k] = r
	sf.log.Debug().Stringer("external", external).Stringer("registrar", registrar).Dur("for", d).Msg("sip: registration kept reachable")
	sf.expireLater(k, r, expires)
}

// keepReachable lets registrar reach the client's mapping on external for
// as long as the grant lives, and puts the filter on what comes in
// through it: the registrar's requests (an INVITE for the client) are
// SIP like any other. Its flows are logged with primary's rule.
func (sf *sessionFilter) keepReachable(primary *session.Connection, external netip.AddrPort, registrar netip.Addr) (*session.Connection, error) {
	factory, err := sf.s.SetDataFilterFactory(session.FactoryRequest{
		Event: session.EventBindUDP,
		Addr:  external,
		DatagramFactory: func(c *session.Connection) (session.DatagramFilter, error) {
			return &datagrams{sf: sf, cfg: sf.f.cfg}, nil
		},
		Priority: session.PriorityNAT,
	})
	if err != nil {
		return nil, err
	}
	defer factory.Cancel()
	return sf.s.RetroactiveAllowBind(session.RetroactiveBind{
		External:  external,
		Transport: session.UDP,
		Flags:     session.Bidirectional, // one source: the registrar's first, for good
		Protocol:  primary.Protocol(),
		IPFilter:  session.NewIPFilter(registrar),
		Primary:   primary,
	})
}

// expireLater ends registration r when it expires, unless refreshed.
func (sf *sessionFilter) expireLater(k regKey, r *registration, at time.Time) {
	sf.s.AfterFunc(at.Sub(sf.s.Now()), func() {
		sf.mu.Lock()
		defer sf.mu.Unlock()
		switch {
		case sf.mu.ended || sf.mu.regs[k] != r:
		case sf.s.Now().Before(r.expires):
			sf.expireLater(k, r, r.expires) // refreshed meanwhile
		default:
			delete(sf.mu.regs, k)
			r.grant.Kill()
			sf.log.Debug().Stringer("external", k.external).Msg("sip: registration expired")
		}
	})
}
