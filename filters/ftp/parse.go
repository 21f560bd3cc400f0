package ftp

import (
	"errors"
	"fmt"
	"net/netip"
	"strconv"
	"strings"
)

// This file parses and formats FTP control lines: commands (RFC 959 §4.1,
// RFC 2428 EPRT), replies (RFC 959 §4.2, 227 per RFC 1123 §4.1.2.6, 229 per
// RFC 2428). The parsers are strict where laxity has opened firewalls:
//
//   - a host or port number is 1 to 3 decimal digits (1 to 5 for an EPRT or
//     229 port), with no sign, space or other byte inside; leading zeros
//     are allowed and decimal ("010" is 10, never octal), as servers such as
//     pyftpdlib and some embedded ones zero-pad;
//   - a number over 255 is refused, never folded into the next byte as
//     netfilter's try_number does ("10,0,0,257" is not 10.0.1.1);
//   - PORT and EPRT have nothing before or after the argument, and exactly
//     the fields they should;
//   - port 0 is ErrBadPort. Ports below 1024 parse, and [Privileged] tells
//     the filter to refuse them.
//
// The parsers check syntax only: whether the address is the session's own
// client or server is the filter's business.

// Errors of the parsers, wrapped with the input and the reason; test them
// with errors.Is.
var (
	// ErrSyntax means a command argument or reply text is malformed.
	ErrSyntax = errors.New("filters/ftp: syntax error")
	// ErrBadPort means a well-formed address names port 0.
	ErrBadPort = errors.New("filters/ftp: port 0")
)

// Privileged reports whether port is below 1024 (port 0 included). The
// filter refuses data connections to such ports, as OpenBSD ftp-proxy
// (MIN_PORT), libalias and vsftpd do: a PORT to 25 or 22 is an FTP bounce.
func Privileged(port uint16) bool { return port < 1024 }

// Command is a parsed client command line. The zero value is no command.
type Command struct {
	// Verb is the command name, upper-cased: "PORT", "EPSV".
	Verb string
	// Arg is the raw argument, without the separating space and the line
	// terminator; "" if none.
	Arg string
}

// ParseCommand parses a client command line (RFC 959 §4.1): a verb of 3 or
// 4 ASCII letters, case-insensitive, at the very start of the line, then
// either the end of the line or exactly one space and the argument. A
// trailing LF, and a CR before it, are stripped.
//
// It returns false for an empty line and for anything else: leading spaces
// or Telnet bytes (a command that does not start the line never matches), a
// longer word, or a verb followed by anything but a space. Arg is taken as
// it is: "PORT  1,2,3,4,5,6" gives Arg " 1,2,3,4,5,6", which ParsePORT
// refuses.
func ParseCommand(line []byte) (Command, bool) {
	line = trimEOL(line)
	n := 0
	for n < len(line) && n <= 4 && isLetter(line[n]) {
		n++
	}
	if n < 3 || n > 4 || (n < len(line) && line[n] != ' ') {
		return Command{}, false
	}
	var up [4]byte
	for i := range n {
		up[i] = line[i] &^ 0x20 // ASCII letter to upper case
	}
	c := Command{Verb: verb(up[:n])}
	if n < len(line) {
		c.Arg = string(line[n+1:])
	}
	return c, true
}

// verb returns b as a string, without allocating for the known verbs.
func verb(b []byte) string {
	if v, ok := knownVerbs[string(b)]; ok { // no allocation for the lookup
		return v
	}
	return string(b)
}

// knownVerbs interns the verbs of RFC 959, 775 (X*), 2228, 2389, 2428,
// 2640 and 3659 and IANA's registry, so that parsing a common command does
// not allocate its name. Before the login, a line must start with one of
// them (an HTTP or SIP request line does not).
var knownVerbs = func() map[string]string {
	m := make(map[string]string)
	for _, v := range []string{
		"USER", "PASS", "ACCT", "CWD", "CDUP", "SMNT", "QUIT", "REIN", "PORT", "PASV",
		"TYPE", "STRU", "MODE", "RETR", "STOR", "STOU", "APPE", "ALLO", "REST", "RNFR",
		"RNTO", "ABOR", "DELE", "RMD", "MKD", "PWD", "LIST", "NLST", "SITE", "SYST",
		"STAT", "HELP", "NOOP", "XCWD", "XCUP", "XMKD", "XRMD", "XPWD", "AUTH", "ADAT",
		"PROT", "PBSZ", "CCC", "MIC", "CONF", "ENC", "FEAT", "OPTS", "EPRT", "EPSV",
		"LANG", "MDTM", "SIZE", "MLST", "MLSD", "MFMT", "MFCT", "MFF", "HOST",
		// The rest of IANA's FTP command registry, and CLNT (lftp, FileZilla).
		"AVBL", "CSID", "DSIZ", "LPRT", "LPSV", "RMDA", "SPSV", "THMB",
		"XRCP", "XRSQ", "XSEM", "XSEN", "CLNT",
	} {
		m[v] = v
	}
	return m
}()

