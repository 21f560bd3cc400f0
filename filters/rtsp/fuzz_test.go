package rtsp_test

import (
	"reflect"
	"regexp"
	"strings"
	"testing"

	"github.com/fwx-dev/fwx/filters/rtsp"
)

// FuzzParseHead: ParseHead never panics, and a head it accepts, written
// out again, parses to the same head.
func FuzzParseHead(f *testing.F) {
	for _, s := range []string{
		"SETUP rtsp://s/t RTSP/1.0\r\nCSeq: 3\r\nTransport: RTP/AVP;unicast;client_port=5000-5001\r\n\r\n",
		"RTSP/1.0 200 OK\r\nCSeq: 3\r\nSession: 1;timeout=60\r\n\r\n",
		"RTSP/1.0 200 OK\nCSeq:\n 4\n\n",            // bare LF, folding
		"POST / HTTP/1.1\r\nHost: x\r\n\r\n",        // not RTSP
		"OPTIONS * RTSP/1.0\r\nCSeq: 1\x00\r\n\r\n", // NUL
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		h, err := rtsp.ParseHead(b)
		if err != nil {
			return
		}
		again, err := rtsp.ParseHead(h.Append(nil))
		if err != nil {
			t.Fatalf("%q: written out as %q, which does not parse: %v", b, h.Append(nil), err)
		}
		if !reflect.DeepEqual(h, again) {
			t.Fatalf("%q: round trip changed\n%+v\nto\n%+v", b, h, again)
		}
	})
}

// slowClientPort is a reference for the client_port of a spec, built on
// regular expressions: the value of the one client_port parameter.
var slowClientPort = regexp.MustCompile(`(?is)^[ \t]*client_port[ \t]*(?:=[ \t]*(.*?))?[ \t]*$`)

// FuzzParseTransport: ParseTransport never panics; what it accepts
// formats and parses back to the same specs; where a spec has no quotes,
// its client_port agrees with a reference built on regular expressions.
func FuzzParseTransport(f *testing.F) {
	for _, s := range []string{
		"RTP/AVP;unicast;client_port=4588-4589",
		`RTP/AVP;unicast;client_port=5000-5001;mode="PLAY,RECORD",RTP/AVP/TCP;interleaved=0-1`,
		"RTP/AVP;multicast;destination=224.2.0.1;port=3456-3457;ttl=16",
		"RTP/AVP;client_port=5000;client_port=6000",
		";;,RTP/AVP;",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, v string) {
		specs, err := rtsp.ParseTransport(v)
		if err != nil {
			return
		}
		again, err := rtsp.ParseTransport(rtsp.FormatTransport(specs))
		if err != nil || !reflect.DeepEqual(specs, again) {
			t.Fatalf("%q: formatted %q parses to %+v, %v", v, rtsp.FormatTransport(specs), again, err)
		}
		if strings.Contains(v, `"`) {
			return
		}
		parts := strings.Split(v, ",")
		var nonEmpty []string
		for _, p := range parts {
			if strings.Trim(p, " \t;") != "" {
				nonEmpty = append(nonEmpty, p)
			}
		}
		if len(nonEmpty) != len(specs) {
			t.Fatalf("%q: %d specs, reference %d", v, len(specs), len(nonEmpty))
		}
		for i, part := range nonEmpty {
			var want []string
			for _, p := range strings.Split(part, ";")[1:] {
				if m := slowClientPort.FindStringSubmatch(p); m != nil {
					want = append(want, m[1])
				}
			}
			got, n := specs[i].Get("client_port")
			if n != len(want) || (n == 1 && got != want[0]) {
				t.Fatalf("%q spec %d: client_port %q (%d), reference %q", v, i, got, n, want)
			}
		}
	})
}

// FuzzParsePorts: a port pair parses back from its own formatting, and
// both ports are in 1..65535.
func FuzzParsePorts(f *testing.F) {
	for _, s := range []string{"5000-5001", "5000", "0", "65536", "1-65535", "7-7"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, v string) {
		p, err := rtsp.ParsePorts(v)
		if err != nil {
			return
		}
		if p.RTP == 0 || (p.Pair && (p.RTCP == 0 || p.RTCP == p.RTP)) {
			t.Fatalf("%q: %+v", v, p)
		}
		q, err := rtsp.ParsePorts(p.String())
		if err != nil || q != p {
			t.Fatalf("%q: %+v formats as %q, parses to %+v, %v", v, p, p.String(), q, err)
		}
	})
}
