package rtsp

import (
	"net/netip"
	"slices"
	"strings"

	"github.com/fwx-dev/fwx/session"
)

// A media stream's life, as the filter sees it:
//
//	SETUP (client_port) ──► pending ──2xx answer, same transport──► stream
//	                           │                                      │
//	                           └─ error, other transport ─► gone      └─ TEARDOWN, end of control ─► gone
//
// For a player behind fwx, the SETUP binds an aligned pair of outside
// ports (BindForClient, N = 2) for the server's address, unarmed: nothing
// can use it until the server's answer arms it. For a published server, the answer binds the
// pair that leads to the server's own ports, for the player's address
// only. Either way the answer's other ports (the server's for a player
// behind fwx, the player's for a published server) are granted to the
// inside host (AllowFutureConnect), so its RTCP and NAT-opening packets
// leave from the bound pair.

// setup is a SETUP awaiting its answer.
type setup struct {
	uri, session string
	// client are the player's ports: the inside ones for a player behind
	// fwx, the outside ones for a published server's.
	client Ports
	// bound is the pair bound for a player behind fwx, not armed yet.
	bound *session.BindResult
}

// mediaStream is a media stream set up: what the filter opened for it.
type mediaStream struct {
	uri, session string
	conns        []*session.Connection
	actions      []*session.FirewallAction
}

func (st *mediaStream) revoke() {
	for _, c := range st.conns {
		c.Kill()
	}
	for _, a := range st.actions {
		a.Cancel()
	}
}

func (su *setup) cancel() {
	if su.bound != nil {
		for _, c := range su.bound.Conns {
			c.Kill()
		}
	}
}

// request decides what to do with a client's request: the head to pass on
// (possibly rewritten), or fwx's own answer in its place.
func (x *control) request(h *Head, raw []byte) (out, answer []byte) {
	switch {
	case strings.EqualFold(h.Method, "SETUP"):
		return x.setupRequest(h, raw)
	case strings.EqualFold(h.Method, "TEARDOWN"):
		x.teardown(h)
	}
	return raw, nil
}

// setupRequest handles a SETUP. Of the transports the client offers, the
// first unicast RTP over UDP with usable client ports is kept and, for a
// player behind fwx, rewritten to a bound pair; the other unicast UDP
// ones are removed (a client port below 1024, a destination that is not
// the player itself, a second UDP offer); the rest (interleaved,
// multicast, other transports) pass as they are. A SETUP left with no
// transport, or with one the filter cannot read, fwx answers itself.
func (x *control) setupRequest(h *Head, raw []byte) (out, answer []byte) {
	values := h.Values("Transport")
	if len(values) == 0 {
		return raw, nil // the server will refuse it; nothing to open
	}
	cseq, ok := h.CSeq()
	if !ok || len(values) > 1 {
		return nil, x.refuse(h, 400, "Bad Request", "SETUP without one CSeq and one Transport")
	}
	specs, err := ParseTransport(values[0])
	if err != nil {
		return nil, x.refuse(h, 461, "Unsupported Transport", err.Error())
	}
	kept := specs[:0:0]
	var su *setup
	for _, s := range specs {
		if !s.IsRTPOverUDP() || s.IsMulticast() {
			kept = append(kept, s)
			continue
		}
		ports, why := x.clientPorts(&s)
		if why == "" && su != nil {
			why = "a second UDP transport"
		}
		if why != "" {
			x.log.Info().Str("transport", FormatTransport([]Spec{s})).Str("why", why).Msg("rtsp: transport removed from SETUP")
			continue
		}
		if !x.roomForStream() {
			x.log.Info().Str("why", "too many media streams on this connection").Msg("rtsp: transport removed from SETUP")
			continue
		}
		su = &setup{uri: h.URI, client: ports}
		su.session, _ = h.Session()
		if !x.conn.Inbound() {
			if why := x.bindPair(su); why != "" {
				x.log.Info().Str("why", why).Msg("rtsp: transport removed from SETUP")
				su = nil
				continue
			}
			s.Del("destination") // the server sends to fwx, where the request came from
			s.Set("client_port", Ports{su.bound.Proxy.Port(), su.bound.Proxy.Port() + 1, ports.Pair}.String())
		}
		kept = append(kept, s)
	}
	if len(kept) == 0 {
		return nil, x.refuse(h, 461, "Unsupported Transport", "no transport fwx can carry")
	}
	if su != nil {
		x.mu.Lock()
		if old := x.mu.pending[cseq]; old != nil {
			old.cancel() // a client reusing a CSeq: the older SETUP is void
		}
		x.mu.pending[cseq] = su
		x.mu.Unlock()
	}
	if len(kept) == len(specs) && su == nil {
		return raw, nil
	}
	h.Set("Transport", FormatTransport(kept))
	return h.Append(nil), nil
}

