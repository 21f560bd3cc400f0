package rtsp_test

import (
	"fmt"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/fwx-dev/fwx/filters/rtsp"
	"github.com/fwx-dev/fwx/netstack/lab/fwxlab"
)

// TestSetupRefused: a SETUP whose UDP transport would open a path the
// player did not own (a privileged port, another inside host, a third
// party, fwx itself) or that the filter cannot read one way only loses
// that transport; left with none, fwx answers it and the server never
// sees it. Nothing is bound either way.
func TestSetupRefused(t *testing.T) {
	tests := []struct {
		name, transport string
		extra           []string
		status          int    // fwx's answer; 0: passed on
		server          string // the Transport the server gets
	}{
		{name: "privileged RTP port", transport: "RTP/AVP;unicast;client_port=554-555", status: 461},
		{name: "privileged RTCP port", transport: "RTP/AVP;unicast;client_port=5000-1023", status: 461},
		{name: "port 0", transport: "RTP/AVP;unicast;client_port=0-1", status: 461},
		{name: "another inside host", transport: "RTP/AVP;unicast;destination=10.0.0.3;client_port=5000-5001", status: 461},
		{name: "a third party", transport: "RTP/AVP;unicast;destination=198.51.100.3;client_port=5000-5001", status: 461},
		{name: "fwx itself", transport: "RTP/AVP;unicast;destination=198.51.100.1;client_port=5000-5001", status: 461},
		{name: "two destinations", transport: "RTP/AVP;unicast;destination=10.0.0.2;destination=10.0.0.3;client_port=5000-5001", status: 461},
		{name: "two client ports", transport: "RTP/AVP;unicast;client_port=5000-5001;client_port=6000-6001", status: 461},
		{name: "malformed", transport: `RTP/AVP;unicast;client_port=5000-5001;mode="PLAY`, status: 461},
		{name: "two Transport fields", transport: "RTP/AVP;unicast;client_port=5000-5001", extra: []string{"Transport: RTP/AVP;unicast;client_port=6000-6001"}, status: 400},
		{name: "third party removed, interleaved kept",
			transport: "RTP/AVP;unicast;destination=198.51.100.3;client_port=5000-5001,RTP/AVP/TCP;unicast;interleaved=0-1",
			server:    "RTP/AVP/TCP;unicast;interleaved=0-1"},
		{name: "second UDP offer removed",
			transport: "RTP/AVP;unicast;client_port=5000-5001,RTP/AVP;unicast;client_port=6000-6001",
			server:    "RTP/AVP;unicast;client_port=%d-%d"},
	}
	l := newLab(t, rtsp.Config{})
	s := serve(t, l.Server, 554)
	s.answer = func(r request, cseq string) string {
		return "RTSP/1.0 454 Session Not Found\r\nCSeq: " + cseq + "\r\n\r\n" // keeps nothing open
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := dial(t, l.Client, serverControl)
			resp := p.do("SETUP", "rtsp://198.51.100.2/t", append([]string{"Transport: " + tt.transport}, tt.extra...)...)
			if tt.status != 0 {
				if resp.status != tt.status || resp.header.Get("CSeq") != "1" {
					t.Errorf("answered %d with CSeq %q, want %d from fwx with CSeq 1", resp.status, resp.header.Get("CSeq"), tt.status)
				}
				s.nothing(t)
			} else {
				got := s.next(t).header.Get("Transport")
				want := tt.server
				if strings.Contains(want, "%d") {
					lo, hi := ports(t, got, "client")
					want = fmt.Sprintf(want, lo, hi)
				}
				if got != want {
					t.Errorf("the server got Transport %q, want %q", got, want)
				}
			}
			if n := l.Session(t).Pinholes(); n != 0 {
				t.Errorf("%d pinholes, want 0", n)
			}
		})
	}
	if recs := l.Log.Records(t, map[string]string{"direction": "inbound"}); len(recs) != 0 {
		t.Errorf("inbound flows: %v", recs)
	}
}

