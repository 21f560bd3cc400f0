package ftp

import (
	"errors"
	"net/netip"
	"strings"
	"testing"
)

// checkErr checks the error class a parser returned (nil, ErrSyntax or
// ErrBadPort) and the package prefix of its message.
func checkErr(t testing.TB, got, want error) {
	t.Helper()
	switch {
	case want == nil && got != nil:
		t.Fatalf("unexpected error %v", got)
	case want != nil && !errors.Is(got, want):
		t.Fatalf("error = %v, want %v", got, want)
	case got != nil && !strings.HasPrefix(got.Error(), "filters/ftp: "):
		t.Fatalf("error %q lacks the package prefix", got)
	}
}

func TestParseCommand(t *testing.T) {
	tests := []struct {
		name string
		line string
		want Command
		ok   bool
	}{
		{"port crlf", "PORT 192,0,2,10,4,1\r\n", Command{"PORT", "192,0,2,10,4,1"}, true},
		{"port bare lf", "PORT 192,0,2,10,4,1\n", Command{"PORT", "192,0,2,10,4,1"}, true},
		{"no terminator (EOF)", "PORT 1,2,3,4,5,6", Command{"PORT", "1,2,3,4,5,6"}, true},
		{"lower case", "port 1,2,3,4,5,6\r\n", Command{"PORT", "1,2,3,4,5,6"}, true},
		{"mixed case", "ePsV\r\n", Command{"EPSV", ""}, true},
		{"three letters", "PWD\r\n", Command{"PWD", ""}, true},
		{"three letters with arg", "cwd /pub\r\n", Command{"CWD", "/pub"}, true},
		{"unknown verb", "XYZW arg\r\n", Command{"XYZW", "arg"}, true},
		{"epsv all", "EPSV ALL\r\n", Command{"EPSV", "ALL"}, true},
		{"trailing space", "NOOP \r\n", Command{"NOOP", ""}, true},
		{"two spaces kept in arg", "PORT  1,2,3,4,5,6\r\n", Command{"PORT", " 1,2,3,4,5,6"}, true},
		{"arg keeps inner cr", "USER a\rb\r\n", Command{"USER", "a\rb"}, true},
		{"only one cr stripped", "USER a\r\r\n", Command{"USER", "a\r"}, true},
		{"lone cr at eof", "QUIT\r", Command{"QUIT", ""}, true},

		{"empty", "", Command{}, false},
		{"crlf only", "\r\n", Command{}, false},
		{"leading space", " PORT 1,2,3,4,5,6\r\n", Command{}, false},
		{"telnet IAC before verb", "\xff\xf4\xff\xf2ABOR\r\n", Command{}, false},
		{"two letters", "AB\r\n", Command{}, false},
		{"five letters", "PORTS 1,2,3,4,5,6\r\n", Command{}, false},
		{"digit in verb", "P0RT 1\r\n", Command{}, false},
		{"tab separator", "PORT\t1,2,3,4,5,6\r\n", Command{}, false},
		{"verb then cr inside", "PASV\rX\r\n", Command{}, false},
		{"command not at line start", "xx PORT 1,2,3,4,5,6\r\n", Command{}, false},
		{"non-ascii letter", "PÖRT 1\r\n", Command{}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, ok := ParseCommand([]byte(tt.line))
			if ok != tt.ok || got != tt.want {
				t.Fatalf("ParseCommand(%q) = %+v, %v; want %+v, %v", tt.line, got, ok, tt.want, tt.ok)
			}
		})
	}
}

