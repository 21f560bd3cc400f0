package sip

import (
	"net/netip"
	"strings"

	"github.com/fwx-dev/fwx/session"
)

// The media of a call (RFC 3264's offer/answer): a description in an
// INVITE or UPDATE is an offer; one in a response answers the other
// side's offer (or, when the request had none, is the offer); one in an
// ACK or PRACK answers the other side's offer.
//
//	client's offer:  pairs bound, unarmed, the description rewritten to them
//	peer's answer:   the pairs armed for the address it names; the client
//	                 may send to its ports, from the pairs
//	peer's offer:    its media address remembered
//	client's answer: pairs bound and armed for that address at once
//
// The peer's media address must be the signalling peer's own unless
// ThirdPartyMedia is set; a medium whose peer is refused gets no pinhole.

// negotiates reports whether m's description takes part in a call's
// offer/answer: it belongs to an INVITE, ACK, PRACK or UPDATE transaction
// (RFC 3261, 3262, 3311). Others (an OPTIONS answer listing
// capabilities) open nothing.
func negotiates(m *Message) bool {
	_, method, _ := m.CSeq()
	switch strings.ToUpper(method) {
	case "INVITE", "ACK", "PRACK", "UPDATE":
		return true
	}
	return false
}

// isAnswerLocked reports whether a description from side from, in m,
// answers an offer of c's.
func isAnswerLocked(m *Message, c *call, from side) bool {
	if c.offerer == nobody || c.offerer == from {
		return false
	}
	if m.IsRequest() {
		return strings.EqualFold(m.Method, "ACK") || strings.EqualFold(m.Method, "PRACK")
	}
	return true
}

// insideSDP checks the client's session description, binds a pair for
// each of its UDP media, and rewrites it to fwx's address and the pairs.
// It returns the status and reason to refuse the message with, or "".
func (l *leg) insideSDP(m *Message) (int, string) {
	sdp, err := ParseSDP(m.Body)
	if err != nil {
		return 400, "malformed session description"
	}
	client := l.inside.Addr()
	if sdp.Origin >= 0 {
		switch a, ok := sdp.OriginAddr(); {
		case !ok:
			return 488, "an SDP origin that is not an address"
		case a != client && !a.IsUnspecified() && !a.IsLoopback():
			return 488, "the SDP origin names " + a.String() + ", not the client"
		}
	}
	var conns []int
	if sdp.Conn >= 0 {
		conns = append(conns, sdp.Conn)
	}
	media := 0
	for i := range sdp.Media {
		md := &sdp.Media[i]
		if md.Conn >= 0 {
			conns = append(conns, md.Conn)
		}
		if md.Port == 0 || !md.IsUDP() {
			continue
		}
		if media++; media > l.cfg.MaxMedia {
			return 488, "more media streams than max_media"
		}
		if md.Port < 1024 || rtcpPort(md) < 1024 {
			return 488, "a media port below 1024"
		}
		if a, ok := sdp.RTCPAddr(md); ok && a != client {
			return 488, "the SDP's a=rtcp names " + a.String() + ", not the client"
		}
		if _, ok := sdp.MediaAddr(md); !ok {
			return 488, "a medium without an address"
		}
	}
	for _, line := range conns {
		a, ok := sdp.ConnAddr(line)
		switch {
		case !ok:
			return 488, "an SDP connection that is not an address"
		case a != client && !a.IsUnspecified():
			return 488, "the SDP names " + a.String() + ", not the client"
		}
	}

	defer func() {
		for _, line := range conns {
			if a, _ := sdp.ConnAddr(line); !a.IsUnspecified() {
				sdp.SetConn(line, l.outside.Addr())
			}
		}
		if a, ok := sdp.OriginAddr(); ok && a == client {
			sdp.SetOrigin(l.outside.Addr())
		}
		m.Body = sdp.Bytes()
	}()
	if !negotiates(m) {
		return 0, ""
	}

	sf := l.sf
	sf.mu.Lock()
	defer sf.mu.Unlock()
	id := m.CallID()
	c := sf.callLocked(id, true, l.cfg)
	if c == nil {
		return 503, "more calls than max_calls"
	}
	answer := isAnswerLocked(m, c, inside)
	for len(c.streams) < len(sdp.Media) {
		c.streams = append(c.streams, nil)
	}
	for i := range sdp.Media {
		md := &sdp.Media[i]
		st := c.streams[i]
		if md.Port == 0 || !md.IsUDP() {
			if st != nil {
				st.end()
				c.streams[i] = nil
			}
			continue
		}
		want := [2]uint16{md.Port, rtcpPort(md)}
		if st == nil || st.client != want {
			if st != nil {
				st.end()
			}
			if st, err = l.bindPair(want); err != nil {
				c.streams[i] = nil
				sf.abandonLocked(id, "no ports")
				return 503, "no media ports: " + err.Error()
			}
			c.streams[i] = st
		}
		if answer && i < len(c.offered) {
			l.armLocked(st, c.offered[i])
		}
		base := st.pair.Proxy
		sdp.SetPorts(md, base.Port(), base.Port()+1, base.Addr())
	}
	if answer {
		c.answered = true
	} else {
		c.offerer, c.offered = inside, nil
	}
	return 0, ""
}

