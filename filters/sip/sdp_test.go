package sip_test

import (
	"net/netip"
	"strings"
	"testing"

	"github.com/fwx-dev/fwx/filters/sip"
)

func TestParseSDP(t *testing.T) {
	in := "v=0\r\no=alice 1 1 IN IP4 10.0.0.2\r\ns=-\r\nc=IN IP4 10.0.0.2\r\nt=0 0\r\n" +
		"m=audio 6000 RTP/AVP 0\r\na=rtcp:6003 IN IP4 10.0.0.2\r\n" +
		"m=video 0 RTP/AVP 31\r\n" +
		"m=image 6010 udptl t38\r\nc=IN IP4 10.0.0.2\r\n" +
		"m=message 7000 TCP/MSRP *\r\n"
	s, err := sip.ParseSDP([]byte(in))
	if err != nil {
		t.Fatal(err)
	}
	if len(s.Media) != 4 || s.Conn != 3 || s.Origin != 1 {
		t.Fatalf("%+v", s)
	}
	audio, video, image, msrp := &s.Media[0], &s.Media[1], &s.Media[2], &s.Media[3]
	if audio.Port != 6000 || audio.RTCPPort != 6003 || !audio.IsUDP() || video.Port != 0 || !image.IsUDP() || image.Conn < 0 || msrp.IsUDP() {
		t.Errorf("media %+v", s.Media)
	}
	out := netip.MustParseAddr("198.51.100.1")
	s.SetPorts(audio, 20000, 20001, out)
	s.SetConn(s.Conn, out)
	s.SetOrigin(out)
	got := string(s.Bytes())
	for _, want := range []string{"o=alice 1 1 IN IP4 198.51.100.1\r\n", "c=IN IP4 198.51.100.1\r\n", "m=audio 20000 RTP/AVP 0\r\n", "a=rtcp:20001 IN IP4 198.51.100.1\r\n"} {
		if !strings.Contains(got, want) {
			t.Errorf("rewritten description lacks %q:\n%s", want, got)
		}
	}
	if a, ok := s.MediaAddr(image); !ok || a.String() != "10.0.0.2" {
		t.Errorf("image's own c= line: %v %v", a, ok)
	}
	for _, bad := range []string{"v=0\r\nm=audio 70000 RTP/AVP 0\r\n", "v=0\r\nm=audio\r\n", "v=0\r\nbogus\r\n", "v=0\r\nm=audio 6000 RTP/AVP 0\r\na=rtcp:x\r\n"} {
		if _, err := sip.ParseSDP([]byte(bad)); err == nil {
			t.Errorf("%q parsed", bad)
		}
	}
}

// TestConnAddr reads a connection line's address: IPv4, IPv6 bare as RFC
// 4566 writes it or in the brackets sipp writes, never a name.
func TestConnAddr(t *testing.T) {
	for _, tt := range []struct {
		line string
		want string // "" for none
	}{
		{"c=IN IP4 198.51.100.7", "198.51.100.7"},
		{"c=IN IP6 2001:db8::7", "2001:db8::7"},
		{"c=IN IP6 [2001:db8::7]", "2001:db8::7"},
		{"c=IN IP4 [198.51.100.7]", ""},
		{"c=IN IP6 host.example", ""},
		{"c=IN IP6 []", ""},
	} {
		s, err := sip.ParseSDP([]byte("v=0\r\n" + tt.line + "\r\n"))
		if err != nil {
			t.Fatal(err)
		}
		a, ok := s.ConnAddr(1)
		if got := map[bool]string{true: a.String(), false: ""}[ok]; got != tt.want {
			t.Errorf("%s: %q, want %q", tt.line, got, tt.want)
		}
	}
}