// clientPorts returns the player's ports of a unicast UDP spec, or why
// the spec is refused.
func (x *control) clientPorts(s *Spec) (Ports, string) {
	v, n := s.Get("client_port")
	if n != 1 {
		return Ports{}, "not one client_port"
	}
	ports, err := ParsePorts(v)
	switch {
	case err != nil:
		return Ports{}, "bad client_port"
	case ports.RTP < 1024 || ports.Second() < 1024:
		return Ports{}, "client_port below 1024"
	}
	if d, n := s.Get("destination"); n > 1 || (n == 1 && d != "" && !x.isClient(d)) {
		return Ports{}, "destination is not the client"
	}
	return ports, ""
}

// isClient reports whether an address parameter names the player itself.
func (x *control) isClient(v string) bool {
	a, err := netip.ParseAddr(strings.Trim(v, `"`))
	return err == nil && a.Unmap() == x.clientAddr
}

// bindPair reserves, for a player behind fwx, the aligned pair of outside
// ports the server will send to; it is armed only by the server's answer.
func (x *control) bindPair(su *setup) string {
	res, err := x.conn.Session().BindForClient(session.BindRequest{
		ClientAddrs: []netip.AddrPort{
			netip.AddrPortFrom(x.clientAddr, su.client.RTP),
			netip.AddrPortFrom(x.clientAddr, su.client.Second()),
		},
		Transport: session.UDP,
		Protocol:  x.conn.Protocol(),
		Flags:     session.Bidirectional | session.Unarmed,
		IPFilter:  session.NewIPFilter(x.serverAddr),
		Primary:   x.conn,
	})
	if err != nil {
		return err.Error()
	}
	su.bound = res
	return ""
}

// roomForStream reports whether the connection may hold one more stream.
func (x *control) roomForStream() bool {
	x.mu.Lock()
	defer x.mu.Unlock()
	return len(x.mu.pending)+len(x.mu.streams) < x.cfg.MaxStreams
}

// refuse logs why fwx answers a request itself, and returns the answer.
func (x *control) refuse(h *Head, status int, reason, why string) []byte {
	x.log.Info().Str("method", h.Method).Str("uri", h.URI).Int("status", status).Str("why", why).
		Msg("rtsp: request answered by fwx")
	return answer(h, status, reason)
}

// response handles a server's response: the answer to a pending SETUP
// sets its stream up. It returns the head to pass on, and whether the
// body is to be dropped (fwx replaced the response).
func (x *control) response(h *Head, raw []byte) (out []byte, drop bool) {
	cseq, ok := h.CSeq()
	if !ok {
		return raw, false
	}
	x.mu.Lock()
	su := x.mu.pending[cseq]
	delete(x.mu.pending, cseq)
	x.mu.Unlock()
	if su == nil {
		return raw, false // not the answer to a SETUP: opens nothing
	}
	spec, ok := x.chosen(h, su)
	if !ok {
		su.cancel()
		return raw, false
	}
	if sid, ok := h.Session(); ok {
		su.session = sid
	}
	st := &mediaStream{uri: su.uri, session: su.session}
	sv, _ := spec.Get("server_port")
	server, _ := ParsePorts(sv)
	var failed string
	if x.conn.Inbound() {
		failed = x.openPublished(st, su, &spec, server)
	} else {
		failed = x.openPlayer(st, su, &spec, server)
	}
	if failed != "" {
		st.revoke()
		x.log.Info().Str("uri", su.uri).Str("why", failed).Msg("rtsp: media stream not opened")
		return answer(h, 503, "Service Unavailable"), true
	}
	x.mu.Lock()
	x.mu.streams = append(x.mu.streams, st)
	x.mu.Unlock()
	x.log.Debug().Str("uri", st.uri).Str("session", st.session).Int("ports", len(st.conns)).Msg("rtsp: media stream opened")
	h.Set("Transport", FormatTransport([]Spec{spec}))
	return h.Append(nil), false
}

// chosen returns the transport a successful answer to su chose, if it is
// the unicast UDP one su offered: the ports it names for the player must
// be those the server was told (or none).
func (x *control) chosen(h *Head, su *setup) (Spec, bool) {
	if h.Status/100 != 2 {
		return Spec{}, false
	}
	v, ok := h.Get("Transport")
	if !ok {
		return Spec{}, false
	}
	specs, err := ParseTransport(v)
	if err != nil || len(specs) != 1 || !specs[0].IsRTPOverUDP() || specs[0].IsMulticast() {
		return Spec{}, false
	}
	s := specs[0]
	told := su.client
	if su.bound != nil {
		told = Ports{su.bound.Proxy.Port(), su.bound.Proxy.Port() + 1, su.client.Pair}
	}
	if v, n := s.Get("client_port"); n > 1 || (n == 1 && !samePorts(v, told)) {
		return Spec{}, false
	}
	return s, true
}