// TestAnswerNotOfTheSetup: only the server's successful answer to a
// pending SETUP, choosing the UDP transport it was offered with the ports
// it was told, arms the pair. Anything else opens nothing, and an answer
// that closes the SETUP releases its pair.
func TestAnswerNotOfTheSetup(t *testing.T) {
	tests := []struct {
		name   string
		answer string // %s: the CSeq; %d %d: the pair the server was told
		held   bool   // the pair stays reserved (its SETUP still pending)
	}{
		{name: "another CSeq", answer: "RTSP/1.0 200 OK\r\nCSeq: 99\r\nTransport: RTP/AVP;unicast;client_port=%d-%d;server_port=6970-6971\r\n\r\n", held: true},
		{name: "no CSeq", answer: "RTSP/1.0 200 OK\r\nTransport: RTP/AVP;unicast;client_port=%d-%d;server_port=6970-6971\r\n\r\n", held: true},
		{name: "an error", answer: "RTSP/1.0 453 Not Enough Bandwidth\r\nCSeq: %s\r\nTransport: RTP/AVP;unicast;client_port=%d-%d;server_port=6970-6971\r\n\r\n"},
		{name: "interleaved chosen", answer: "RTSP/1.0 200 OK\r\nCSeq: %s\r\nTransport: RTP/AVP/TCP;interleaved=0-1\r\n\r\n"},
		{name: "other client ports", answer: "RTSP/1.0 200 OK\r\nCSeq: %s\r\nTransport: RTP/AVP;unicast;client_port=7000-7001;server_port=6970-6971\r\n\r\n"},
		{name: "two transports", answer: "RTSP/1.0 200 OK\r\nCSeq: %s\r\nTransport: RTP/AVP;unicast;client_port=%d-%d,RTP/AVP;unicast;client_port=%d-%d\r\n\r\n"},
		{name: "a request", answer: "ANNOUNCE rtsp://10.0.0.2/t RTSP/1.0\r\nCSeq: %s\r\nTransport: RTP/AVP;unicast;client_port=%d-%d\r\n\r\n", held: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l := newLab(t, rtsp.Config{})
			s := serve(t, l.Server, 554)
			s.answer = func(r request, cseq string) string {
				lo, hi := ports(t, r.header.Get("Transport"), "client")
				a := strings.Replace(tt.answer, "%s", cseq, 1)
				for strings.Contains(a, "%d-%d") {
					a = strings.Replace(a, "%d-%d", fmt.Sprintf("%d-%d", lo, hi), 1)
				}
				return a
			}
			p := dial(t, l.Client, serverControl)
			rtp := listenMedia(t, l.Client, 5000)
			p.cseq++
			p.send(fmt.Sprintf("SETUP rtsp://198.51.100.2/t RTSP/1.0\r\nCSeq: %d\r\nTransport: RTP/AVP;unicast;client_port=5000-5001\r\n\r\n", p.cseq))
			lo, _ := ports(t, s.next(t).header.Get("Transport"), "client")
			time.Sleep(100 * time.Millisecond) // the answer crosses fwx
			sRTP := listenMedia(t, l.Server, 6970)
			sRTP.send(outside(lo), "rtp")
			rtp.silent()
			want := 0
			if tt.held {
				want = 2
			}
			if n := l.Session(t).Pinholes(); n != want {
				t.Errorf("%d pinholes, want %d", n, want)
			}
		})
	}
}

// TestNotRTSP: a connection to the RTSP port that does not start as
// RTSP/1.0 (an HTTP request, as NAT Slipstreaming's browser sends, with
// RTSP and SIP lines in its body) passes as it is and opens nothing.
func TestNotRTSP(t *testing.T) {
	l := newLab(t, rtsp.Config{})
	body := "SETUP rtsp://198.51.100.2/t RTSP/1.0\r\nCSeq: 1\r\nTransport: RTP/AVP;unicast;client_port=5000-5001\r\n\r\n"
	post := fmt.Sprintf("POST / HTTP/1.1\r\nHost: 198.51.100.2:554\r\nContent-Length: %d\r\n\r\n%s", len(body), body)
	got := make(chan string, 1)
	ln, err := l.Server.ListenTCP(554)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		c, err := ln.Accept()
		if err != nil {
			got <- err.Error()
			return
		}
		defer c.Close()
		buf := make([]byte, len(post))
		readAll(c, buf)
		got <- string(buf)
	}()
	p := dial(t, l.Client, serverControl)
	// Sent in pieces, so that a segment starts with the SETUP.
	p.send(post[:len(post)-len(body)])
	time.Sleep(50 * time.Millisecond)
	p.send(body)
	select {
	case g := <-got:
		if g != post {
			t.Errorf("the server got %q, want the request unchanged", g)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the server got nothing")
	}
	if n := l.Session(t).Pinholes(); n != 0 {
		t.Errorf("%d pinholes, want 0", n)
	}
}

// TestSplitSetup: a SETUP sent a byte at a time is read whole, once.
func TestSplitSetup(t *testing.T) {
	l := newLab(t, rtsp.Config{})
	s := serve(t, l.Server, 554)
	p := dial(t, l.Client, serverControl)
	msg := "SETUP rtsp://198.51.100.2/t RTSP/1.0\r\nCSeq: 1\r\nTransport: RTP/AVP;unicast;client_port=5000-5001\r\n\r\n"
	for i := range len(msg) {
		p.send(msg[i : i+1])
	}
	if lo, hi := ports(t, s.next(t).header.Get("Transport"), "client"); lo%2 != 0 || hi != lo+1 || lo == 5000 {
		t.Errorf("the server was told %d-%d, want a bound pair", lo, hi)
	}
	if r := p.read(); r.status != 200 {
		t.Errorf("answered %d", r.status)
	}
}