func TestParsePORT(t *testing.T) {
	tests := []struct {
		name string
		arg  string
		want netip.AddrPort
		err  error
	}{
		{"typical", "192,0,2,10,4,1", netip.MustParseAddrPort("192.0.2.10:1025"), nil},
		{"max octets", "255,255,255,255,255,255", netip.MustParseAddrPort("255.255.255.255:65535"), nil},
		{"zero address", "0,0,0,0,0,1", netip.MustParseAddrPort("0.0.0.0:1"), nil},
		{"privileged port parses", "192,0,2,10,0,25", netip.MustParseAddrPort("192.0.2.10:25"), nil},
		{"leading zeros decimal", "010,000,002,010,004,001", netip.MustParseAddrPort("10.0.2.10:1025"), nil},
		{"port high byte only", "1,2,3,4,1,0", netip.MustParseAddrPort("1.2.3.4:256"), nil},

		{"port 0", "192,0,2,10,0,0", netip.AddrPort{}, ErrBadPort},
		{"octet 256", "192,0,2,256,4,1", netip.AddrPort{}, ErrSyntax},
		{"octet 257 (netfilter folds it)", "10,0,0,257,4,1", netip.AddrPort{}, ErrSyntax},
		{"port byte 256", "192,0,2,10,256,1", netip.AddrPort{}, ErrSyntax},
		{"four digits", "0192,0,2,10,4,1", netip.AddrPort{}, ErrSyntax},
		{"five fields", "192,0,2,10,4", netip.AddrPort{}, ErrSyntax},
		{"seven fields", "192,0,2,10,4,1,7", netip.AddrPort{}, ErrSyntax},
		{"empty field", "192,,2,10,4,1", netip.AddrPort{}, ErrSyntax},
		{"empty last field", "192,0,2,10,4,", netip.AddrPort{}, ErrSyntax},
		{"trailing comma", "192,0,2,10,4,1,", netip.AddrPort{}, ErrSyntax},
		{"minus sign", "192,0,2,10,-4,1", netip.AddrPort{}, ErrSyntax},
		{"plus sign", "+192,0,2,10,4,1", netip.AddrPort{}, ErrSyntax},
		{"space after comma", "192, 0,2,10,4,1", netip.AddrPort{}, ErrSyntax},
		{"leading space", " 192,0,2,10,4,1", netip.AddrPort{}, ErrSyntax},
		{"trailing space", "192,0,2,10,4,1 ", netip.AddrPort{}, ErrSyntax},
		{"trailing junk", "192,0,2,10,4,1x", netip.AddrPort{}, ErrSyntax},
		{"trailing cr", "192,0,2,10,4,1\r", netip.AddrPort{}, ErrSyntax},
		{"dots", "192.0.2.10,4,1", netip.AddrPort{}, ErrSyntax},
		{"hex", "0xc0,0,2,10,4,1", netip.AddrPort{}, ErrSyntax},
		{"empty", "", netip.AddrPort{}, ErrSyntax},
		{"parenthesised", "(192,0,2,10,4,1)", netip.AddrPort{}, ErrSyntax},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParsePORT(tt.arg)
			checkErr(t, err, tt.err)
			if got != tt.want {
				t.Fatalf("ParsePORT(%q) = %v, want %v", tt.arg, got, tt.want)
			}
		})
	}
}

// TestErrorDetail checks that an error says where the input went wrong.
func TestErrorDetail(t *testing.T) {
	tests := []struct {
		name string
		err  error
		want []string
	}{
		{"PORT octet", second(ParsePORT("10,0,0,257,4,1")), []string{`"10,0,0,257,4,1"`, "field 4", "over 255"}},
		{"PORT seven", second(ParsePORT("1,2,3,4,5,6,7")), []string{"field 7", "more than six fields"}},
		{"PORT five", second(ParsePORT("1,2,3,4,5")), []string{"field 6", "fewer than six fields"}},
		{"227 none", second(Parse227("Passive")), []string{"227", "no digits"}},
		{"EPRT family", second(ParseEPRT("|3|1.2.3.4|5|")), []string{"EPRT", "family"}},
		{"229 port", second(Parse229("(|||65536|)")), []string{"229", "over 65535"}},
		{"quoted input", second(ParsePORT("1,2\r\n")), []string{`"1,2\r\n"`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for _, w := range tt.want {
				if !strings.Contains(tt.err.Error(), w) {
					t.Errorf("error %q does not contain %q", tt.err, w)
				}
			}
		})
	}
}

func second[T any](_ T, err error) error { return err }