// samePorts reports whether a port parameter names the ports p.
func samePorts(v string, p Ports) bool {
	q, err := ParsePorts(v)
	return err == nil && q.RTP == p.RTP && q.Second() == p.Second()
}

// openPlayer arms the pair bound for a player behind fwx, for the server
// only, and lets the player send to the server's ports, from the pair;
// the answer's client_port goes back to the player's own.
func (x *control) openPlayer(st *mediaStream, su *setup, spec *Spec, server Ports) string {
	st.conns = su.bound.Conns
	for _, c := range st.conns {
		if err := c.Arm(); err != nil {
			return err.Error()
		}
	}
	if spec.Has("client_port") {
		spec.Set("client_port", su.client.String())
	}
	return x.grant(st, x.serverAddr, server)
}

// openPublished binds, for a published server, the pair of outside ports
// that leads to the server's own, for the player only, and lets the
// server send to the player's ports, from the pair; the answer names
// fwx's address and the pair.
func (x *control) openPublished(st *mediaStream, su *setup, spec *Spec, server Ports) string {
	if server.RTP != 0 {
		if server.RTP < 1024 || server.Second() < 1024 {
			return "server_port below 1024"
		}
		res, err := x.conn.Session().BindForClient(session.BindRequest{
			ClientAddrs: []netip.AddrPort{
				netip.AddrPortFrom(x.serverAddr, server.RTP),
				netip.AddrPortFrom(x.serverAddr, server.Second()),
			},
			Transport: session.UDP,
			Protocol:  x.conn.Protocol(),
			Flags:     session.Bidirectional,
			IPFilter:  session.NewIPFilter(x.clientAddr),
			Primary:   x.conn,
		})
		if err != nil {
			return err.Error()
		}
		st.conns = res.Conns
		spec.Set("server_port", Ports{res.Proxy.Port(), res.Proxy.Port() + 1, server.Pair}.String())
	}
	if v, n := spec.Get("source"); n > 0 && strings.Trim(v, `"`) == x.serverAddr.String() {
		spec.Set("source", x.outside.String())
	}
	return x.grant(st, x.clientAddr, su.client)
}

// grant lets the inside host send to the peer's media ports (RTP and
// RTCP): with the bound pair as the inside ports' mapping, what it sends
// leaves from the pair. Ports below 1024 are not granted.
func (x *control) grant(st *mediaStream, peer netip.Addr, ports Ports) string {
	for _, p := range []uint16{ports.RTP, ports.Second()} {
		if p < 1024 {
			continue
		}
		a, err := x.conn.Session().AllowFutureConnect(session.FutureConnect{
			Addr:      netip.AddrPortFrom(peer, p),
			Transport: session.UDP,
			Protocol:  x.conn.Protocol(),
			Flags:     session.AllowMultiple,
			Primary:   x.conn,
		})
		if err != nil {
			return err.Error()
		}
		st.actions = append(st.actions, a)
	}
	return ""
}

// teardown revokes what a TEARDOWN ends (RFC 2326 §10.7): the streams of
// its session set up with its URI, or, for the aggregate URI, all of the
// session's. It acts on the request: the client is done with them
// whatever the server answers.
func (x *control) teardown(h *Head) {
	sid, ok := h.Session()
	if !ok {
		return
	}
	x.mu.Lock()
	ofSession := func(st *mediaStream) bool { return st.session == sid }
	if slices.ContainsFunc(x.mu.streams, func(st *mediaStream) bool { return ofSession(st) && st.uri == h.URI }) {
		ofSession = func(st *mediaStream) bool { return st.session == sid && st.uri == h.URI }
	}
	var ended []*mediaStream
	x.mu.streams = slices.DeleteFunc(x.mu.streams, func(st *mediaStream) bool {
		if ofSession(st) {
			ended = append(ended, st)
			return true
		}
		return false
	})
	x.mu.Unlock()
	for _, st := range ended {
		st.revoke()
	}
	if len(ended) > 0 {
		x.log.Debug().Str("session", sid).Int("streams", len(ended)).Msg("rtsp: media streams torn down")
	}
}

// revokeAll ends everything when the control connection ends.
func (x *control) revokeAll() {
	x.mu.Lock()
	pending, streams := x.mu.pending, x.mu.streams
	x.mu.pending, x.mu.streams = nil, nil
	x.mu.Unlock()
	for _, su := range pending {
		su.cancel()
	}
	for _, st := range streams {
		st.revoke()
	}
}