// rtcpPort is a medium's RTCP port: its a=rtcp port (RFC 3605), else the
// next port after RTP's (RFC 3550 §11).
func rtcpPort(md *Media) uint16 {
	if md.RTCPPort != 0 {
		return md.RTCPPort
	}
	if md.Port == 65535 {
		return 0
	}
	return md.Port + 1
}

// bindPair binds an aligned pair of outside ports that leads to the
// client's RTP and RTCP ports, for nobody yet: the answer names the peer.
func (l *leg) bindPair(client [2]uint16) (*mediaStream, error) {
	a := l.inside.Addr()
	res, err := l.conn.Session().BindForClient(session.BindRequest{
		ClientAddrs: []netip.AddrPort{netip.AddrPortFrom(a, client[0]), netip.AddrPortFrom(a, client[1])},
		Transport:   session.UDP,
		Protocol:    l.conn.Protocol(),
		Flags:       session.Bidirectional | session.Unarmed,
		IPFilter:    &session.IPFilter{},
		Primary:     l.conn,
	})
	if err != nil {
		return nil, err
	}
	return &mediaStream{client: client, pair: res}, nil
}

// armLocked opens a stream's pair to its peer, and only to it, and lets
// the client send to the peer's ports. An invalid peer (refused, or on
// hold) opens nothing.
func (l *leg) armLocked(st *mediaStream, p peer) {
	if !p.addr.IsValid() {
		return
	}
	for _, g := range st.grants {
		g.Cancel()
	}
	st.grants = nil
	for _, c := range st.pair.Conns {
		if err := c.SetIPFilter(session.NewIPFilter(p.addr)); err != nil {
			return
		}
		if err := c.Arm(); err != nil {
			return
		}
	}
	st.armed = true
	for _, port := range []uint16{p.rtp, p.rtcp} {
		if port < 1024 {
			continue
		}
		a, err := l.conn.Session().AllowFutureConnect(session.FutureConnect{
			Addr:      netip.AddrPortFrom(p.addr, port),
			Transport: session.UDP,
			Protocol:  l.conn.Protocol(),
			Flags:     session.AllowMultiple,
			Primary:   l.conn,
		})
		if err != nil {
			l.sf.log.Debug().Err(err).Msg("sip: media grant")
			continue
		}
		st.grants = append(st.grants, a)
	}
}

// outsideSDP reads the peer's session description: the media address of
// each of its UDP media, refused when it is not the peer's own (unless
// ThirdPartyMedia) or is fwx's. An answer arms the client's pairs for
// them; an offer is remembered for the client's answer. The description
// passes unchanged.
func (l *leg) outsideSDP(m *Message) {
	if !negotiates(m) {
		return
	}
	sdp, err := ParseSDP(m.Body)
	if err != nil {
		l.sf.log.Info().Err(err).Stringer("peer", l.peer).Msg("sip: a session description fwx cannot read opens nothing")
		return
	}
	peers := make([]peer, len(sdp.Media))
	for i := range sdp.Media {
		md := &sdp.Media[i]
		a, ok := sdp.MediaAddr(md)
		switch {
		case md.Port == 0 || !md.IsUDP() || !ok || a.IsUnspecified():
			continue
		case !l.cfg.ThirdPartyMedia && a != l.peer.Addr(), a == l.outside.Addr():
			l.sf.log.Info().Stringer("peer", l.peer).Stringer("media", a).Msg("sip: media from another host than the peer: nothing opened")
			continue
		}
		peers[i] = peer{addr: a, rtp: md.Port, rtcp: rtcpPort(md)}
	}
	sf := l.sf
	sf.mu.Lock()
	defer sf.mu.Unlock()
	id := m.CallID()
	c := sf.callLocked(id, true, l.cfg)
	if c == nil {
		sf.log.Info().Str("call", id).Msg("sip: more calls than max_calls: nothing opened")
		return
	}
	if !isAnswerLocked(m, c, outside) {
		c.offerer, c.offered = outside, peers
		return
	}
	c.answered = true
	for i, st := range c.streams {
		switch {
		case st == nil:
		case i >= len(sdp.Media) || sdp.Media[i].Port == 0:
			st.end() // the peer rejected the stream
			c.streams[i] = nil
		default:
			l.armLocked(st, peers[i])
		}
	}
}
