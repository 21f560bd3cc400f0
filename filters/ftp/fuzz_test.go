package ftp

import (
	"bytes"
	"errors"
	"io"
	"net/netip"
	"strconv"
	"strings"
	"testing"
	"testing/iotest"
)

// The fuzz targets check, for any input, that the parsers never panic,
// that accepted values round-trip through Format and Parse exactly, and
// that the fast parsers agree with the slow ones in slow_test.go on the
// value and on the error class.

// errClass maps an error to the class callers test with errors.Is.
func errClass(err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, ErrBadPort):
		return ErrBadPort
	case errors.Is(err, ErrSyntax):
		return ErrSyntax
	}
	return err
}

func FuzzParsePORT(f *testing.F) {
	for _, s := range []string{
		"192,0,2,10,4,1",          // typical
		"255,255,255,255,255,255", // every field at its maximum
		"0,0,0,0,0,0",             // port 0
		"010,000,002,010,004,001", // leading zeros, decimal
		"10,0,0,257,4,1",          // an octet netfilter would fold
		"192,0,2,10,4",            // five fields
		"192,0,2,10,4,1,7",        // seven fields
		"192,,2,10,4,1",           // empty field
		"192,0,2,10,-4,1",         // sign
		"192, 0,2,10,4,1",         // space
		"192,0,2,10,4,1x",         // trailing junk
		"1192,0,2,10,4,1",         // four digits
		"",                        // empty
		"\xff,0,0,0,0,1",          // non-ASCII
		"255,255,255,256,0,1",     // just over the limit
		"0,0,0,0,1000,1",          // four digits
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		ap, err := ParsePORT(s)
		sap, serr := slowParsePORT(s)
		if ap != sap || errClass(err) != errClass(serr) {
			t.Fatalf("ParsePORT(%q) = %v, %v; slow = %v, %v", s, ap, err, sap, serr)
		}
		if err != nil {
			if ap.IsValid() {
				t.Fatalf("ParsePORT(%q) returned %v with error %v", s, ap, err)
			}
			return
		}
		if !ap.Addr().Is4() || ap.Port() == 0 {
			t.Fatalf("ParsePORT(%q) = %v: not IPv4 or port 0", s, ap)
		}
		f := FormatPORT(ap)
		if ap2, err := ParsePORT(f); err != nil || ap2 != ap {
			t.Fatalf("ParsePORT(FormatPORT(%v) = %q) = %v, %v", ap, f, ap2, err)
		}
		// The 227 scanner must read a valid PORT argument the same way.
		if ap2, err := Parse227(s); err != nil || ap2 != ap {
			t.Fatalf("Parse227(%q) = %v, %v; ParsePORT gave %v", s, ap2, err, ap)
		}
	})
}

func Fuzz227(f *testing.F) {
	for _, s := range []string{
		"Entering Passive Mode (192,0,2,7,117,48).",   // RFC 959
		"Entering Passive Mode 192,0,2,7,117,48",      // no parentheses (RFC 1123 scan)
		"Entering Passive Mode =192,0,2,7,117,48",     // the "=" form some servers use
		"Entering Passive Mode (192,0,2,7,0,0).",      // port 0
		"Entering Passive Mode (10,0,0,257,117,48).",  // octet over 255
		"Entering Passive Mode (192,0,2,7,117,48,1).", // seven fields
		"Entering Passive Mode (192,0,2,7,117).",      // five fields
		"Entering Passive Mode (192, 0,2,7,117,48).",  // space inside
		"Entering Passive Mode v2 (192,0,2,7,117,48)", // the first digit is not the address
		"Entering Passive Mode.",                      // no digits
		"(255,255,255,256,0,1)",                       // just over the limit
		"",                                            // empty
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		ap, err := Parse227(s)
		sap, serr := slowParse227(s)
		if ap != sap || errClass(err) != errClass(serr) {
			t.Fatalf("Parse227(%q) = %v, %v; slow = %v, %v", s, ap, err, sap, serr)
		}
		if err != nil {
			return
		}
		f := Format227(ap)
		if ap2, err := Parse227(f); err != nil || ap2 != ap {
			t.Fatalf("Parse227(Format227(%v) = %q) = %v, %v", ap, f, ap2, err)
		}
		if ap2, err := ParsePORT(FormatPORT(ap)); err != nil || ap2 != ap {
			t.Fatalf("ParsePORT(FormatPORT(%v)) = %v, %v", ap, ap2, err)
		}
	})
}

