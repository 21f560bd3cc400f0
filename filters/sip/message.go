package sip

import (
	"bytes"
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// Version is the SIP version the filter reads (RFC 3261 §7.1).
const Version = "SIP/2.0"

// Errors of Parse.
var (
	// ErrNotSIP means the bytes do not start with a SIP request or status
	// line: they are not the filter's business.
	ErrNotSIP = errors.New("filters/sip: not a SIP message")
	// ErrMalformed means a message that starts as SIP does not parse: a
	// header line without a colon, a bad or ambiguous Content-Length, a
	// missing mandatory field.
	ErrMalformed = errors.New("filters/sip: malformed SIP message")
	// ErrTooLarge means a message exceeds the filter's limits on size or
	// header fields.
	ErrTooLarge = errors.New("filters/sip: SIP message over the limits")
)

// Message is one SIP message (RFC 3261 §7): a request (Method set) or a
// response (Status set), its header fields in order and its body.
type Message struct {
	Method, URI string
	Status      int
	Reason      string
	Fields      []Field
	Body        []byte
}

// Field is one header field: Name as sent (perhaps a compact form),
// Value trimmed, folded lines joined.
type Field struct {
	Name, Value string
}

// IsRequest reports whether m is a request.
func (m *Message) IsRequest() bool { return m.Method != "" }

// Limits bound what Parse accepts.
type Limits struct {
	// Size is the most bytes a message may have, head and body.
	Size int
	// Fields is the most header fields a message may have.
	Fields int
}

// compact maps the compact forms of field names (RFC 3261 §7.3.3 and the
// extensions that define them) to their full names.
var compact = map[string]string{
	"i": "call-id", "m": "contact", "e": "content-encoding", "l": "content-length",
	"c": "content-type", "f": "from", "s": "subject", "k": "supported", "t": "to",
	"v": "via", "o": "event", "u": "allow-events", "r": "refer-to", "b": "referred-by",
	"x": "session-expires", "a": "accept-contact", "j": "reject-contact", "d": "request-disposition",
	"y": "identity", "n": "identity-info",
}

// canonical returns a field name's full name in lower case.
func canonical(name string) string {
	n := strings.ToLower(name)
	if full, ok := compact[n]; ok {
		return full
	}
	return n
}

// Parse parses one SIP message: a whole UDP datagram. Bytes past the body
// Content-Length gives are dropped (RFC 3261 §18.3); without
// Content-Length the body is the rest of the datagram. Leading empty lines
// are skipped (§7.5).
func Parse(b []byte, lim Limits) (*Message, error) {
	if len(b) > lim.Size {
		return nil, fmt.Errorf("%w: %d bytes, more than %d", ErrTooLarge, len(b), lim.Size)
	}
	b = bytes.TrimLeft(b, "\r\n")
	if !startsSIP(b) {
		return nil, ErrNotSIP
	}
	end, sep := headEnd(b)
	if end < 0 {
		return nil, fmt.Errorf("%w: head not ended by an empty line", ErrMalformed)
	}
	m, err := ParseHead(b[:end+sep], lim)
	if err != nil {
		return nil, err
	}
	body := b[end+sep:]
	n, ok, err := m.ContentLength()
	switch {
	case err != nil:
		return nil, err
	case ok && n > int64(len(body)):
		return nil, fmt.Errorf("%w: Content-Length %d, %d bytes of body", ErrMalformed, n, len(body))
	case ok:
		body = body[:n]
	}
	m.Body = bytes.Clone(body)
	return m, nil
}

// ParseHead parses a message head, through its empty line: on a stream
// the body follows, ContentLength bytes long (RFC 3261 §18.3).
func ParseHead(b []byte, lim Limits) (*Message, error) {
	if !startsSIP(b) {
		return nil, ErrNotSIP
	}
	if bytes.IndexByte(b, 0) >= 0 {
		return nil, fmt.Errorf("%w: NUL in the head", ErrMalformed)
	}
	text := strings.TrimRight(strings.ReplaceAll(string(b), "\r\n", "\n"), "\n")
	lines := strings.Split(text, "\n")
	m := &Message{}
	if err := m.parseStart(lines[0]); err != nil {
		return nil, err
	}
	for _, l := range lines[1:] {
		if l == "" {
			return nil, fmt.Errorf("%w: stray empty line", ErrMalformed)
		}
		if l[0] == ' ' || l[0] == '\t' {
			if len(m.Fields) == 0 {
				return nil, fmt.Errorf("%w: continuation before any field", ErrMalformed)
			}
			f := &m.Fields[len(m.Fields)-1]
			f.Value = strings.TrimSpace(f.Value + " " + strings.TrimSpace(l))
			continue
		}
		name, value, ok := strings.Cut(l, ":")
		name = strings.TrimRight(name, " \t")
		if !ok || !isToken(name) {
			return nil, fmt.Errorf("%w: header line %q", ErrMalformed, clip(l))
		}
		if len(m.Fields) == lim.Fields {
			return nil, fmt.Errorf("%w: more than %d header fields", ErrTooLarge, lim.Fields)
		}
		m.Fields = append(m.Fields, Field{name, strings.TrimSpace(value)})
	}
	for _, f := range []string{"via", "call-id", "cseq", "from", "to"} {
		if len(m.Values(f)) == 0 {
			return nil, fmt.Errorf("%w: no %s", ErrMalformed, f)
		}
	}
	if _, _, err := m.CSeq(); err != nil {
		return nil, err
	}
	if _, _, err := m.ContentLength(); err != nil {
		return nil, err
	}
	return m, nil
}

// headEnd returns where the head of b ends (before its empty line) and the
// length of that line break pair, or -1.
func headEnd(b []byte) (int, int) {
	crlf, lf := bytes.Index(b, []byte("\r\n\r\n")), bytes.Index(b, []byte("\n\n"))
	switch {
	case crlf >= 0 && (lf < 0 || crlf < lf):
		return crlf, 4
	case lf >= 0:
		return lf, 2
	}
	return -1, 0
}

// startsSIP reports whether b begins with what can only be a SIP start
// line: "SIP/2.0 " (a status line), or a method token, a space, and a
// line that ends with " SIP/2.0" (a request line). Only a message that
// starts so is read; anything else (HTTP, STUN, keepalives) is not SIP.
func startsSIP(b []byte) bool {
	line, _, _ := bytes.Cut(b, []byte("\n"))
	line = bytes.TrimSuffix(line, []byte("\r"))
	if bytes.HasPrefix(line, []byte(Version+" ")) {
		return true
	}
	f := bytes.Fields(line)
	return len(f) == 3 && isToken(string(f[0])) && string(f[2]) == Version
}

// parseStart parses a request line or a status line.
func (m *Message) parseStart(l string) error {
	l = strings.TrimSuffix(l, "\r")
	f := strings.Fields(l)
	if len(f) >= 2 && f[0] == Version {
		code, err := strconv.Atoi(f[1])
		if err != nil || len(f[1]) != 3 || code < 100 || code > 699 {
			return fmt.Errorf("%w: status line %q", ErrMalformed, clip(l))
		}
		m.Status, m.Reason = code, strings.Join(f[2:], " ")
		return nil
	}
	if len(f) != 3 || f[2] != Version || !isToken(f[0]) {
		return fmt.Errorf("%w: request line %q", ErrMalformed, clip(l))
	}
	m.Method, m.URI = f[0], f[1]
	return nil
}

// isToken reports whether s is a non-empty token (RFC 3261 §25.1).
func isToken(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c <= ' ' || c >= 0x7f || strings.IndexByte("()<>@,;:\\\"/[]?={}", c) >= 0 {
			return false
		}
	}
	return true
}

