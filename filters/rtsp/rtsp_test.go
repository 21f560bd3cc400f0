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

var (
	serverControl = netip.AddrPortFrom(fwxlab.ServerAddr, 554)
)

// setupUDP sets a stream up from a player behind fwx that listens on
// rtpPort and the next port, and returns the outside pair the server was
// told and the server's pair.
func setupUDP(t *testing.T, p *player, s *server, uri string, rtpPort uint16, extra ...string) (bound, srv uint16, resp response) {
	t.Helper()
	fields := append([]string{fmt.Sprintf("Transport: RTP/AVP;unicast;client_port=%d-%d", rtpPort, rtpPort+1)}, extra...)
	resp = p.do("SETUP", uri, fields...)
	req := s.next(t)
	if req.from.Addr() != fwxlab.FWOutside {
		t.Fatalf("the server's SETUP came from %v, want fwx's outside address", req.from)
	}
	lo, hi := ports(t, req.header.Get("Transport"), "client")
	if lo%2 != 0 || hi != lo+1 {
		t.Fatalf("the server was told client_port=%d-%d, want an aligned even/odd pair", lo, hi)
	}
	if resp.status != 200 {
		t.Fatalf("SETUP answered %d", resp.status)
	}
	if a, b := ports(t, resp.header.Get("Transport"), "client"); a != rtpPort || b != rtpPort+1 {
		t.Errorf("the player was told client_port=%d-%d, want its own %d-%d", a, b, rtpPort, rtpPort+1)
	}
	srv, _ = ports(t, resp.header.Get("Transport"), "server")
	return lo, srv, resp
}

// TestPlayerUDP: a player behind fwx sets a stream up over UDP. The
// server is told an aligned pair of fwx's ports; RTP and RTCP from the
// server's ports reach the player's; the player's RTCP (and NAT-opening
// packets) reach the server from the pair it was told; nobody else gets
// in; TEARDOWN closes it all.
func TestPlayerUDP(t *testing.T) {
	l := newLab(t, rtsp.Config{})
	s := serve(t, l.Server, 554)
	p := dial(t, l.Client, serverControl)
	rtp, rtcp := listenMedia(t, l.Client, 5000), listenMedia(t, l.Client, 5001)

	bound, srv, resp := setupUDP(t, p, s, "rtsp://198.51.100.2/t/trackID=1", 5000)
	sRTP, sRTCP := listenMedia(t, l.Server, srv), listenMedia(t, l.Server, srv+1)
	other := listenMedia(t, l.Server2, srv)

	// The player speaks first: its NAT-opening packets leave from the pair.
	rtp.send(netip.AddrPortFrom(fwxlab.ServerAddr, srv), "punch")
	sRTP.expect("punch", outside(bound))
	rtcp.send(netip.AddrPortFrom(fwxlab.ServerAddr, srv+1), "receiver report")
	sRTCP.expect("receiver report", outside(bound+1))

	sRTP.send(outside(bound), "rtp 1")
	rtp.expect("rtp 1", netip.AddrPortFrom(fwxlab.ServerAddr, srv))
	sRTCP.send(outside(bound+1), "sender report")
	rtcp.expect("sender report", netip.AddrPortFrom(fwxlab.ServerAddr, srv+1))

	// Only the server may use the pair.
	other.send(outside(bound), "intruder")
	rtp.silent()

	session := strings.Split(resp.header.Get("Session"), ";")[0]
	if r := p.do("TEARDOWN", "rtsp://198.51.100.2/t", "Session: "+session); r.status != 200 {
		t.Fatalf("TEARDOWN answered %d", r.status)
	}
	s.next(t)
	sRTP.send(outside(bound), "rtp after teardown")
	rtp.silent()
	rtcp.send(netip.AddrPortFrom(fwxlab.ServerAddr, srv+1), "report after teardown")
	sRTCP.silent()
	if n := l.Session(t).Pinholes(); n != 0 {
		t.Errorf("%d pinholes after TEARDOWN, want 0", n)
	}
}

