package sip

import (
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/fwx-dev/fwx/session"
)

// leg is one signalling path between a client and an outside peer: a UDP
// flow or a TCP connection, with fwx's outside endpoint for it. Its
// methods read one message each, and change the client's state under its
// lock.
type leg struct {
	sf      *sessionFilter
	cfg     *Config
	conn    *session.Connection // the flow's or the connection's
	inside  netip.AddrPort      // the client's endpoint
	outside netip.AddrPort      // fwx's endpoint the path leaves from
	peer    netip.AddrPort      // the outside peer
	tcp     bool
}

// fromInside handles a message the client sent: it returns the message to
// pass on, or nil and fwx's answer to the client in its place (nil for a
// response or an ACK, which get none).
//
// The client may name only itself: the top Via of its requests, every
// Contact and every address of its session descriptions must be its own
// address, which the filter replaces with fwx's outside address and port.
// Media ports are replaced with pairs bound for them.
func (l *leg) fromInside(m *Message) (out, answer []byte) {
	orig := *m
	orig.Fields = slices.Clone(m.Fields)
	if m.IsRequest() {
		if why := l.rewriteVia(m); why != "" {
			return nil, l.refuse(&orig, 403, "Forbidden", why)
		}
	}
	if why := l.rewriteContacts(m); why != "" {
		return nil, l.refuse(&orig, 403, "Forbidden", why)
	}
	if m.IsSDP() {
		if status, why := l.insideSDP(m); why != "" {
			return nil, l.refuse(&orig, status, reasons[status], why)
		}
	}
	l.track(m, inside)
	return m.Append(nil), nil
}

// fromOutside handles a message from the peer: it returns the message to
// pass to the client, nil to pass it as it came. The peer's session
// descriptions arm the client's media for the peer's media address.
func (l *leg) fromOutside(m *Message) []byte {
	changed := false
	if m.IsRequest() {
		changed = l.restoreURI(m)
	} else {
		changed = l.restoreVia(m)
	}
	if m.IsSDP() {
		l.outsideSDP(m)
	}
	l.track(m, outside)
	if !changed {
		return nil
	}
	return m.Append(nil)
}

var reasons = map[int]string{400: "Bad Request", 403: "Forbidden", 488: "Not Acceptable Here", 503: "Service Unavailable"}

// refuse logs why fwx does not pass a message of the client's, and
// returns its answer to a request (none to a response or an ACK).
func (l *leg) refuse(m *Message, status int, reason, why string) []byte {
	ev := l.sf.log.Info().Stringer("endpoint", l.inside).Stringer("peer", l.peer).Str("why", why)
	if m.IsRequest() {
		ev = ev.Str("method", m.Method).Int("status", status)
	} else {
		ev = ev.Int("response", m.Status)
	}
	ev.Msg("sip: message refused")
	if !m.IsRequest() || strings.EqualFold(m.Method, "ACK") {
		return nil
	}
	return answer(m, status, reason, why)
}

// answer builds fwx's response to a request (RFC 3261 §8.2.6), with a
// Warning that says why.
func answer(req *Message, status int, reason, why string) []byte {
	r := &Message{Status: status, Reason: reason}
	for _, f := range req.Fields {
		switch canonical(f.Name) {
		case "via", "from", "call-id", "cseq":
			r.Fields = append(r.Fields, f)
		case "to":
			if _, ok := param(f.Value[max(strings.LastIndexByte(f.Value, '>'), 0):], "tag"); !ok {
				f.Value += ";tag=fwx"
			}
			r.Fields = append(r.Fields, f)
		}
	}
	why = strings.Map(func(r rune) rune {
		if r == '"' || r == '\\' || r < ' ' {
			return ' '
		}
		return r
	}, why)
	r.Fields = append(r.Fields, Field{"Warning", `399 fwx "` + why + `"`})
	return r.Append(nil)
}

// rewriteVia checks that the top Via of a client's request names the
// client, and points it at fwx's outside endpoint, where the answers come
// back. It returns why it refuses the message, or "".
func (l *leg) rewriteVia(m *Message) string {
	vias := m.Values("via")
	v, err := ParseVia(vias[0])
	if err != nil {
		return "malformed Via"
	}
	if a, ok := v.SentBy.Addr(); !ok || a != l.inside.Addr() {
		return "the Via names " + v.SentBy.Host + ", not the client"
	}
	v.SentBy = hostPortOf(l.outside)
	vias[0] = v.String()
	m.SetList("via", vias)
	return ""
}