func TestParse227(t *testing.T) {
	tests := []struct {
		name string
		text string
		want netip.AddrPort
		err  error
	}{
		{"rfc 959 form", "Entering Passive Mode (192,0,2,7,117,48).", netip.MustParseAddrPort("192.0.2.7:30000"), nil},
		{"no parentheses (rfc 1123 scan)", "Entering Passive Mode 192,0,2,7,117,48", netip.MustParseAddrPort("192.0.2.7:30000"), nil},
		{"equals sign form", "Entering Passive Mode =192,0,2,7,117,48", netip.MustParseAddrPort("192.0.2.7:30000"), nil},
		{"numbers only", "192,0,2,7,117,48", netip.MustParseAddrPort("192.0.2.7:30000"), nil},
		{"text after", "=192,0,2,7,117,48 ok thanks", netip.MustParseAddrPort("192.0.2.7:30000"), nil},
		{"leading zeros", "(192,000,002,007,117,048)", netip.MustParseAddrPort("192.0.2.7:30000"), nil},
		{"max", "(255,255,255,255,255,255)", netip.MustParseAddrPort("255.255.255.255:65535"), nil},

		{"port 0", "Entering Passive Mode (192,0,2,7,0,0).", netip.AddrPort{}, ErrBadPort},
		{"no digits", "Entering Passive Mode.", netip.AddrPort{}, ErrSyntax},
		{"empty", "", netip.AddrPort{}, ErrSyntax},
		{"octet 257", "Entering Passive Mode (10,0,0,257,117,48).", netip.AddrPort{}, ErrSyntax},
		{"five fields", "Entering Passive Mode (192,0,2,7,117).", netip.AddrPort{}, ErrSyntax},
		{"seven fields", "Entering Passive Mode (192,0,2,7,117,48,1).", netip.AddrPort{}, ErrSyntax},
		{"trailing comma", "Entering Passive Mode (192,0,2,7,117,48,).", netip.AddrPort{}, ErrSyntax},
		{"empty field", "Entering Passive Mode (192,0,,7,117,48).", netip.AddrPort{}, ErrSyntax},
		{"four digits", "Entering Passive Mode (1192,0,2,7,117,48).", netip.AddrPort{}, ErrSyntax},
		{"space inside", "Entering Passive Mode (192, 0,2,7,117,48).", netip.AddrPort{}, ErrSyntax},
		{"minus sign", "Entering Passive Mode (192,0,2,7,-117,48).", netip.AddrPort{}, ErrSyntax},
		{"sign before the first digit is text", "Entering Passive Mode (-192,0,2,7,117,48).", netip.MustParseAddrPort("192.0.2.7:30000"), nil},
		{"first digit elsewhere", "Entering Passive Mode v2 (192,0,2,7,117,48).", netip.AddrPort{}, ErrSyntax},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Parse227(tt.text)
			checkErr(t, err, tt.err)
			if got != tt.want {
				t.Fatalf("Parse227(%q) = %v, want %v", tt.text, got, tt.want)
			}
		})
	}
}