// TestHeadLimit: a head longer than MaxHead ends the control connection
// before anything of it is read as a request.
func TestHeadLimit(t *testing.T) {
	l := newLab(t, rtsp.Config{MaxHead: 512})
	s := serve(t, l.Server, 554)
	p := dial(t, l.Client, serverControl)
	if r := p.do("OPTIONS", "*", "X-Pad: "+strings.Repeat("a", 480-len("OPTIONS * RTSP/1.0\r\nCSeq: 1\r\nX-Pad: \r\n\r\n"))); r.status != 200 {
		t.Fatalf("a 480-byte head: %d", r.status)
	}
	s.next(t)
	p.send("SETUP rtsp://198.51.100.2/t RTSP/1.0\r\nCSeq: 2\r\nX-Pad: " + strings.Repeat("a", 512) +
		"\r\nTransport: RTP/AVP;unicast;client_port=5000-5001\r\n\r\n")
	if !p.closed() {
		t.Error("the control connection survived a head over the limit")
	}
	s.nothing(t)
	if n := l.Session(t).Pinholes(); n != 0 {
		t.Errorf("%d pinholes, want 0", n)
	}
}

// TestMaxStreams: a connection holds at most MaxStreams streams; beyond,
// the UDP transport is refused (and, alone, the SETUP answered by fwx).
func TestMaxStreams(t *testing.T) {
	l := newLab(t, rtsp.Config{MaxStreams: 2})
	s := serve(t, l.Server, 554)
	p := dial(t, l.Client, serverControl)
	setupUDP(t, p, s, "rtsp://198.51.100.2/t/1", 5000)
	setupUDP(t, p, s, "rtsp://198.51.100.2/t/2", 5002)
	if r := p.do("SETUP", "rtsp://198.51.100.2/t/3", "Transport: RTP/AVP;unicast;client_port=5004-5005"); r.status != 461 {
		t.Errorf("third SETUP answered %d, want 461 from fwx", r.status)
	}
	s.nothing(t)
}

// TestPublishedServer: a player outside plays from an RTSP server inside
// that fwx publishes. The server's ports are rewritten to an aligned pair
// of fwx's, open to the player only; the server's media leave from them.
func TestPublishedServer(t *testing.T) {
	l := newLab(t, rtsp.Config{})
	s := serve(t, l.Client2, 8554)
	s.answer = func(r request, cseq string) string {
		if r.method != "SETUP" {
			return ""
		}
		return fmt.Sprintf("RTSP/1.0 200 OK\r\nCSeq: %s\r\nSession: 77\r\nTransport: %s;server_port=6970-6971;source=10.0.0.3\r\n\r\n",
			cseq, r.header.Get("Transport"))
	}
	p := dial(t, l.Server, outside(8554))
	rtp, rtcp := listenMedia(t, l.Server, 7000), listenMedia(t, l.Server, 7001)
	resp := p.do("SETUP", "rtsp://198.51.100.1:8554/t", "Transport: RTP/AVP;unicast;client_port=7000-7001")
	req := s.next(t)
	if got := req.header.Get("Transport"); got != "RTP/AVP;unicast;client_port=7000-7001" {
		t.Errorf("the server got Transport %q, want the player's", got)
	}
	if req.from.Addr() != fwxlab.ServerAddr {
		t.Errorf("the server's SETUP came from %v", req.from)
	}
	tr := resp.header.Get("Transport")
	lo, hi := ports(t, tr, "server")
	if lo%2 != 0 || hi != lo+1 || !strings.Contains(tr, "source=198.51.100.1") {
		t.Fatalf("the player got Transport %q, want fwx's address and an aligned pair", tr)
	}
	sRTP, sRTCP := listenMedia(t, l.Client2, 6970), listenMedia(t, l.Client2, 6971)

	player := func(port uint16) netip.AddrPort { return netip.AddrPortFrom(fwxlab.ServerAddr, port) }
	sRTP.send(player(7000), "rtp")
	rtp.expect("rtp", outside(lo))
	rtcp.send(outside(hi), "receiver report")
	sRTCP.expect("receiver report", player(7001))
	sRTCP.send(player(7001), "sender report")
	rtcp.expect("sender report", outside(hi))

	// Another outside host cannot reach the server's ports.
	intruder := listenMedia(t, l.Server2, 7000)
	intruder.send(outside(lo), "intruder")
	sRTP.silent()

	p.do("TEARDOWN", "rtsp://198.51.100.1:8554/t", "Session: 77")
	s.next(t)
	rtcp.send(outside(hi), "after teardown")
	sRTCP.silent()
}

func readAll(c interface{ Read([]byte) (int, error) }, b []byte) {
	for n := 0; n < len(b); {
		m, err := c.Read(b[n:])
		n += m
		if err != nil {
			return
		}
	}
}