// ParsePORT parses the argument of PORT (RFC 959 §4.1.2):
// "h1,h2,h3,h4,p1,p2", exactly six decimal fields of 1 to 3 digits, each
// 0..255, nothing else. The port is p1*256+p2; port 0 gives ErrBadPort. It
// does not allocate unless it fails.
func ParsePORT(arg string) (netip.AddrPort, error) {
	v, end, field, why := scanSix(arg)
	if why == "" && end < len(arg) {
		field, why = 6, "bytes after the sixth field"
		if arg[end] == ',' {
			field, why = 7, "more than six fields"
		}
	}
	if why != "" {
		return netip.AddrPort{}, fmt.Errorf("%w: PORT %q: field %d: %s", ErrSyntax, arg, field, why)
	}
	ap := sixToAddrPort(v)
	if ap.Port() == 0 {
		return netip.AddrPort{}, fmt.Errorf("%w: PORT %q", ErrBadPort, arg)
	}
	return ap, nil
}

// Parse227 parses the text of a 227 reply to PASV, e.g. "Entering Passive
// Mode (192,0,2,7,117,48).". As RFC 1123 §4.1.2.6 advises it scans for the
// first digit, wherever it is and whatever precedes it (parentheses are
// optional), and reads six comma-separated numbers as in PORT from there.
// Any text may follow, except a seventh field or more digits. Port 0 gives
// ErrBadPort. It does not allocate unless it fails.
func Parse227(text string) (netip.AddrPort, error) {
	i := 0
	for i < len(text) && !isDigit(text[i]) {
		i++
	}
	if i == len(text) {
		return netip.AddrPort{}, fmt.Errorf("%w: 227 %q: no digits", ErrSyntax, text)
	}
	v, end, field, why := scanSix(text[i:])
	if why == "" && i+end < len(text) && text[i+end] == ',' {
		field, why = 7, "more than six fields"
	}
	if why != "" {
		return netip.AddrPort{}, fmt.Errorf("%w: 227 %q: field %d: %s", ErrSyntax, text, field, why)
	}
	ap := sixToAddrPort(v)
	if ap.Port() == 0 {
		return netip.AddrPort{}, fmt.Errorf("%w: 227 %q", ErrBadPort, text)
	}
	return ap, nil
}

// scanSix reads "n,n,n,n,n,n" at the start of s, each n 1 to 3 decimal
// digits and at most 255. It returns the numbers and where they end, or
// the field (1-based) that is wrong and why. why is a constant, so the
// success path does not allocate.
func scanSix(s string) (v [6]byte, end, field int, why string) {
	i := 0
	for f := range 6 {
		if f > 0 {
			if i == len(s) {
				return v, i, f + 1, "fewer than six fields"
			}
			if s[i] != ',' {
				return v, i, f, "not followed by a comma"
			}
			i++
		}
		j, x := i, 0
		for j < len(s) && j-i < 4 && isDigit(s[j]) {
			x = x*10 + int(s[j]-'0')
			j++
		}
		switch {
		case j == i:
			return v, i, f + 1, "not a decimal number"
		case j-i > 3:
			return v, i, f + 1, "more than 3 digits"
		case x > 255:
			return v, i, f + 1, "over 255"
		}
		v[f] = byte(x)
		i = j
	}
	return v, i, 0, ""
}

func sixToAddrPort(v [6]byte) netip.AddrPort {
	return netip.AddrPortFrom(netip.AddrFrom4([4]byte(v[:4])), uint16(v[4])<<8|uint16(v[5]))
}