func TestParseEPRT(t *testing.T) {
	tests := []struct {
		name string
		arg  string
		want netip.AddrPort
		err  error
	}{
		{"ipv4", "|1|192.0.2.10|6446|", netip.MustParseAddrPort("192.0.2.10:6446"), nil},
		{"ipv6", "|2|2001:db8::10|6446|", netip.MustParseAddrPort("[2001:db8::10]:6446"), nil},
		{"ipv6 upper case", "|2|2001:DB8::A|5282|", netip.MustParseAddrPort("[2001:db8::a]:5282"), nil},
		{"other delimiter", "!1!192.0.2.10!6446!", netip.MustParseAddrPort("192.0.2.10:6446"), nil},
		{"delimiter tilde (126)", "~2~::1~65535~", netip.MustParseAddrPort("[::1]:65535"), nil},
		{"delimiter ! (33)", "!1!192.0.2.10!1!", netip.MustParseAddrPort("192.0.2.10:1"), nil},
		{"port leading zeros", "|1|192.0.2.10|01025|", netip.MustParseAddrPort("192.0.2.10:1025"), nil},
		{"privileged port parses", "|1|192.0.2.10|21|", netip.MustParseAddrPort("192.0.2.10:21"), nil},

		{"port 0", "|1|192.0.2.10|0|", netip.AddrPort{}, ErrBadPort},
		{"port 00000", "|1|192.0.2.10|00000|", netip.AddrPort{}, ErrBadPort},
		{"port 65536", "|1|192.0.2.10|65536|", netip.AddrPort{}, ErrSyntax},
		{"port six digits", "|1|192.0.2.10|001025|", netip.AddrPort{}, ErrSyntax},
		{"port sign", "|1|192.0.2.10|+1025|", netip.AddrPort{}, ErrSyntax},
		{"port space", "|1|192.0.2.10| 1025|", netip.AddrPort{}, ErrSyntax},
		{"empty port", "|1|192.0.2.10||", netip.AddrPort{}, ErrSyntax},
		{"family 3", "|3|192.0.2.10|6446|", netip.AddrPort{}, ErrSyntax},
		{"family 01", "|01|192.0.2.10|6446|", netip.AddrPort{}, ErrSyntax},
		{"empty family", "||192.0.2.10|6446|", netip.AddrPort{}, ErrSyntax},
		{"family 1 with ipv6", "|1|2001:db8::10|6446|", netip.AddrPort{}, ErrSyntax},
		{"family 2 with ipv4", "|2|192.0.2.10|6446|", netip.AddrPort{}, ErrSyntax},
		{"family 2 with ipv4-mapped", "|2|::ffff:192.0.2.10|6446|", netip.AddrPort{}, ErrSyntax},
		{"family 2 with zone", "|2|fe80::1%eth0|6446|", netip.AddrPort{}, ErrSyntax},
		{"ipv4 leading zeros", "|1|192.000.2.10|6446|", netip.AddrPort{}, ErrSyntax},
		{"octet 256", "|1|192.0.2.256|6446|", netip.AddrPort{}, ErrSyntax},
		{"hostname", "|1|ftp.example|6446|", netip.AddrPort{}, ErrSyntax},
		{"inconsistent delimiter", "|1!192.0.2.10|6446|", netip.AddrPort{}, ErrSyntax},
		{"inconsistent last delimiter", "|1|192.0.2.10|6446!", netip.AddrPort{}, ErrSyntax},
		{"three delimiters", "|1|192.0.2.10|6446", netip.AddrPort{}, ErrSyntax},
		{"five delimiters", "|1|192.0.2.10|6446||", netip.AddrPort{}, ErrSyntax},
		{"trailing junk", "|1|192.0.2.10|6446|x", netip.AddrPort{}, ErrSyntax},
		{"trailing cr", "|1|192.0.2.10|6446|\r", netip.AddrPort{}, ErrSyntax},
		{"leading space", " |1|192.0.2.10|6446|", netip.AddrPort{}, ErrSyntax},
		{"delimiter space (32)", " 1 192.0.2.10 6446 ", netip.AddrPort{}, ErrSyntax},
		{"delimiter DEL (127)", "\x7f1\x7f192.0.2.10\x7f6446\x7f", netip.AddrPort{}, ErrSyntax},
		{"delimiter digit", "212192.0.2.1026446", netip.AddrPort{}, ErrSyntax},
		{"delimiter inside address", ":2:::1:6446:", netip.AddrPort{}, ErrSyntax},
		{"empty", "", netip.AddrPort{}, ErrSyntax},
		{"delimiter only", "|", netip.AddrPort{}, ErrSyntax},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseEPRT(tt.arg)
			checkErr(t, err, tt.err)
			if got != tt.want {
				t.Fatalf("ParseEPRT(%q) = %v, want %v", tt.arg, got, tt.want)
			}
		})
	}
}