// FuzzSixNumbers fuzzes the numbers of PORT and 227 rather than their
// bytes, so that the edges (255/256, 999/1000, negatives) are reached at
// once; byte mutation alone takes a long time to turn "257" into "256".
func FuzzSixNumbers(f *testing.F) {
	f.Add(192, 0, 2, 10, 4, 1)          // typical
	f.Add(255, 255, 255, 255, 255, 255) // maxima
	f.Add(0, 0, 0, 256, 0, 1)           // just over
	f.Add(0, 0, 0, 0, 0, 0)             // port 0
	f.Add(-1, 0, 0, 0, 0, 1)            // sign
	f.Add(1000, 0, 0, 0, 0, 1)          // four digits
	f.Fuzz(func(t *testing.T, a, b, c, d, e, g int) {
		v := []int{a, b, c, d, e, g}
		ss := make([]string, 6)
		valid := true
		for i, x := range v {
			ss[i] = strconv.Itoa(x)
			valid = valid && 0 <= x && x <= 255
		}
		s := strings.Join(ss, ",")
		var want netip.AddrPort
		var wantErr error
		switch {
		case !valid:
			wantErr = ErrSyntax
		case e == 0 && g == 0:
			wantErr = ErrBadPort
		default:
			want = netip.AddrPortFrom(netip.AddrFrom4([4]byte{byte(a), byte(b), byte(c), byte(d)}), uint16(e*256+g))
		}
		if got, err := ParsePORT(s); got != want || errClass(err) != wantErr {
			t.Fatalf("ParsePORT(%q) = %v, %v; want %v, %v", s, got, err, want, wantErr)
		}
		if a < 0 {
			return // 227 starts at the first digit: a leading "-" is text (see TestParse227)
		}
		text := "Entering Passive Mode (" + s + ")."
		if got, err := Parse227(text); got != want || errClass(err) != wantErr {
			t.Fatalf("Parse227(%q) = %v, %v; want %v, %v", text, got, err, want, wantErr)
		}
	})
}

func FuzzParseEPRT(f *testing.F) {
	for _, s := range []string{
		"|1|192.0.2.10|6446|",        // IPv4
		"|2|2001:db8::10|6446|",      // IPv6
		"!1!192.0.2.10!65535!",       // another delimiter, maximum port
		"|2|::1.2.3.4|1|",            // IPv4-compatible IPv6, port 1
		"|1|192.0.2.10|0|",           // port 0
		"|1|192.0.2.10|65536|",       // port over 65535
		"|3|192.0.2.10|6446|",        // unknown family
		"|2|192.0.2.10|6446|",        // family and address disagree
		"|2|::ffff:192.0.2.10|6446|", // IPv4-mapped refused for family 2
		"|2|fe80::1%eth0|6446|",      // zone
		"|1!192.0.2.10|6446|",        // inconsistent delimiter
		"|1|192.0.2.10|6446|x",       // trailing junk
		"212192.0.2.1026446",         // digit delimiter
		"",                           // empty
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		ap, err := ParseEPRT(s)
		sap, serr := slowParseEPRT(s)
		if ap != sap || errClass(err) != errClass(serr) {
			t.Fatalf("ParseEPRT(%q) = %v, %v; slow = %v, %v", s, ap, err, sap, serr)
		}
		if err != nil {
			return
		}
		if ap.Port() == 0 || ap.Addr().Zone() != "" || ap.Addr().Is4In6() {
			t.Fatalf("ParseEPRT(%q) = %v: port 0, zone or mapped", s, ap)
		}
		f := FormatEPRT(ap)
		if ap2, err := ParseEPRT(f); err != nil || ap2 != ap {
			t.Fatalf("ParseEPRT(FormatEPRT(%v) = %q) = %v, %v", ap, f, ap2, err)
		}
		if ap.Addr().Is4() {
			if ap2, err := ParsePORT(FormatPORT(ap)); err != nil || ap2 != ap {
				t.Fatalf("ParsePORT(FormatPORT(%v)) = %v, %v", ap, ap2, err)
			}
		}
	})
}

