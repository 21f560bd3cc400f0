package rtsp

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// ErrBadTransport means a Transport field (RFC 2326 §12.39) does not
// parse: an empty spec, a bad quoted string, a bad parameter name.
var ErrBadTransport = errors.New("filters/rtsp: malformed Transport")

// Spec is one transport-spec of a Transport field: the transport and its
// parameters, in order, as in
//
//	RTP/AVP;unicast;client_port=4588-4589;mode="PLAY"
type Spec struct {
	// Proto is the transport as written: "RTP/AVP", "RTP/AVP/UDP",
	// "RTP/AVP/TCP", ...
	Proto  string
	Params []Param
}

// Param is one parameter of a spec; Value is empty, and HasValue false,
// for a flag such as "unicast". A quoted value keeps its quotes.
type Param struct {
	Name     string
	Value    string
	HasValue bool
}

// ParseTransport parses the value of a Transport field: one or more specs
// separated by commas (a client offers alternatives, a server answers
// with the one it chose).
func ParseTransport(v string) ([]Spec, error) {
	parts, err := split(v, ',')
	if err != nil {
		return nil, err
	}
	specs := make([]Spec, 0, len(parts))
	for _, part := range parts {
		fields, err := split(part, ';')
		if err != nil {
			return nil, err
		}
		if len(fields) == 0 {
			continue // an empty element of the list
		}
		if first, _, _ := strings.Cut(part, ";"); trimLWS(first) == "" {
			// Parameters with no transport before them: what a server
			// would make of it is anyone's guess.
			return nil, fmt.Errorf("%w: a spec without its transport: %q", ErrBadTransport, part)
		}
		s := Spec{Proto: trimLWS(fields[0])}
		if !isToken([]byte(strings.ReplaceAll(s.Proto, "/", ""))) {
			return nil, fmt.Errorf("%w: transport %q", ErrBadTransport, s.Proto)
		}
		for _, f := range fields[1:] {
			name, value, has := strings.Cut(f, "=")
			p := Param{Name: trimLWS(name), Value: trimLWS(value), HasValue: has}
			if !isToken([]byte(p.Name)) {
				return nil, fmt.Errorf("%w: parameter %q", ErrBadTransport, f)
			}
			s.Params = append(s.Params, p)
		}
		specs = append(specs, s)
	}
	if len(specs) == 0 {
		return nil, fmt.Errorf("%w: no transport in %q", ErrBadTransport, v)
	}
	return specs, nil
}

// trimLWS trims the blanks RTSP allows around a spec's parts (RFC 2326
// §15.1: spaces and tabs, not other control characters, which a server
// would read as part of a transport).
func trimLWS(s string) string { return strings.Trim(s, " \t") }

// split splits s at sep outside double quotes, leaving out empty parts
// (a trailing ";" is common); an unbalanced quote is an error.
func split(s string, sep byte) ([]string, error) {
	var out []string
	quoted, start := false, 0
	for i := 0; i <= len(s); i++ {
		if i < len(s) && s[i] == '"' {
			quoted = !quoted
		}
		if i == len(s) || (s[i] == sep && !quoted) {
			if part := s[start:i]; trimLWS(part) != "" {
				out = append(out, part)
			}
			start = i + 1
		}
	}
	if quoted {
		return nil, fmt.Errorf("%w: unbalanced quote in %q", ErrBadTransport, s)
	}
	return out, nil
}

// FormatTransport formats specs as the value of a Transport field.
func FormatTransport(specs []Spec) string {
	var b strings.Builder
	for i, s := range specs {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(s.Proto)
		for _, p := range s.Params {
			b.WriteByte(';')
			b.WriteString(p.Name)
			if p.HasValue {
				b.WriteByte('=')
				b.WriteString(p.Value)
			}
		}
	}
	return b.String()
}

// Get returns the value of the one parameter named name (case-insensitive),
// and how many there are: a spec naming a parameter twice is ambiguous.
func (s *Spec) Get(name string) (value string, n int) {
	for _, p := range s.Params {
		if strings.EqualFold(p.Name, name) {
			value, n = p.Value, n+1
		}
	}
	return value, n
}

// Has reports whether the spec has a parameter named name.
func (s *Spec) Has(name string) bool {
	_, n := s.Get(name)
	return n > 0
}

// Set gives every parameter named name the value v.
func (s *Spec) Set(name, v string) {
	for i := range s.Params {
		if strings.EqualFold(s.Params[i].Name, name) {
			s.Params[i].Value, s.Params[i].HasValue = v, true
		}
	}
}

// Del removes every parameter named name.
func (s *Spec) Del(name string) {
	out := s.Params[:0]
	for _, p := range s.Params {
		if !strings.EqualFold(p.Name, name) {
			out = append(out, p)
		}
	}
	s.Params = out
}

// IsRTPOverUDP reports whether the spec is RTP carried in UDP datagrams:
// an RTP profile (AVP, SAVP, AVPF, SAVPF) whose lower transport is UDP,
// named or by default. Interleaved RTP ("RTP/AVP/TCP") is not.
func (s *Spec) IsRTPOverUDP() bool {
	parts := strings.Split(strings.ToUpper(s.Proto), "/")
	if len(parts) < 2 || len(parts) > 3 || parts[0] != "RTP" {
		return false
	}
	switch parts[1] {
	case "AVP", "SAVP", "AVPF", "SAVPF":
	default:
		return false
	}
	return len(parts) == 2 || parts[2] == "UDP"
}

// IsMulticast reports whether the spec asks for multicast delivery.
// Unicast is the default (RFC 2326 §12.39).
func (s *Spec) IsMulticast() bool { return s.Has("multicast") }

// Ports is a port or a pair of ports, as in client_port=4588-4589 or
// server_port=6256: RTP on the first, RTCP on the second.
type Ports struct {
	RTP, RTCP uint16
	// Pair is true when two ports were given.
	Pair bool
}

// ParsePorts parses a port parameter's value: "p" or "p-q", decimal,
// 1 to 65535, q different from p.
func ParsePorts(v string) (Ports, error) {
	lo, hi, pair := strings.Cut(v, "-")
	a, err := parsePort(lo)
	if err != nil {
		return Ports{}, err
	}
	if !pair {
		return Ports{RTP: a}, nil
	}
	b, err := parsePort(hi)
	if err != nil || b == a {
		return Ports{}, fmt.Errorf("%w: port range %q", ErrBadTransport, v)
	}
	return Ports{RTP: a, RTCP: b, Pair: true}, nil
}

func parsePort(s string) (uint16, error) {
	if s == "" || len(s) > 5 || strings.Trim(s, "0123456789") != "" {
		return 0, fmt.Errorf("%w: port %q", ErrBadTransport, s)
	}
	n, _ := strconv.Atoi(s)
	if n < 1 || n > 65535 {
		return 0, fmt.Errorf("%w: port %q", ErrBadTransport, s)
	}
	return uint16(n), nil
}

// String formats the ports as a parameter value.
func (p Ports) String() string {
	if !p.Pair {
		return strconv.Itoa(int(p.RTP))
	}
	return strconv.Itoa(int(p.RTP)) + "-" + strconv.Itoa(int(p.RTCP))
}

// Second returns the RTCP port: the second of a pair, or the RTP port's
// next one when only one was given (RFC 3550 §11), 0 if there is none.
func (p Ports) Second() uint16 {
	if p.Pair {
		return p.RTCP
	}
	if p.RTP == 65535 {
		return 0
	}
	return p.RTP + 1
}