func TestParse229(t *testing.T) {
	tests := []struct {
		name string
		text string
		want uint16
		err  error
	}{
		{"rfc 2428 form", "Entering Extended Passive Mode (|||6446|)", 6446, nil},
		{"text after", "Entering Extended Passive Mode (|||6446|).", 6446, nil},
		{"other delimiter", "EPSV ok (!!!65535!)", 65535, nil},
		{"numbers before the parenthesis", "229 ok 1 2 3 (|||1025|)", 1025, nil},
		{"parenthesis only", "(|||1|)", 1, nil},
		{"port leading zeros", "(|||01025|)", 1025, nil},

		{"port 0", "Entering Extended Passive Mode (|||0|)", 0, ErrBadPort},
		{"port 65536", "Entering Extended Passive Mode (|||65536|)", 0, ErrSyntax},
		{"port six digits", "(|||065535|)", 0, ErrSyntax},
		{"two different delimiters", "Entering Extended Passive Mode (|||6446!)", 0, ErrSyntax},
		{"two different leading delimiters", "Entering Extended Passive Mode (|!|6446|)", 0, ErrSyntax},
		{"two delimiters before port", "Entering Extended Passive Mode (||6446|)", 0, ErrSyntax},
		{"address given", "Entering Extended Passive Mode (|1|192.0.2.7|6446|)", 0, ErrSyntax},
		{"no parenthesis", "Entering Extended Passive Mode |||6446|", 0, ErrSyntax},
		{"no closing parenthesis", "Entering Extended Passive Mode (|||6446|", 0, ErrSyntax},
		{"junk before closing", "(|||6446| )", 0, ErrSyntax},
		{"empty port", "(||||)", 0, ErrSyntax},
		{"sign", "(|||+6446|)", 0, ErrSyntax},
		{"space in port", "(||| 6446|)", 0, ErrSyntax},
		{"delimiter space", "(   6446 )", 0, ErrSyntax},
		{"delimiter digit", "(1116446 1)", 0, ErrSyntax},
		{"truncated", "(||", 0, ErrSyntax},
		{"empty", "", 0, ErrSyntax},
		{"first parenthesis wins", "Mode (ext) (|||6446|)", 0, ErrSyntax},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Parse229(tt.text)
			checkErr(t, err, tt.err)
			if got != tt.want {
				t.Fatalf("Parse229(%q) = %v, want %v", tt.text, got, tt.want)
			}
		})
	}
}

func TestParseReply(t *testing.T) {
	tests := []struct {
		name string
		line string
		want Reply
		ok   bool
	}{
		{"227", "227 Entering Passive Mode (192,0,2,7,117,48).\r\n", Reply{227, "Entering Passive Mode (192,0,2,7,117,48).", false}, true},
		{"bare lf", "200 PORT command successful.\n", Reply{200, "PORT command successful.", false}, true},
		{"multi-line first", "220-Welcome\r\n", Reply{220, "Welcome", true}, true},
		{"empty text", "226 \r\n", Reply{226, "", false}, true},
		{"no terminator (EOF)", "221 Bye", Reply{221, "Bye", false}, true},
		{"code 000", "000 odd\r\n", Reply{0, "odd", false}, true},
		{"code 999", "999 odd\r\n", Reply{999, "odd", false}, true},

		{"empty", "", Reply{}, false},
		{"bare code", "220\r\n", Reply{}, false},
		{"continuation text", " more text\r\n", Reply{}, false},
		{"continuation without code", "Welcome to the server\r\n", Reply{}, false},
		{"two digits", "22 x\r\n", Reply{}, false},
		{"four digits", "2270 x\r\n", Reply{}, false},
		{"bad separator", "227:Entering\r\n", Reply{}, false},
		{"leading space", " 227 x\r\n", Reply{}, false},
		{"letter in code", "2x7 x\r\n", Reply{}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, ok := ParseReply([]byte(tt.line))
			if ok != tt.ok || got != tt.want {
				t.Fatalf("ParseReply(%q) = %+v, %v; want %+v, %v", tt.line, got, ok, tt.want, tt.ok)
			}
		})
	}
}

func TestFormat(t *testing.T) {
	v4 := netip.MustParseAddrPort("192.0.2.10:1025")
	mapped := netip.MustParseAddrPort("[::ffff:192.0.2.10]:1025")
	v6 := netip.MustParseAddrPort("[2001:db8::10]:6446")
	zoned := netip.AddrPortFrom(netip.MustParseAddr("fe80::1%eth0"), 6446)
	tests := []struct {
		name, got, want string
	}{
		{"PORT", FormatPORT(v4), "192,0,2,10,4,1"},
		{"PORT mapped", FormatPORT(mapped), "192,0,2,10,4,1"},
		{"PORT max", FormatPORT(netip.MustParseAddrPort("255.255.255.255:65535")), "255,255,255,255,255,255"},
		{"PORT zero", FormatPORT(netip.MustParseAddrPort("0.0.0.0:0")), "0,0,0,0,0,0"},
		{"227", Format227(v4), "Entering Passive Mode (192,0,2,10,4,1)."},
		{"227 max", Format227(netip.MustParseAddrPort("255.255.255.255:65535")), "Entering Passive Mode (255,255,255,255,255,255)."},
		{"EPRT v4", FormatEPRT(v4), "|1|192.0.2.10|1025|"},
		{"EPRT mapped", FormatEPRT(mapped), "|1|192.0.2.10|1025|"},
		{"EPRT v6", FormatEPRT(v6), "|2|2001:db8::10|6446|"},
		{"EPRT zone dropped", FormatEPRT(zoned), "|2|fe80::1|6446|"},
		{"229", Format229(6446), "Entering Extended Passive Mode (|||6446|)"},
		{"229 max", Format229(65535), "Entering Extended Passive Mode (|||65535|)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.got != tt.want {
				t.Fatalf("got %q, want %q", tt.got, tt.want)
			}
		})
	}
}