// TestSeveralStreams: audio and video each get a pair; TEARDOWN of one
// stream's URI ends that stream only, the aggregate one the rest.
func TestSeveralStreams(t *testing.T) {
	l := newLab(t, rtsp.Config{})
	s := serve(t, l.Server, 554)
	p := dial(t, l.Client, serverControl)
	video, audio := listenMedia(t, l.Client, 5000), listenMedia(t, l.Client, 5002)

	vBound, vSrv, resp := setupUDP(t, p, s, "rtsp://198.51.100.2/t/video", 5000)
	session := strings.Split(resp.header.Get("Session"), ";")[0]
	aBound, aSrv, _ := setupUDP(t, p, s, "rtsp://198.51.100.2/t/audio", 5002, "Session: "+session)
	if vBound == aBound {
		t.Fatalf("both streams got pair %d", vBound)
	}
	vOut, aOut := listenMedia(t, l.Server, vSrv), listenMedia(t, l.Server, aSrv)
	vOut.send(outside(vBound), "video")
	video.expect("video", netip.AddrPortFrom(fwxlab.ServerAddr, vSrv))
	aOut.send(outside(aBound), "audio")
	audio.expect("audio", netip.AddrPortFrom(fwxlab.ServerAddr, aSrv))

	p.do("TEARDOWN", "rtsp://198.51.100.2/t/audio", "Session: "+session)
	s.next(t)
	aOut.send(outside(aBound), "audio after its teardown")
	audio.silent()
	vOut.send(outside(vBound), "video goes on")
	video.expect("video goes on", netip.AddrPortFrom(fwxlab.ServerAddr, vSrv))

	p.do("TEARDOWN", "rtsp://198.51.100.2/t", "Session: "+session)
	s.next(t)
	vOut.send(outside(vBound), "video after teardown")
	video.silent()
}

// TestControlEndRevokes: when the control connection ends, so do its
// streams.
func TestControlEndRevokes(t *testing.T) {
	l := newLab(t, rtsp.Config{})
	s := serve(t, l.Server, 554)
	p := dial(t, l.Client, serverControl)
	rtp := listenMedia(t, l.Client, 5000)
	bound, srv, _ := setupUDP(t, p, s, "rtsp://198.51.100.2/t", 5000)
	sRTP := listenMedia(t, l.Server, srv)
	sRTP.send(outside(bound), "before")
	rtp.expect("before", netip.AddrPortFrom(fwxlab.ServerAddr, srv))

	p.c.Close()
	deadline := time.Now().Add(5 * time.Second)
	for l.Session(t).Pinholes() != 0 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	sRTP.send(outside(bound), "after")
	rtp.silent()
}

// TestOtherTransportsUnchanged: interleaved and multicast transports pass
// as the client wrote them, open nothing, and interleaved frames cross
// both ways between messages.
func TestOtherTransportsUnchanged(t *testing.T) {
	l := newLab(t, rtsp.Config{})
	s := serve(t, l.Server, 554)
	for _, tr := range []string{
		"RTP/AVP/TCP;unicast;interleaved=0-1",
		"RTP/AVP;multicast;destination=232.0.1.1;port=3456-3457;ttl=16",
	} {
		p := dial(t, l.Client, serverControl)
		resp := p.do("SETUP", "rtsp://198.51.100.2/t", "Transport: "+tr)
		if got := s.next(t).header.Get("Transport"); got != tr {
			t.Errorf("the server got Transport %q, want %q", got, tr)
		}
		if resp.status != 200 || !strings.HasPrefix(resp.header.Get("Transport"), tr) {
			t.Errorf("the player got %d %q", resp.status, resp.header.Get("Transport"))
		}
		if n := l.Session(t).Pinholes(); n != 0 {
			t.Errorf("%s: %d pinholes, want 0", tr, n)
		}
	}

	// Interleaved frames, and a body that looks like a SETUP, cross
	// untouched and open nothing.
	s.answer = func(r request, cseq string) string {
		if r.method != "PLAY" {
			return ""
		}
		return "RTSP/1.0 200 OK\r\nCSeq: " + cseq + "\r\n\r\n$\x00\x00\x05hello$\x01\x00\x02hi"
	}
	p := dial(t, l.Client, serverControl)
	p.do("PLAY", "rtsp://198.51.100.2/t")
	s.next(t)
	frames := make([]byte, 15)
	p.c.SetReadDeadline(time.Now().Add(3 * time.Second))
	if _, err := readFull(p, frames); err != nil || string(frames) != "$\x00\x00\x05hello$\x01\x00\x02hi" {
		t.Fatalf("interleaved frames: %q, %v", frames, err)
	}
	body := "SETUP rtsp://x RTSP/1.0\r\nCSeq: 9\r\nTransport: RTP/AVP;unicast;client_port=5000-5001\r\n\r\n"
	p.send(fmt.Sprintf("$\x01\x00\x03rrrSET_PARAMETER rtsp://198.51.100.2/t RTSP/1.0\r\nCSeq: 5\r\nContent-Length: %d\r\n\r\n%s", len(body), body))
	if r := s.next(t); r.method != "$" || r.uri != "rrr" {
		t.Fatalf("the server got %s %q, want the frame", r.method, r.uri)
	}
	if r := s.next(t); r.method != "SET_PARAMETER" {
		t.Fatalf("the server got %s", r.method)
	}
	s.nothing(t)
	if n := l.Session(t).Pinholes(); n != 0 {
		t.Errorf("%d pinholes after a SETUP in a body, want 0", n)
	}
}

func readFull(p *player, b []byte) (int, error) {
	n := 0
	for n < len(b) {
		m, err := p.r.R.Read(b[n:])
		n += m
		if err != nil {
			return n, err
		}
	}
	return n, nil
}
