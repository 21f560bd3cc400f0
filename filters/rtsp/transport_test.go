package rtsp_test

import (
	"errors"
	"testing"

	"github.com/fwx-dev/fwx/filters/rtsp"
)

func TestParseTransport(t *testing.T) {
	tests := []struct {
		in        string
		err       bool
		n         int  // specs
		udp       bool // the first is RTP over UDP
		multicast bool
		client    string
	}{
		{in: "RTP/AVP;unicast;client_port=4588-4589", n: 1, udp: true, client: "4588-4589"},
		{in: "RTP/AVP/UDP;unicast;client_port=4588-4589;mode=play", n: 1, udp: true, client: "4588-4589"},
		{in: "rtp/savpf;unicast;client_port=5000", n: 1, udp: true, client: "5000"},
		{in: "RTP/AVP/TCP;unicast;interleaved=0-1", n: 1},
		{in: "RTP/AVP;multicast;destination=224.2.0.1;port=3456-3457;ttl=16", n: 1, udp: true, multicast: true},
		{in: "RTP/AVP;unicast;client_port=5000-5001,RTP/AVP/TCP;unicast;interleaved=0-1", n: 2, udp: true, client: "5000-5001"},
		{in: `RTP/AVP;unicast;client_port=5000-5001;mode="PLAY,RECORD";`, n: 1, udp: true, client: "5000-5001"},
		{in: "x-real-rdt/udp;client_port=6970", n: 1, client: "6970"},
		{in: "RTP/AVP/SCTP;client_port=6970", n: 1, client: "6970"},
		{in: "", err: true},
		{in: ";,", err: true},
		{in: `RTP/AVP;mode="PLAY`, err: true},
		{in: "RTP/AVP;client port=5000", err: true},
		{in: "RTP AVP;client_port=5000", err: true},
	}
	for _, tt := range tests {
		specs, err := rtsp.ParseTransport(tt.in)
		if (err != nil) != tt.err {
			t.Errorf("%q: error %v, want error %v", tt.in, err, tt.err)
			continue
		}
		if err != nil {
			if !errors.Is(err, rtsp.ErrBadTransport) {
				t.Errorf("%q: %v is not ErrBadTransport", tt.in, err)
			}
			continue
		}
		if len(specs) != tt.n {
			t.Errorf("%q: %d specs, want %d", tt.in, len(specs), tt.n)
			continue
		}
		s := specs[0]
		if s.IsRTPOverUDP() != tt.udp || s.IsMulticast() != tt.multicast {
			t.Errorf("%q: udp %v multicast %v, want %v %v", tt.in, s.IsRTPOverUDP(), s.IsMulticast(), tt.udp, tt.multicast)
		}
		if v, _ := s.Get("CLIENT_PORT"); v != tt.client {
			t.Errorf("%q: client_port %q, want %q", tt.in, v, tt.client)
		}
	}
}

func TestFormatTransport(t *testing.T) {
	in := `RTP/AVP;unicast;client_port=4588-4589;mode="PLAY",RTP/AVP/TCP;interleaved=0-1`
	specs, err := rtsp.ParseTransport(in)
	if err != nil {
		t.Fatal(err)
	}
	if got := rtsp.FormatTransport(specs); got != in {
		t.Errorf("round trip %q, want %q", got, in)
	}
	specs[0].Set("client_port", "6000-6001")
	specs[0].Del("mode")
	if got, want := rtsp.FormatTransport(specs[:1]), "RTP/AVP;unicast;client_port=6000-6001"; got != want {
		t.Errorf("rewritten %q, want %q", got, want)
	}
}

func TestParsePorts(t *testing.T) {
	tests := []struct {
		in     string
		ok     bool
		second uint16
	}{
		{"5000-5001", true, 5001},
		{"5000", true, 5001},
		{"5001-5000", true, 5000},
		{"65535", true, 0},
		{"0", false, 0},
		{"5000-5000", false, 0},
		{"65536", false, 0},
		{"5000-", false, 0},
		{"-5000", false, 0},
		{"+500", false, 0},
		{"5000-5001-5002", false, 0},
		{"005000", false, 0},
	}
	for _, tt := range tests {
		p, err := rtsp.ParsePorts(tt.in)
		if (err == nil) != tt.ok {
			t.Errorf("%q: error %v, want ok %v", tt.in, err, tt.ok)
			continue
		}
		if err == nil {
			if p.Second() != tt.second {
				t.Errorf("%q: second port %d, want %d", tt.in, p.Second(), tt.second)
			}
			if p.String() != tt.in {
				t.Errorf("%q: formats as %q", tt.in, p.String())
			}
		}
	}
}