// ParseEPRT parses the argument of EPRT (RFC 2428 §2):
// "<d><af><d><addr><d><port><d>", e.g. "|1|192.0.2.7|6446|" or
// "|2|2001:db8::7|6446|". The delimiter d is the first byte; RFC 2428
// allows any ASCII 33..126, and it must be the same four times, appear
// nowhere else and not be a digit (a digit delimiter is unambiguous here
// but no client uses one, and it would make 229 replies ambiguous). The
// family is exactly "1" (IPv4) or "2" (IPv6), and the address must be of
// that family: an IPv4-mapped IPv6 address or one with a zone is refused
// with family 2, as is a dotted quad with leading zeros with family 1
// (netip.ParseAddr). The port is 1 to 5 decimal digits, at most 65535;
// port 0 gives ErrBadPort. Nothing may follow the last delimiter.
func ParseEPRT(arg string) (netip.AddrPort, error) {
	fail := func(why string) (netip.AddrPort, error) {
		return netip.AddrPort{}, fmt.Errorf("%w: EPRT %q: %s", ErrSyntax, arg, why)
	}
	if arg == "" {
		return fail("empty")
	}
	d := arg[0]
	if !isDelimiter(d) {
		return fail("bad delimiter")
	}
	var f [3]string // family, address, port
	rest := arg[1:]
	for k := range f {
		i := strings.IndexByte(rest, d)
		if i < 0 {
			return fail("fewer than four delimiters")
		}
		f[k], rest = rest[:i], rest[i+1:]
	}
	if rest != "" {
		return fail("bytes after the last delimiter")
	}
	addr, err := netip.ParseAddr(f[1])
	if err != nil {
		return fail("bad address")
	}
	switch f[0] {
	case "1":
		if !addr.Is4() {
			return fail("family 1 with a non-IPv4 address")
		}
	case "2":
		if !addr.Is6() || addr.Is4In6() || addr.Zone() != "" {
			return fail("family 2 with a non-IPv6, IPv4-mapped or zoned address")
		}
	default:
		return fail("family not 1 or 2")
	}
	port, why := parsePort(f[2])
	if why != "" {
		return fail(why)
	}
	if port == 0 {
		return netip.AddrPort{}, fmt.Errorf("%w: EPRT %q", ErrBadPort, arg)
	}
	return netip.AddrPortFrom(addr, port), nil
}

// Parse229 parses the text of a 229 reply to EPSV (RFC 2428 §3), e.g.
// "Entering Extended Passive Mode (|||6446|)". From the first "(" it wants
// exactly "(<d><d><d><port><d>)": one delimiter as in EPRT four times, with
// empty family and address, and a port of 1 to 5 digits, at most 65535.
// Any text may precede the "(" or follow the ")". Port 0 gives ErrBadPort.
// The address is the control connection's peer (RFC 2428), which the
// caller supplies.
func Parse229(text string) (uint16, error) {
	fail := func(why string) (uint16, error) {
		return 0, fmt.Errorf("%w: 229 %q: %s", ErrSyntax, text, why)
	}
	i := strings.IndexByte(text, '(')
	if i < 0 {
		return fail("no '('")
	}
	s := text[i+1:]
	if len(s) < 3 {
		return fail("too short")
	}
	d := s[0]
	if !isDelimiter(d) {
		return fail("bad delimiter")
	}
	if s[1] != d || s[2] != d {
		return fail("want three equal delimiters before the port")
	}
	s = s[3:]
	j := 0
	for j < len(s) && isDigit(s[j]) {
		j++
	}
	if j == len(s) || s[j] != d {
		return fail("port not followed by the delimiter")
	}
	port, why := parsePort(s[:j])
	if why != "" {
		return fail(why)
	}
	if j+1 == len(s) || s[j+1] != ')' {
		return fail("no ')' after the last delimiter")
	}
	if port == 0 {
		return 0, fmt.Errorf("%w: 229 %q", ErrBadPort, text)
	}
	return port, nil
}

// parsePort parses 1 to 5 decimal digits, at most 65535 (0 included).
func parsePort(s string) (uint16, string) {
	if s == "" {
		return 0, "empty port"
	}
	if len(s) > 5 {
		return 0, "port of more than 5 digits"
	}
	x := 0
	for i := range len(s) {
		if !isDigit(s[i]) {
			return 0, "port not a decimal number"
		}
		x = x*10 + int(s[i]-'0')
	}
	if x > 65535 {
		return 0, "port over 65535"
	}
	return uint16(x), ""
}

// FormatPORT formats ap as a PORT argument, "h1,h2,h3,h4,p1,p2". An
// IPv4-mapped IPv6 address is unmapped first.
//
// It panics if the address is not IPv4: PORT cannot express anything
// else, and a caller that gets here with IPv6 has a bug (use EPRT).
func FormatPORT(ap netip.AddrPort) string {
	var b [len("255,255,255,255,255,255")]byte
	return string(appendSix(b[:0], ap, "FormatPORT"))
}