// Values returns the values of the fields named name (a full name, in
// lower case; compact forms match), in order, each field's
// comma-separated values apart for the fields that take a list (Via,
// Contact, Route, Record-Route).
func (m *Message) Values(name string) []string {
	var out []string
	for _, f := range m.Fields {
		if canonical(f.Name) != name {
			continue
		}
		if listField[name] {
			out = append(out, splitList(f.Value)...)
		} else {
			out = append(out, f.Value)
		}
	}
	return out
}

// Get returns the value of the one field named name, and whether there is
// exactly one.
func (m *Message) Get(name string) (string, bool) {
	v := m.Values(name)
	if len(v) != 1 {
		return "", false
	}
	return v[0], true
}

// listField holds the fields whose value is a comma-separated list the
// filter reads element by element.
var listField = map[string]bool{"via": true, "contact": true, "route": true, "record-route": true}

// splitList splits a list field's value at commas outside quotes and
// angle brackets ("Doe, John" <sip:j@h>, <sip:k@h>).
func splitList(v string) []string {
	var out []string
	quoted, angle, start := false, false, 0
	for i := 0; i < len(v); i++ {
		switch c := v[i]; {
		case c == '\\' && quoted:
			i++
		case c == '"':
			quoted = !quoted
		case c == '<' && !quoted:
			angle = true
		case c == '>' && !quoted:
			angle = false
		case c == ',' && !quoted && !angle:
			out = append(out, strings.TrimSpace(v[start:i]))
			start = i + 1
		}
	}
	return append(out, strings.TrimSpace(v[start:]))
}

