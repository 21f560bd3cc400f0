package sip_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/fwx-dev/fwx/filters/sip"
)

var lim = sip.Limits{Size: 16384, Fields: 64}

const invite = "INVITE sip:bob@198.51.100.2 SIP/2.0\r\n" +
	"Via: SIP/2.0/UDP 10.0.0.2:5060;branch=z9hG4bK776asdhds\r\n" +
	"Max-Forwards: 70\r\n" +
	"To: Bob <sip:bob@198.51.100.2>\r\n" +
	"From: Alice <sip:alice@10.0.0.2>;tag=1928301774\r\n" +
	"Call-ID: a84b4c76e66710@10.0.0.2\r\n" +
	"CSeq: 314159 INVITE\r\n" +
	"Contact: <sip:alice@10.0.0.2:5060>\r\n" +
	"Content-Type: application/sdp\r\n" +
	"Content-Length: 129\r\n\r\n" +
	"v=0\r\no=alice 2890844526 2890844526 IN IP4 10.0.0.2\r\ns=-\r\nc=IN IP4 10.0.0.2\r\nt=0 0\r\nm=audio 6000 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n"

func TestParse(t *testing.T) {
	tests := []struct {
		name   string
		in     string
		err    error
		method string
		status int
		body   int
	}{
		{name: "invite", in: invite, method: "INVITE", body: 129},
		{name: "response, compact, folded", in: "SIP/2.0 200 OK\r\nv: SIP/2.0/UDP 10.0.0.2\r\nf: <sip:a@b>;tag=1\r\nt: <sip:b@c>\r\ni: x\r\nCSeq:\r\n 1 REGISTER\r\nl: 0\r\n\r\n", status: 200},
		{name: "leading CRLF, bare LF", in: "\r\n\r\nOPTIONS sip:x SIP/2.0\nVia: SIP/2.0/UDP h\nFrom: a\nTo: b\nCall-ID: c\nCSeq: 1 OPTIONS\n\n", method: "OPTIONS"},
		{name: "no Content-Length: the rest", in: "MESSAGE sip:x SIP/2.0\r\nVia: SIP/2.0/UDP h\r\nFrom: a\r\nTo: b\r\nCall-ID: c\r\nCSeq: 1 MESSAGE\r\n\r\nhello", method: "MESSAGE", body: 5},
		{name: "bytes past Content-Length dropped", in: "MESSAGE sip:x SIP/2.0\r\nVia: SIP/2.0/UDP h\r\nFrom: a\r\nTo: b\r\nCall-ID: c\r\nCSeq: 1 MESSAGE\r\nContent-Length: 2\r\n\r\nhello", method: "MESSAGE", body: 2},
		{name: "http", in: "POST / HTTP/1.1\r\nHost: x\r\n\r\nREGISTER sip:x SIP/2.0\r\n", err: sip.ErrNotSIP},
		{name: "stun-like", in: "\x00\x01\x00\x08\x21\x12\xa4\x42REGISTER sip:x SIP/2.0\r\n", err: sip.ErrNotSIP},
		{name: "mid-datagram", in: "xx REGISTER sip:x SIP/2.0\r\nVia: SIP/2.0/UDP h\r\n\r\n", err: sip.ErrNotSIP},
		{name: "SIP 1.0", in: "INVITE sip:x SIP/1.0\r\n\r\n", err: sip.ErrNotSIP},
		{name: "no Call-ID", in: "OPTIONS sip:x SIP/2.0\r\nVia: SIP/2.0/UDP h\r\nFrom: a\r\nTo: b\r\nCSeq: 1 OPTIONS\r\n\r\n", err: sip.ErrMalformed},
		{name: "bad CSeq", in: "OPTIONS sip:x SIP/2.0\r\nVia: SIP/2.0/UDP h\r\nFrom: a\r\nTo: b\r\nCall-ID: c\r\nCSeq: x OPTIONS\r\n\r\n", err: sip.ErrMalformed},
		{name: "Content-Length past the end", in: "OPTIONS sip:x SIP/2.0\r\nVia: SIP/2.0/UDP h\r\nFrom: a\r\nTo: b\r\nCall-ID: c\r\nCSeq: 1 OPTIONS\r\nContent-Length: 9\r\n\r\nabc", err: sip.ErrMalformed},
		{name: "two Content-Lengths", in: "OPTIONS sip:x SIP/2.0\r\nVia: SIP/2.0/UDP h\r\nFrom: a\r\nTo: b\r\nCall-ID: c\r\nCSeq: 1 OPTIONS\r\nContent-Length: 1\r\nl: 2\r\n\r\nab", err: sip.ErrMalformed},
		{name: "no colon", in: "OPTIONS sip:x SIP/2.0\r\nVia SIP/2.0/UDP h\r\n\r\n", err: sip.ErrMalformed},
		{name: "NUL", in: "OPTIONS sip:x SIP/2.0\r\nVia: SIP/2.0/UDP h\x00\r\n\r\n", err: sip.ErrMalformed},
		{name: "no end of head", in: "OPTIONS sip:x SIP/2.0\r\nVia: SIP/2.0/UDP h\r\n", err: sip.ErrMalformed},
		{name: "too large", in: invite + strings.Repeat("x", 16384), err: sip.ErrTooLarge},
		{name: "too many fields", in: "OPTIONS sip:x SIP/2.0\r\n" + strings.Repeat("X: y\r\n", 65) + "\r\n", err: sip.ErrTooLarge},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m, err := sip.Parse([]byte(tt.in), lim)
			if !errors.Is(err, tt.err) {
				t.Fatalf("error %v, want %v", err, tt.err)
			}
			if err != nil {
				return
			}
			if m.Method != tt.method || m.Status != tt.status || len(m.Body) != tt.body {
				t.Errorf("method %q status %d body %d, want %q %d %d", m.Method, m.Status, len(m.Body), tt.method, tt.status, tt.body)
			}
		})
	}
}

func TestValuesAndAppend(t *testing.T) {
	m, err := sip.Parse([]byte("SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP a;branch=1, SIP/2.0/UDP b;branch=2\r\nv: SIP/2.0/TCP c\r\n"+
		"m: \"Doe, John\" <sip:j@h>;expires=60, <sip:k@h>\r\nFrom: a\r\nTo: b\r\nCall-ID: c\r\nCSeq: 7 INVITE\r\nContent-Length: 0\r\n\r\n"), lim)
	if err != nil {
		t.Fatal(err)
	}
	if v := m.Values("via"); len(v) != 3 || v[1] != "SIP/2.0/UDP b;branch=2" || v[2] != "SIP/2.0/TCP c" {
		t.Errorf("Via values %q", v)
	}
	if c := m.Values("contact"); len(c) != 2 || c[0] != `"Doe, John" <sip:j@h>;expires=60` {
		t.Errorf("Contact values %q", c)
	}
	if n, method, err := m.CSeq(); n != 7 || method != "INVITE" || err != nil {
		t.Errorf("CSeq %d %q %v", n, method, err)
	}
	m.SetList("via", []string{"SIP/2.0/UDP z"})
	m.Body = []byte("abc")
	got := string(m.Append(nil))
	if !strings.Contains(got, "Via: SIP/2.0/UDP z\r\nm: ") || strings.Contains(got, "SIP/2.0/TCP c") || !strings.HasSuffix(got, "Content-Length: 3\r\n\r\nabc") {
		t.Errorf("written as\n%s", got)
	}
	again, err := sip.Parse([]byte(got), lim)
	if err != nil || string(again.Body) != "abc" {
		t.Errorf("does not parse back: %v", err)
	}
}
