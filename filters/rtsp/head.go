package rtsp

import (
	"bytes"
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// Version is the one RTSP version the filter acts on (RFC 2326). A message
// of another version (RTSP 2.0, RFC 7826, names addresses differently)
// passes through without opening anything.
const Version = "RTSP/1.0"

// Errors of ParseHead.
var (
	// ErrMalformed means a head is not an RTSP message head: a bad start
	// line, a header line without a colon, a bad Content-Length or CSeq.
	ErrMalformed = errors.New("filters/rtsp: malformed message")
	// ErrNUL means a head holds a NUL byte, which no RTSP head may.
	ErrNUL = errors.New("filters/rtsp: NUL in message head")
)

// Head is the start line and the header fields of one RTSP message (RFC
// 2326 §6 and §7): a request (Method set) or a response (Status set).
type Head struct {
	// Method and URI are a request's; Status and Reason a response's.
	Method, URI string
	Status      int
	Reason      string
	// Proto is the version: "RTSP/1.0" in the messages the filter acts on.
	Proto string
	// Fields holds the header fields in order, folded lines joined.
	Fields []Field
}

// Field is one header field. Name keeps the case it was sent in; Value is
// trimmed of surrounding blanks.
type Field struct {
	Name, Value string
}

// IsRequest reports whether h is a request.
func (h *Head) IsRequest() bool { return h.Method != "" }

// Values returns the values of every field named name (case-insensitive),
// in order.
func (h *Head) Values(name string) []string {
	var out []string
	for _, f := range h.Fields {
		if strings.EqualFold(f.Name, name) {
			out = append(out, f.Value)
		}
	}
	return out
}

// Get returns the value of the one field named name, and whether there is
// exactly one: a field given twice is as good as none to the filter, which
// never guesses which of two the peer will read.
func (h *Head) Get(name string) (string, bool) {
	v := h.Values(name)
	if len(v) != 1 {
		return "", false
	}
	return v[0], true
}

// Set replaces the value of every field named name; it reports whether
// there was one.
func (h *Head) Set(name, value string) bool {
	found := false
	for i := range h.Fields {
		if strings.EqualFold(h.Fields[i].Name, name) {
			h.Fields[i].Value = value
			found = true
		}
	}
	return found
}

// CSeq returns the message's sequence number (RFC 2326 §12.17) as sent,
// and whether it has exactly one that is a decimal number.
func (h *Head) CSeq() (string, bool) {
	v, ok := h.Get("CSeq")
	if !ok || len(v) == 0 || len(v) > 9 || strings.Trim(v, "0123456789") != "" {
		return "", false
	}
	return v, true
}

// Session returns the session identifier of the Session field (RFC 2326
// §12.37), without its parameters, and whether there is one.
func (h *Head) Session() (string, bool) {
	v, ok := h.Get("Session")
	if !ok {
		return "", false
	}
	id, _, _ := strings.Cut(v, ";")
	id = strings.TrimSpace(id)
	return id, id != ""
}

// ContentLength returns the length of the body that follows the head:
// the Content-Length field's value, 0 without one (RFC 2326 §12.14). A
// value that is not a number, or two different values, is an error: the
// filter could not tell where the next message starts.
func (h *Head) ContentLength() (int64, error) {
	var n int64 = -1
	for _, v := range h.Values("Content-Length") {
		m, err := strconv.ParseInt(v, 10, 64)
		if err != nil || m < 0 || strings.Trim(v, "0123456789") != "" {
			return 0, fmt.Errorf("%w: Content-Length %q", ErrMalformed, v)
		}
		if n >= 0 && m != n {
			return 0, fmt.Errorf("%w: two Content-Length fields", ErrMalformed)
		}
		n = m
	}
	return max(n, 0), nil
}

// ParseHead parses a message head: the start line and the header lines up
// to and including the empty line that ends them. Lines end with CRLF or a
// bare LF; a line starting with a blank continues the previous field (RFC
// 2326 §4 borrows HTTP/1.1's rules).
func ParseHead(b []byte) (Head, error) {
	var h Head
	if bytes.IndexByte(b, 0) >= 0 {
		return h, ErrNUL
	}
	lines := splitLines(b)
	if len(lines) < 2 || len(lines[len(lines)-1]) != 0 {
		return h, fmt.Errorf("%w: head not ended by an empty line", ErrMalformed)
	}
	if err := h.parseStart(lines[0]); err != nil {
		return h, err
	}
	for _, l := range lines[1 : len(lines)-1] {
		if len(l) == 0 {
			return h, fmt.Errorf("%w: empty line inside the head", ErrMalformed)
		}
		if l[0] == ' ' || l[0] == '\t' {
			if len(h.Fields) == 0 {
				return h, fmt.Errorf("%w: continuation before any field", ErrMalformed)
			}
			f := &h.Fields[len(h.Fields)-1]
			f.Value = strings.TrimSpace(f.Value + " " + strings.TrimSpace(string(l)))
			continue
		}
		name, value, ok := bytes.Cut(l, []byte(":"))
		if !ok || !isToken(name) {
			return h, fmt.Errorf("%w: header line %q", ErrMalformed, clip(l))
		}
		h.Fields = append(h.Fields, Field{string(name), strings.TrimSpace(string(value))})
	}
	return h, nil
}

// splitLines splits b into lines without their CRLF or LF; b ends with one.
func splitLines(b []byte) [][]byte {
	var lines [][]byte
	for len(b) > 0 {
		i := bytes.IndexByte(b, '\n')
		if i < 0 {
			lines = append(lines, b) // no end: ParseHead refuses it
			break
		}
		lines = append(lines, bytes.TrimSuffix(b[:i], []byte("\r")))
		b = b[i+1:]
	}
	return lines
}

// parseStart parses a request line ("SETUP rtsp://s/t RTSP/1.0") or a
// status line ("RTSP/1.0 200 OK").
func (h *Head) parseStart(l []byte) error {
	f := strings.Fields(string(l))
	if len(f) >= 2 && isVersion(f[0]) {
		code, err := strconv.Atoi(f[1])
		if err != nil || len(f[1]) != 3 || code < 100 {
			return fmt.Errorf("%w: status line %q", ErrMalformed, clip(l))
		}
		h.Proto, h.Status = f[0], code
		h.Reason = strings.Join(f[2:], " ")
		return nil
	}
	if len(f) != 3 || !isToken([]byte(f[0])) || !isVersion(f[2]) {
		return fmt.Errorf("%w: start line %q", ErrMalformed, clip(l))
	}
	h.Method, h.URI, h.Proto = f[0], f[1], f[2]
	return nil
}

// isVersion reports whether s looks like "RTSP/x.y".
func isVersion(s string) bool {
	v, ok := strings.CutPrefix(s, "RTSP/")
	if !ok {
		return false
	}
	major, minor, ok := strings.Cut(v, ".")
	return ok && major != "" && minor != "" && strings.Trim(major+minor, "0123456789") == ""
}

// isToken reports whether b is a non-empty token (RFC 2616 §2.2): the
// characters a method or a field name is made of.
func isToken(b []byte) bool {
	if len(b) == 0 {
		return false
	}
	for _, c := range b {
		if c <= ' ' || c >= 0x7f || strings.IndexByte("()<>@,;:\\\"/[]?={}", c) >= 0 {
			return false
		}
	}
	return true
}

// Append appends the head in wire form: the start line, the fields one per
// line (folded ones unfolded), the empty line, each ended by CRLF.
func (h *Head) Append(b []byte) []byte {
	if h.IsRequest() {
		b = fmt.Appendf(b, "%s %s %s\r\n", h.Method, h.URI, h.Proto)
	} else {
		b = fmt.Appendf(b, "%s %03d", h.Proto, h.Status)
		if h.Reason != "" {
			b = append(append(b, ' '), h.Reason...)
		}
		b = append(b, "\r\n"...)
	}
	for _, f := range h.Fields {
		b = fmt.Appendf(b, "%s: %s\r\n", f.Name, f.Value)
	}
	return append(b, "\r\n"...)
}

// clip shortens what an error quotes.
func clip(b []byte) string {
	const n = 64
	if len(b) > n {
		return string(b[:n]) + "..."
	}
	return string(b)
}