func Fuzz229(f *testing.F) {
	for _, s := range []string{
		"Entering Extended Passive Mode (|||6446|)", // RFC 2428
		"Entering Extended Passive Mode (!!!1!).",   // another delimiter, port 1, text after
		"(|||65535|)",           // maximum port
		"(|||0|)",               // port 0
		"(|||65536|)",           // port over 65535
		"(|||6446!)",            // two different delimiters
		"(|1|192.0.2.7|6446|)",  // an address where none belongs
		"(||||)",                // empty port
		"(1116446 1)",           // digit delimiter
		"Mode (ext) (|||6446|)", // the first "(" is not it
		"",                      // empty
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		p, err := Parse229(s)
		sp, serr := slowParse229(s)
		if p != sp || errClass(err) != errClass(serr) {
			t.Fatalf("Parse229(%q) = %v, %v; slow = %v, %v", s, p, err, sp, serr)
		}
		if err != nil {
			return
		}
		f := Format229(p)
		if p2, err := Parse229(f); err != nil || p2 != p {
			t.Fatalf("Parse229(Format229(%d) = %q) = %v, %v", p, f, p2, err)
		}
	})
}

func FuzzParseCommand(f *testing.F) {
	for _, s := range []string{
		"PORT 192,0,2,10,4,1\r\n",   // typical
		"epsv ALL\r\n",              // lower case, argument
		"PWD\n",                     // three letters, bare LF
		"QUIT",                      // no terminator
		"NOOP \r\n",                 // empty argument
		"PORT  1,2,3,4,5,6\r\n",     // two spaces
		" PORT 1,2,3,4,5,6\r\n",     // leading space
		"XPORT 1,2,3,4,5,6\r\n",     // five letters
		"\xff\xf4\xff\xf2ABOR\r\n",  // Telnet IP/DM before the verb
		"USER a\rb\r\r\n",           // CRs inside and doubled
		"NOOP PORT 1,2,3,4,5,6\r\n", // PORT not at the line start
		"",                          // empty
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, line []byte) {
		c, ok := ParseCommand(line)
		sc, sok := slowParseCommand(line)
		if c != sc || ok != sok {
			t.Fatalf("ParseCommand(%q) = %+v, %v; slow = %+v, %v", line, c, ok, sc, sok)
		}
		if !ok {
			return
		}
		if !bytes.EqualFold(line[:len(c.Verb)], []byte(c.Verb)) || strings.ToUpper(c.Verb) != c.Verb {
			t.Fatalf("ParseCommand(%q): verb %q is not the upper-cased line start", line, c.Verb)
		}
		// Formatting the command back gives a line that parses the same.
		back := c.Verb + "\r\n"
		if c.Arg != "" {
			back = c.Verb + " " + c.Arg + "\r\n"
		}
		if c2, ok := ParseCommand([]byte(back)); !ok || c2 != c {
			t.Fatalf("ParseCommand(%q) = %+v, %v; want %+v", back, c2, ok, c)
		}
		// A reply never parses as a command and the other way round.
		if _, ok := ParseReply(line); ok {
			t.Fatalf("%q parses as both a command and a reply", line)
		}
	})
}

func FuzzParseReply(f *testing.F) {
	for _, s := range []string{
		"227 Entering Passive Mode (192,0,2,7,117,48).\r\n", // typical
		"220-Welcome\r\n", // first line of a multi-line reply
		"220\r\n",         // bare code
		" more text\r\n",  // continuation text
		"2270 x\r\n",      // four digits
		"",                // empty
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, line []byte) {
		r, ok := ParseReply(line)
		if !ok {
			if r != (Reply{}) {
				t.Fatalf("ParseReply(%q) = %+v with false", line, r)
			}
			return
		}
		sep := " "
		if r.More {
			sep = "-"
		}
		back := string(line[:3]) + sep + r.Text
		if !strings.HasPrefix(string(line), back) || r.Code < 0 || r.Code > 999 {
			t.Fatalf("ParseReply(%q) = %+v does not describe the line", line, r)
		}
		if r2, ok := ParseReply([]byte(back + "\r\n")); !ok || r2 != r {
			t.Fatalf("ParseReply(%q) = %+v, %v; want %+v", back, r2, ok, r)
		}
	})
}

