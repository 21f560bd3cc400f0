package sip

import (
	"fmt"
	"net/netip"
	"strconv"
	"strings"
)

// The addresses a SIP message names, which the filter checks and rewrites:
// the sent-by of a Via (RFC 3261 §20.42) and the host of a SIP URI
// (§19.1: a Contact's, the Request-URI).

// HostPort is a host and an optional port as SIP writes them: an IPv4
// address, an IPv6 reference in brackets, or a name; Port 0 means none
// was given.
type HostPort struct {
	Host string
	Port uint16
}

// Addr returns the host as an address, and whether it is one: names are
// not.
func (h HostPort) Addr() (netip.Addr, bool) {
	a, err := netip.ParseAddr(strings.TrimSuffix(strings.TrimPrefix(h.Host, "["), "]"))
	return a.Unmap(), err == nil
}

// String formats the host and port.
func (h HostPort) String() string {
	if h.Port == 0 {
		return h.Host
	}
	return h.Host + ":" + strconv.Itoa(int(h.Port))
}

// hostPortOf formats an address and port as a SIP host and port.
func hostPortOf(ap netip.AddrPort) HostPort {
	host := ap.Addr().String()
	if ap.Addr().Is6() {
		host = "[" + host + "]"
	}
	return HostPort{host, ap.Port()}
}

// parseHostPort parses "host[:port]".
func parseHostPort(s string) (HostPort, error) {
	host, port := s, ""
	if strings.HasPrefix(s, "[") {
		end := strings.IndexByte(s, ']')
		if end < 0 {
			return HostPort{}, fmt.Errorf("%w: host %q", ErrMalformed, s)
		}
		host, port = s[:end+1], strings.TrimPrefix(s[end+1:], ":")
		if len(s) > end+1 && s[end+1] != ':' {
			return HostPort{}, fmt.Errorf("%w: host %q", ErrMalformed, s)
		}
	} else if i := strings.IndexByte(s, ':'); i >= 0 {
		host, port = s[:i], s[i+1:]
	}
	if host == "" || strings.ContainsAny(host, " \t,;<>\"@") {
		return HostPort{}, fmt.Errorf("%w: host %q", ErrMalformed, s)
	}
	hp := HostPort{Host: host}
	if port != "" || strings.HasSuffix(s, ":") {
		n, err := strconv.Atoi(port)
		if err != nil || n < 1 || n > 65535 || len(port) > 5 {
			return HostPort{}, fmt.Errorf("%w: port %q", ErrMalformed, port)
		}
		hp.Port = uint16(n)
	}
	return hp, nil
}

// Via is one value of a Via field: "SIP/2.0/UDP host:port;params".
type Via struct {
	Transport string // UDP, TCP, ...
	SentBy    HostPort
	Params    string // ";branch=...", as written
}

// ParseVia parses one Via value.
func ParseVia(v string) (Via, error) {
	// The protocol may have blanks around its slashes (SIP / 2.0 / UDP).
	i := 0
	for slashes := 0; i < len(v); i++ {
		if v[i] == '/' {
			slashes++
		}
		if slashes == 2 && v[i] == '/' {
			i++
			for i < len(v) && (v[i] == ' ' || v[i] == '\t') {
				i++
			}
			for i < len(v) && v[i] != ' ' && v[i] != '\t' {
				i++
			}
			break
		}
	}
	proto := strings.ReplaceAll(strings.ReplaceAll(v[:i], " ", ""), "\t", "")
	parts := strings.Split(proto, "/")
	if len(parts) != 3 || !strings.EqualFold(parts[0]+"/"+parts[1], Version) || !isToken(parts[2]) {
		return Via{}, fmt.Errorf("%w: Via %q", ErrMalformed, clip(v))
	}
	rest := strings.TrimSpace(v[i:])
	sentBy, params, _ := strings.Cut(rest, ";")
	hp, err := parseHostPort(strings.TrimSpace(sentBy))
	if err != nil {
		return Via{}, err
	}
	if params != "" {
		params = ";" + params
	}
	return Via{Transport: strings.ToUpper(parts[2]), SentBy: hp, Params: params}, nil
}

// String formats the Via value.
func (v Via) String() string { return Version + "/" + v.Transport + " " + v.SentBy.String() + v.Params }

// Param returns a parameter's value and whether it is present.
func (v Via) Param(name string) (string, bool) { return param(v.Params, name) }

// SetParam replaces the value of a parameter that is present.
func (v *Via) SetParam(name, value string) { v.Params = setParam(v.Params, name, value) }