func TestFormatPanics(t *testing.T) {
	tests := []struct {
		name string
		f    func()
	}{
		{"PORT ipv6", func() { FormatPORT(netip.MustParseAddrPort("[2001:db8::1]:1025")) }},
		{"PORT zero AddrPort", func() { FormatPORT(netip.AddrPort{}) }},
		{"227 ipv6", func() { Format227(netip.MustParseAddrPort("[2001:db8::1]:1025")) }},
		{"EPRT zero AddrPort", func() { FormatEPRT(netip.AddrPort{}) }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			defer func() {
				if recover() == nil {
					t.Fatal("no panic")
				}
			}()
			tt.f()
		})
	}
}

func TestPrivileged(t *testing.T) {
	for _, tt := range []struct {
		port uint16
		want bool
	}{{0, true}, {20, true}, {21, true}, {1023, true}, {1024, false}, {65535, false}} {
		if got := Privileged(tt.port); got != tt.want {
			t.Errorf("Privileged(%d) = %v, want %v", tt.port, got, tt.want)
		}
	}
}

// TestRoundTrip checks that formatting and parsing agree across the port
// and octet edges.
func TestRoundTrip(t *testing.T) {
	ports := []uint16{1, 255, 256, 1023, 1024, 30000, 65534, 65535}
	addrs := []string{"0.0.0.0", "192.0.2.10", "255.255.255.255", "::", "::1", "2001:db8::10", "::1.2.3.4"}
	for _, a := range addrs {
		for _, p := range ports {
			ap := netip.AddrPortFrom(netip.MustParseAddr(a), p)
			if got, err := ParseEPRT(FormatEPRT(ap)); err != nil || got != ap {
				t.Errorf("ParseEPRT(FormatEPRT(%v)) = %v, %v", ap, got, err)
			}
			if !ap.Addr().Is4() {
				continue
			}
			if got, err := ParsePORT(FormatPORT(ap)); err != nil || got != ap {
				t.Errorf("ParsePORT(FormatPORT(%v)) = %v, %v", ap, got, err)
			}
			if got, err := Parse227(Format227(ap)); err != nil || got != ap {
				t.Errorf("Parse227(Format227(%v)) = %v, %v", ap, got, err)
			}
		}
	}
	for _, p := range ports {
		if got, err := Parse229(Format229(p)); err != nil || got != p {
			t.Errorf("Parse229(Format229(%d)) = %v, %v", p, got, err)
		}
	}
}

// TestNoAllocs checks that the parsers on the per-line path do not
// allocate when they succeed.
func TestNoAllocs(t *testing.T) {
	tests := []struct {
		name string
		f    func()
	}{
		{"ParsePORT", func() { _, _ = ParsePORT("192,0,2,10,4,1") }},
		{"Parse227", func() { _, _ = Parse227("Entering Passive Mode (192,0,2,7,117,48).") }},
		{"ParseEPRT v4", func() { _, _ = ParseEPRT("|1|192.0.2.10|6446|") }},
		{"ParseEPRT v6", func() { _, _ = ParseEPRT("|2|2001:db8::10|6446|") }},
		{"Parse229", func() { _, _ = Parse229("Entering Extended Passive Mode (|||6446|)") }},
		{"ParseCommand known verb, no arg", func() { _, _ = ParseCommand([]byte("pasv\r\n")) }},
		{"ParseReply no text", func() { _, _ = ParseReply([]byte("226 \r\n")) }},
		{"Privileged", func() { _ = Privileged(1024) }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if n := testing.AllocsPerRun(100, tt.f); n != 0 {
				t.Fatalf("%v allocations per run, want 0", n)
			}
		})
	}
}