// FuzzLineReader reads data split into reads of fuzzed sizes and checks the
// lines against slowReadLines, which reads it whole.
func FuzzLineReader(f *testing.F) {
	long := strings.Repeat("a", PieceSize)
	for _, s := range []struct {
		data  string
		sizes string
	}{
		{"USER anonymous\r\nPASS x\r\nQUIT\r\n", "\x01"}, // one byte per read
		{"A\nB\r\nC", "\x03\x05"},                        // bare LF, EOF mid-line
		{long[2:] + "\r\n" + long[1:] + "\r\n", "\x40"},  // PieceSize, then PieceSize+1
		{long, "\xff"},                                     // no LF at all
		{"NOOP\r\nPO\x00RT\r\n", "\x02"},                   // NUL in the second line
		{strings.Repeat("NOOP\r\n", 1000), "\x00\x07\xff"}, // past the buffer; 0 = an empty read
	} {
		f.Add([]byte(s.data), []byte(s.sizes))
	}
	f.Fuzz(func(t *testing.T, data, sizes []byte) {
		if len(sizes) == 0 {
			sizes = []byte{0xff}
		}
		if len(sizes) > 64 {
			sizes = sizes[:64]
		}
		r := &sizedReader{data: data, sizes: sizes}
		lr := NewLineReader(r)
		var got []slowLine
		for len(got) <= len(data)+1 {
			line, more, err := lr.ReadLine()
			got = append(got, slowLine{string(line), more, err})
			if err != nil {
				break
			}
		}
		if want := slowReadLines(data); !equalLines(got, want) {
			t.Fatalf("reads %v: %s", sizes, diffLines(got, want))
		}
		// The same through the iotest readers.
		for _, rd := range []io.Reader{iotest.DataErrReader(bytes.NewReader(data)), iotest.HalfReader(bytes.NewReader(data))} {
			got := readAll(t, NewLineReader(rd))
			if want := slowReadLines(data); !equalLines(got, want) {
				t.Fatal(diffLines(got, want))
			}
		}
	})
}

// sizedReader returns data in reads whose sizes cycle through sizes, and
// io.EOF with the last bytes. A 0 is an empty read (0, nil), but never
// twice in a row, so that the reader always makes progress.
type sizedReader struct {
	data  []byte
	sizes []byte
	i     int
	empty bool // the last read was empty
}

func (s *sizedReader) Read(p []byte) (int, error) {
	want := int(s.sizes[s.i%len(s.sizes)])
	s.i++
	if want == 0 && s.empty {
		want = 1
	}
	n := min(want, len(p), len(s.data))
	s.empty = n == 0
	copy(p, s.data[:n])
	s.data = s.data[n:]
	if len(s.data) == 0 {
		return n, io.EOF
	}
	return n, nil
}

// TestSlowParsersAgreeOnValid checks the slow parsers themselves on valid
// input, so that a differential fuzz run cannot pass by both sides
// refusing everything.
func TestSlowParsersAgreeOnValid(t *testing.T) {
	cases := []struct {
		name string
		got  netip.AddrPort
		want string
	}{
		{"PORT", first(slowParsePORT("192,0,2,10,4,1")), "192.0.2.10:1025"},
		{"227", first(slowParse227("Entering Passive Mode (192,0,2,7,117,48).")), "192.0.2.7:30000"},
		{"EPRT", first(slowParseEPRT("|2|2001:db8::10|6446|")), "[2001:db8::10]:6446"},
	}
	for _, c := range cases {
		if c.got.String() != c.want {
			t.Errorf("%s: slow parser gave %v, want %s", c.name, c.got, c.want)
		}
	}
	if p, err := slowParse229("(|||6446|)"); p != 6446 || err != nil {
		t.Errorf("slowParse229 = %v, %v", p, err)
	}
	if c, ok := slowParseCommand([]byte("port 1,2,3,4,5,6\r\n")); !ok || c != (Command{"PORT", "1,2,3,4,5,6"}) {
		t.Errorf("slowParseCommand = %+v, %v", c, ok)
	}
}

func first[T any](v T, _ error) T { return v }