// Format227 formats the text of a 227 reply,
// "Entering Passive Mode (h1,h2,h3,h4,p1,p2).". Like FormatPORT it panics
// if the address is not IPv4 (or IPv4-mapped).
func Format227(ap netip.AddrPort) string {
	const pre, post = "Entering Passive Mode (", ")."
	var b [len(pre) + len("255,255,255,255,255,255") + len(post)]byte
	return string(append(appendSix(append(b[:0], pre...), ap, "Format227"), post...))
}

func appendSix(b []byte, ap netip.AddrPort, who string) []byte {
	a := ap.Addr().Unmap()
	if !a.Is4() {
		panic("filters/ftp: " + who + " of a non-IPv4 address " + ap.String())
	}
	for _, x := range a.As4() {
		b = strconv.AppendUint(b, uint64(x), 10)
		b = append(b, ',')
	}
	b = strconv.AppendUint(b, uint64(ap.Port()>>8), 10)
	b = append(b, ',')
	return strconv.AppendUint(b, uint64(ap.Port()&0xff), 10)
}

// FormatEPRT formats ap as an EPRT argument with the delimiter "|":
// "|1|a.b.c.d|port|" for IPv4 (an IPv4-mapped address is unmapped first)
// and "|2|v6|port|" for IPv6 (a zone is dropped: it means nothing to the
// peer). It panics if ap's address is the zero Addr.
func FormatEPRT(ap netip.AddrPort) string {
	a := ap.Addr().Unmap().WithZone("")
	var b []byte
	switch {
	case a.Is4():
		b = append(make([]byte, 0, 32), "|1|"...)
	case a.Is6():
		b = append(make([]byte, 0, 64), "|2|"...)
	default:
		panic("filters/ftp: FormatEPRT of an invalid address")
	}
	b = a.AppendTo(b)
	b = append(b, '|')
	b = strconv.AppendUint(b, uint64(ap.Port()), 10)
	return string(append(b, '|'))
}

// Format229 formats the text of a 229 reply,
// "Entering Extended Passive Mode (|||port|)".
func Format229(port uint16) string {
	return "Entering Extended Passive Mode (|||" + strconv.FormatUint(uint64(port), 10) + "|)"
}

// Reply is a parsed server reply line (RFC 959 §4.2). The zero value is
// no reply.
//
// A multi-line reply starts with "NNN-" (More is true) and ends with a
// line "NNN " with the same code; the lines in between are text, even
// those that happen to start with three digits and a space unless the code
// is the same. Tracking that is the caller's job: ParseReply sees one line.
type Reply struct {
	// Code is the three-digit reply code, 0 to 999.
	Code int
	// Text is what follows the code and its separator, without the line
	// terminator.
	Text string
	// More is true for the first line of a multi-line reply ("NNN-").
	More bool
}

// ParseReply parses a reply line: three ASCII digits, then ' ' (the last
// line of a reply) or '-' (the first line of a multi-line reply), then the
// text. A trailing LF, and a CR before it, are stripped. It returns false
// for anything else, including a bare "NNN" and a continuation line that
// does not start with a code (it is just text).
func ParseReply(line []byte) (Reply, bool) {
	line = trimEOL(line)
	if len(line) < 4 || !isDigit(line[0]) || !isDigit(line[1]) || !isDigit(line[2]) {
		return Reply{}, false
	}
	r := Reply{Code: int(line[0]-'0')*100 + int(line[1]-'0')*10 + int(line[2]-'0')}
	switch line[3] {
	case ' ':
	case '-':
		r.More = true
	default:
		return Reply{}, false
	}
	r.Text = string(line[4:])
	return r, true
}

// trimEOL strips a trailing LF and a CR before it (or a lone trailing CR:
// the last line at EOF may have lost its LF).
func trimEOL(b []byte) []byte {
	if n := len(b); n > 0 && b[n-1] == '\n' {
		b = b[:n-1]
	}
	if n := len(b); n > 0 && b[n-1] == '\r' {
		b = b[:n-1]
	}
	return b
}

func isDigit(c byte) bool     { return '0' <= c && c <= '9' }
func isLetter(c byte) bool    { return 'A' <= c && c <= 'Z' || 'a' <= c && c <= 'z' }
func isDelimiter(c byte) bool { return 33 <= c && c <= 126 && !isDigit(c) }