// URI is a SIP or SIPS URI (RFC 3261 §19.1), split where the filter needs
// it: "sip:" user "@" host ":" port ";params?headers".
type URI struct {
	Scheme   string // "sip" or "sips", as written
	UserInfo string // "alice@" or ""
	Host     HostPort
	Rest     string // ";transport=udp?subject=x", as written
}

// ParseURI parses a SIP or SIPS URI; any other scheme is an error, and so
// is a character no URI holds unescaped (RFC 3986 §2: angle brackets,
// quotes, blanks), since a peer would end the URI there.
func ParseURI(s string) (URI, error) {
	if strings.ContainsAny(s, "<>\" \t\r\n") {
		return URI{}, fmt.Errorf("%w: not a SIP URI: %q", ErrMalformed, clip(s))
	}
	scheme, rest, ok := strings.Cut(s, ":")
	if !ok || (!strings.EqualFold(scheme, "sip") && !strings.EqualFold(scheme, "sips")) {
		return URI{}, fmt.Errorf("%w: not a SIP URI: %q", ErrMalformed, clip(s))
	}
	u := URI{Scheme: scheme}
	if at := strings.LastIndexByte(rest, '@'); at >= 0 {
		u.UserInfo, rest = rest[:at+1], rest[at+1:]
	}
	end := strings.IndexAny(rest, ";?")
	if end < 0 {
		end = len(rest)
	}
	hp, err := parseHostPort(rest[:end])
	if err != nil {
		return URI{}, err
	}
	u.Host, u.Rest = hp, rest[end:]
	return u, nil
}

// String formats the URI.
func (u URI) String() string { return u.Scheme + ":" + u.UserInfo + u.Host.String() + u.Rest }

// Contact is one value of a Contact field (or another name-addr field):
// a URI, in angle brackets after an optional display name or bare, and
// the field's parameters. Star is "*", which a REGISTER uses to remove
// every binding.
type Contact struct {
	Display string // `"Alice" ` or "", as written, when Bracket
	URI     URI
	Bracket bool   // the URI was in angle brackets
	Params  string // ";expires=3600", as written
	Star    bool
}

// ParseContact parses one Contact value.
func ParseContact(v string) (Contact, error) {
	v = strings.TrimSpace(v)
	if v == "*" {
		return Contact{Star: true}, nil
	}
	var c Contact
	var uri string
	if lt := indexOutsideQuotes(v, '<'); lt >= 0 {
		gt := strings.IndexByte(v[lt:], '>')
		if gt < 0 {
			return Contact{}, fmt.Errorf("%w: Contact %q", ErrMalformed, clip(v))
		}
		c.Display, uri, c.Params, c.Bracket = v[:lt], v[lt+1:lt+gt], strings.TrimSpace(v[lt+gt+1:]), true
	} else {
		// A bare URI ends at its first ";": what follows are the field's
		// parameters (RFC 3261 §20.10).
		uri, c.Params, _ = strings.Cut(v, ";")
		if c.Params != "" {
			c.Params = ";" + c.Params
		}
	}
	if c.Params != "" && c.Params[0] != ';' {
		return Contact{}, fmt.Errorf("%w: Contact %q", ErrMalformed, clip(v))
	}
	u, err := ParseURI(strings.TrimSpace(uri))
	if err != nil {
		return Contact{}, err
	}
	c.URI = u
	return c, nil
}

// String formats the Contact value, always with angle brackets.
func (c Contact) String() string {
	if c.Star {
		return "*"
	}
	return c.Display + "<" + c.URI.String() + ">" + c.Params
}

// Param returns a field parameter's value and whether it is present.
func (c Contact) Param(name string) (string, bool) { return param(c.Params, name) }

// indexOutsideQuotes returns the index of the first b outside double
// quotes, or -1.
func indexOutsideQuotes(s string, b byte) int {
	quoted := false
	for i := 0; i < len(s); i++ {
		switch {
		case s[i] == '\\' && quoted:
			i++
		case s[i] == '"':
			quoted = !quoted
		case s[i] == b && !quoted:
			return i
		}
	}
	return -1
}

// param finds a parameter in ";a=1;b;c=3".
func param(params, name string) (string, bool) {
	for _, p := range strings.Split(params, ";") {
		k, v, _ := strings.Cut(p, "=")
		if strings.EqualFold(strings.TrimSpace(k), name) {
			return strings.TrimSpace(v), true
		}
	}
	return "", false
}

// setParam sets the value of a parameter that is present.
func setParam(params, name, value string) string {
	ps := strings.Split(params, ";")
	for i, p := range ps {
		k, _, _ := strings.Cut(p, "=")
		if strings.EqualFold(strings.TrimSpace(k), name) {
			ps[i] = strings.TrimSpace(k) + "=" + value
		}
	}
	return strings.Join(ps, ";")
}