// SetList replaces the fields named name (a list field) with one field
// holding values, where the first of them was.
func (m *Message) SetList(name string, values []string) {
	first := -1
	out := m.Fields[:0]
	for _, f := range m.Fields {
		if canonical(f.Name) == name {
			if first < 0 {
				first = len(out)
				out = append(out, Field{f.Name, strings.Join(values, ", ")})
			}
			continue
		}
		out = append(out, f)
	}
	m.Fields = out
}

// CSeq returns the sequence number and method of the CSeq field.
func (m *Message) CSeq() (uint32, string, error) {
	v, ok := m.Get("cseq")
	if !ok {
		return 0, "", fmt.Errorf("%w: not one CSeq", ErrMalformed)
	}
	num, method, ok := strings.Cut(strings.TrimSpace(v), " ")
	method = strings.TrimSpace(method)
	n, err := strconv.ParseUint(num, 10, 32)
	if !ok || err != nil || !isToken(method) {
		return 0, "", fmt.Errorf("%w: CSeq %q", ErrMalformed, v)
	}
	return uint32(n), method, nil
}

// CallID returns the Call-ID.
func (m *Message) CallID() string {
	v, _ := m.Get("call-id")
	return v
}

// ContentLength returns the Content-Length, whether there is one, and an
// error for a bad value or two different ones.
func (m *Message) ContentLength() (int64, bool, error) {
	var n int64 = -1
	for _, v := range m.Values("content-length") {
		k, err := strconv.ParseInt(v, 10, 64)
		if err != nil || k < 0 || strings.Trim(v, "0123456789") != "" || (n >= 0 && k != n) {
			return 0, false, fmt.Errorf("%w: Content-Length %q", ErrMalformed, v)
		}
		n = k
	}
	return n, n >= 0, nil
}

// IsSDP reports whether the body is a session description (RFC 4566).
func (m *Message) IsSDP() bool {
	ct, _ := m.Get("content-type")
	mt, _, _ := strings.Cut(ct, ";")
	return len(m.Body) > 0 && strings.EqualFold(strings.TrimSpace(mt), "application/sdp")
}

// Append appends the message in wire form, with a Content-Length that
// matches its body (its own, replaced, or a new one).
func (m *Message) Append(b []byte) []byte {
	if m.IsRequest() {
		b = fmt.Appendf(b, "%s %s %s\r\n", m.Method, m.URI, Version)
	} else {
		b = fmt.Appendf(b, "%s %03d %s\r\n", Version, m.Status, m.Reason)
	}
	length := false
	for _, f := range m.Fields {
		if canonical(f.Name) == "content-length" {
			if length {
				continue
			}
			length = true
			f.Value = strconv.Itoa(len(m.Body))
		}
		b = fmt.Appendf(b, "%s: %s\r\n", f.Name, f.Value)
	}
	if !length {
		b = fmt.Appendf(b, "Content-Length: %d\r\n", len(m.Body))
	}
	b = append(b, "\r\n"...)
	return append(b, m.Body...)
}

// clip shortens what an error quotes.
func clip(s string) string {
	const n = 64
	if len(s) > n {
		return s[:n] + "..."
	}
	return s
}
