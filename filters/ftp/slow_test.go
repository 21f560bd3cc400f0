package ftp

import (
	"bytes"
	"fmt"
	"io"
	"net/netip"
	"regexp"
	"strconv"
	"strings"
)

// This file holds slow, obviously-correct reference parsers, written
// differently from the real ones (split and regexp instead of one scan), for
// the differential fuzz tests. They return the same values and the same
// error class (nil, ErrSyntax or ErrBadPort) as the real parsers.

var slowNumber = regexp.MustCompile(`^[0-9]{1,3}$`)

// slowParsePORT is ParsePORT by strings.Split and strconv.
func slowParsePORT(arg string) (netip.AddrPort, error) {
	fields := strings.Split(arg, ",")
	if len(fields) != 6 {
		return netip.AddrPort{}, ErrSyntax
	}
	var v [6]byte
	for i, f := range fields {
		if !slowNumber.MatchString(f) {
			return netip.AddrPort{}, ErrSyntax
		}
		n, err := strconv.Atoi(f)
		if err != nil || n > 255 {
			return netip.AddrPort{}, ErrSyntax
		}
		v[i] = byte(n)
	}
	port := int(v[4])*256 + int(v[5])
	if port == 0 {
		return netip.AddrPort{}, ErrBadPort
	}
	ip := netip.MustParseAddr(strconv.Itoa(int(v[0])) + "." + strconv.Itoa(int(v[1])) + "." +
		strconv.Itoa(int(v[2])) + "." + strconv.Itoa(int(v[3])))
	return netip.AddrPortFrom(ip, uint16(port)), nil
}

// slowParse227 takes, from the first digit, the longest run of digits and
// commas, and wants it to be a valid PORT argument.
func slowParse227(text string) (netip.AddrPort, error) {
	i := strings.IndexAny(text, "0123456789")
	if i < 0 {
		return netip.AddrPort{}, ErrSyntax
	}
	run := text[i:]
	if j := strings.IndexFunc(run, func(r rune) bool { return r != ',' && (r < '0' || r > '9') }); j >= 0 {
		run = run[:j]
	}
	return slowParsePORT(run)
}

// slowParseEPRT splits on the delimiter and checks each piece.
func slowParseEPRT(arg string) (netip.AddrPort, error) {
	if arg == "" {
		return netip.AddrPort{}, ErrSyntax
	}
	d := arg[0]
	if d < 33 || d > 126 || strings.ContainsRune("0123456789", rune(d)) {
		return netip.AddrPort{}, ErrSyntax
	}
	parts := strings.Split(arg, string(d))
	// "" fam addr port "" : exactly four delimiters, first and last at the ends.
	if len(parts) != 5 || parts[0] != "" || parts[4] != "" {
		return netip.AddrPort{}, ErrSyntax
	}
	addr, err := netip.ParseAddr(parts[2])
	if err != nil {
		return netip.AddrPort{}, ErrSyntax
	}
	switch {
	case parts[1] == "1" && addr.Is4():
	case parts[1] == "2" && addr.Is6() && !addr.Is4In6() && addr.Zone() == "":
	default:
		return netip.AddrPort{}, ErrSyntax
	}
	port, err := slowPort(parts[3])
	if err != nil {
		return netip.AddrPort{}, err
	}
	return netip.AddrPortFrom(addr, port), nil
}

var slowPortRE = regexp.MustCompile(`^[0-9]{1,5}$`)

func slowPort(s string) (uint16, error) {
	if !slowPortRE.MatchString(s) {
		return 0, ErrSyntax
	}
	n, err := strconv.ParseUint(s, 10, 16)
	if err != nil {
		return 0, ErrSyntax
	}
	if n == 0 {
		return 0, ErrBadPort
	}
	return uint16(n), nil
}

// slow229 is the 229 grammar after the first "(": four equal non-digit
// delimiters around an all-digit port, then ")".
var slow229 = regexp.MustCompile(`^\(([!-/:-~])([!-/:-~])([!-/:-~])([0-9]{1,5})([!-/:-~])\)`)

func slowParse229(text string) (uint16, error) {
	i := strings.Index(text, "(")
	if i < 0 {
		return 0, ErrSyntax
	}
	m := slow229.FindStringSubmatch(text[i:])
	if m == nil || m[1] != m[2] || m[1] != m[3] || m[1] != m[5] {
		return 0, ErrSyntax
	}
	return slowPort(m[4])
}

var slowCommand = regexp.MustCompile(`(?s)^([A-Za-z]{3,4})(?: (.*))?$`)

// slowParseCommand is ParseCommand by regexp.
func slowParseCommand(line []byte) (Command, bool) {
	s := strings.TrimSuffix(string(line), "\n")
	s = strings.TrimSuffix(s, "\r")
	m := slowCommand.FindStringSubmatch(s)
	if m == nil {
		return Command{}, false
	}
	return Command{Verb: strings.ToUpper(m[1]), Arg: m[2]}, true
}

// slowLine is one result of a LineReader.
type slowLine struct {
	line string
	more bool
	err  error
}

func (l slowLine) String() string { return fmt.Sprintf("{%q more=%v %v}", l.line, l.more, l.err) }

// slowReadLines is what a LineReader returns for the whole of data followed
// by EOF, up to and including the first error: the lines one by one, where
// for each the first event among "NUL", "LF" and "PieceSize bytes without
// either" (a piece, the line going on) decides.
func slowReadLines(data []byte) []slowLine {
	var out []slowLine
	for {
		w := data[:min(len(data), PieceSize)]
		lf := bytes.IndexByte(w, '\n')
		nul := bytes.IndexByte(w, 0)
		switch {
		case nul >= 0 && (lf < 0 || nul < lf):
			return append(out, slowLine{"", false, ErrNUL})
		case lf >= 0:
			out = append(out, slowLine{string(data[:lf+1]), false, nil})
			data = data[lf+1:]
		case len(data) >= PieceSize:
			out = append(out, slowLine{string(data[:PieceSize]), true, nil})
			data = data[PieceSize:]
		default:
			return append(out, slowLine{string(data), false, io.EOF})
		}
	}
}