// restoreVia puts the client's own endpoint back in the top Via of a
// response, where the filter put fwx's, and in its received and rport
// parameters. It reports whether it changed the message.
func (l *leg) restoreVia(m *Message) bool {
	vias := m.Values("via")
	v, err := ParseVia(vias[0])
	if err != nil || !l.isOutside(v.SentBy) {
		return false
	}
	v.SentBy = hostPortOf(l.inside)
	if r, ok := v.Param("received"); ok && r == l.outside.Addr().String() {
		v.SetParam("received", l.inside.Addr().String())
	}
	if p, ok := v.Param("rport"); ok && p == strconv.Itoa(int(l.outside.Port())) {
		v.SetParam("rport", strconv.Itoa(int(l.inside.Port())))
	}
	vias[0] = v.String()
	m.SetList("via", vias)
	return true
}

// isOutside reports whether h names fwx's outside endpoint of the leg.
func (l *leg) isOutside(h HostPort) bool {
	a, ok := h.Addr()
	port := h.Port
	if port == 0 {
		port = 5060
	}
	return ok && a == l.outside.Addr() && port == l.outside.Port()
}

// rewriteContacts checks that every Contact of a client's message names
// the client, and points it at fwx's outside endpoint, where requests for
// the client arrive. It returns why it refuses the message, or "".
func (l *leg) rewriteContacts(m *Message) string {
	values := m.Values("contact")
	if len(values) == 0 {
		return ""
	}
	for i, v := range values {
		c, err := ParseContact(v)
		if err != nil {
			return "malformed Contact"
		}
		if c.Star {
			if !strings.EqualFold(m.Method, "REGISTER") {
				return "Contact * outside a REGISTER"
			}
			continue
		}
		if a, ok := c.URI.Host.Addr(); !ok || a != l.inside.Addr() {
			return "the Contact names " + c.URI.Host.Host + ", not the client"
		}
		c.URI.Host = hostPortOf(l.outside)
		values[i] = c.String()
	}
	m.SetList("contact", values)
	return ""
}

// restoreURI points a request for the client that names fwx's outside
// endpoint (the Contact the client registered or gave in a dialog) at the
// client's own. It reports whether it changed the message.
func (l *leg) restoreURI(m *Message) bool {
	u, err := ParseURI(m.URI)
	if err != nil || !l.isOutside(u.Host) {
		return false
	}
	u.Host = hostPortOf(l.inside)
	m.URI = u.String()
	return true
}

// track follows what a message does to calls and registrations: BYE ends
// a call's media, CANCEL and a failed INVITE what was not answered yet; a
// 2xx to a REGISTER over UDP keeps the client reachable from the
// registrar for as long as it granted.
func (l *leg) track(m *Message, from side) {
	id := m.CallID()
	_, method, _ := m.CSeq()
	sf := l.sf
	sf.mu.Lock()
	if c := sf.callLocked(id, false, l.cfg); c != nil {
		c.signal = sf.s.Now()
	}
	switch {
	case strings.EqualFold(m.Method, "BYE"):
		sf.endCallLocked(id, "BYE")
	case strings.EqualFold(m.Method, "CANCEL"):
		sf.abandonLocked(id, "CANCEL")
	case !m.IsRequest() && strings.EqualFold(method, "INVITE") && m.Status >= 300:
		sf.abandonLocked(id, "INVITE answered "+strconv.Itoa(m.Status))
	}
	sf.mu.Unlock()
	if !m.IsRequest() && strings.EqualFold(method, "REGISTER") && m.Status/100 == 2 && from == outside && !l.tcp {
		sf.register(l.cfg, l.conn, l.outside, l.peer.Addr(), l.registered(m))
	}
}

// registered returns how long a 2xx to a REGISTER keeps the client's
// Contact (fwx's endpoint) registered: its expires parameter, else the
// Expires field, else an hour (RFC 3261 §10.2.1.1); 0 when the registrar
// does not list it.
func (l *leg) registered(m *Message) time.Duration {
	for _, v := range m.Values("contact") {
		c, err := ParseContact(v)
		if err != nil || c.Star || !l.isOutside(c.URI.Host) {
			continue
		}
		secs, ok := c.Param("expires")
		if !ok {
			secs, ok = m.Get("expires")
		}
		if !ok {
			return time.Hour
		}
		n, err := strconv.ParseUint(strings.TrimSpace(secs), 10, 32)
		if err != nil {
			return 0
		}
		return time.Duration(n) * time.Second
	}
	return 0
}
