package sip_test

import (
	"bytes"
	"reflect"
	"regexp"
	"testing"

	"github.com/fwx-dev/fwx/filters/sip"
)

// slowStart is a reference for what starts a SIP message, built on a
// regular expression: after leading line breaks, a status line of SIP/2.0
// or a request line ending in SIP/2.0.
var slowStart = regexp.MustCompile(`^[\r\n]*(?:SIP/2\.0 |[!%'*+\-.0-9A-Z_` + "`" + `a-z~]+[ \t]+[^ \t\r\n]+[ \t]+SIP/2\.0[ \t]*\r?(?:\n|$))`)

// FuzzParse: Parse never panics; what it takes for SIP agrees with the
// reference about where SIP starts; a message it accepts, written out
// again, parses to the same message.
func FuzzParse(f *testing.F) {
	for _, s := range []string{
		invite,
		"SIP/2.0 200 OK\r\nv: SIP/2.0/UDP 10.0.0.2\r\nf: a\r\nt: b\r\ni: x\r\nCSeq:\r\n 1 REGISTER\r\nl: 0\r\n\r\n",
		"POST / HTTP/1.1\r\nContent-Length: 40\r\n\r\nREGISTER sip:x SIP/2.0\r\nContact: <sip:a>\r\n\r\n",
		"\r\n\r\n",
		"OPTIONS sip:x SIP/2.0\nVia: SIP/2.0/UDP h\nFrom: a\nTo: b\nCall-ID: c\nCSeq: 1 OPTIONS\nContent-Length: 3\n\nabcdef",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := sip.Parse(b, lim)
		if err == nil && !slowStart.Match(b) {
			t.Fatalf("%q: parsed, but the reference says it does not start as SIP", b)
		}
		if err != nil {
			return
		}
		again, err := sip.Parse(m.Append(nil), lim)
		if err != nil {
			t.Fatalf("%q: written out as %q, which does not parse: %v", b, m.Append(nil), err)
		}
		if !bytes.Equal(again.Body, m.Body) || again.Method != m.Method || again.Status != m.Status || again.URI != m.URI {
			t.Fatalf("%q: round trip changed the message", b)
		}
		for _, name := range []string{"via", "contact", "call-id", "cseq"} {
			if !reflect.DeepEqual(m.Values(name), again.Values(name)) {
				t.Fatalf("%q: round trip changed %s: %q, %q", b, name, m.Values(name), again.Values(name))
			}
		}
	})
}

// FuzzParseVia: a Via it accepts formats and parses back the same.
func FuzzParseVia(f *testing.F) {
	for _, s := range []string{"SIP/2.0/UDP 10.0.0.2:5060;branch=z9hG4bK1;rport", "SIP / 2.0 / TCP [2001:db8::1]:5062", "SIP/2.0/UDP h"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		v, err := sip.ParseVia(s)
		if err != nil {
			return
		}
		again, err := sip.ParseVia(v.String())
		if err != nil || again != v {
			t.Fatalf("%q: %+v formats as %q, parses to %+v, %v", s, v, v.String(), again, err)
		}
	})
}

// FuzzParseContact: a Contact it accepts formats and parses back the
// same, and its host is what the filter compares (an address or a name,
// never empty).
func FuzzParseContact(f *testing.F) {
	for _, s := range []string{`"A, B" <sip:alice@10.0.0.2:5060;transport=udp>;expires=60`, "sip:10.0.0.2;expires=0", "*", "<sips:[2001:db8::1]:5061>"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		c, err := sip.ParseContact(s)
		if err != nil {
			return
		}
		if !c.Star && c.URI.Host.Host == "" {
			t.Fatalf("%q: empty host", s)
		}
		again, err := sip.ParseContact(c.String())
		if err != nil || again.String() != c.String() || again.URI != c.URI {
			t.Fatalf("%q: formats as %q, parses to %+v, %v", s, c.String(), again, err)
		}
	})
}

// FuzzParseSDP: a description it accepts writes out to one that parses to
// the same media.
func FuzzParseSDP(f *testing.F) {
	for _, s := range []string{
		"v=0\r\no=- 1 1 IN IP4 10.0.0.2\r\ns=-\r\nc=IN IP4 10.0.0.2\r\nt=0 0\r\nm=audio 6000 RTP/AVP 0\r\na=rtcp:6003 IN IP4 10.0.0.2\r\n",
		"v=0\nm=video 0 RTP/AVP 31\nm=image 6010 udptl t38\nc=IN IP4 10.0.0.2\n",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		s, err := sip.ParseSDP(b)
		if err != nil {
			return
		}
		again, err := sip.ParseSDP(s.Bytes())
		if err != nil || !reflect.DeepEqual(again.Media, s.Media) || again.Conn != s.Conn || again.Origin != s.Origin {
			t.Fatalf("%q: written as %q: %+v, %v", b, s.Bytes(), again, err)
		}
	})
}
