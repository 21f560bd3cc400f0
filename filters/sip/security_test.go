package sip_test

import (
	"errors"
	"fmt"
	"io"
	"net/netip"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/fwx-dev/fwx/filters/sip"
	"github.com/fwx-dev/fwx/netstack/lab"
	"github.com/fwx-dev/fwx/netstack/lab/fwxlab"
)

// TestClientNamesOnlyItself: a client's Via, Contact and session
// description may name only the client: a message naming another inside
// host, fwx or a third party is answered by fwx and never reaches the
// peer, and opens nothing. So are media ports below 1024 and more media
// than max_media.
func TestClientNamesOnlyItself(t *testing.T) {
	tests := []struct {
		name   string
		msg    string
		status int
	}{
		{"Via: another inside host", strings.Replace(request("OPTIONS", "v1", 1, ""), "Via: SIP/2.0/UDP 10.0.0.2", "Via: SIP/2.0/UDP 10.0.0.3", 1), 403},
		{"Via: fwx", strings.Replace(request("OPTIONS", "v2", 1, ""), "Via: SIP/2.0/UDP 10.0.0.2", "Via: SIP/2.0/UDP 198.51.100.1", 1), 403},
		{"Via: a third party", strings.Replace(request("OPTIONS", "v3", 1, ""), "Via: SIP/2.0/UDP 10.0.0.2", "Via: SIP/2.0/UDP 198.51.100.3", 1), 403},
		{"Via: a name", strings.Replace(request("OPTIONS", "v4", 1, ""), "Via: SIP/2.0/UDP 10.0.0.2", "Via: SIP/2.0/UDP pc.example", 1), 403},
		{"Contact: another inside host", strings.Replace(request("REGISTER", "c1", 1, ""), "Contact: <sip:alice@10.0.0.2:5060>", "Contact: <sip:alice@10.0.0.3:5060>", 1), 403},
		{"Contact: fwx", strings.Replace(request("REGISTER", "c2", 1, ""), "Contact: <sip:alice@10.0.0.2:5060>", "Contact: <sip:alice@198.51.100.1:5060>", 1), 403},
		{"second Contact: a third party", strings.Replace(request("REGISTER", "c3", 1, ""), "Contact: <sip:alice@10.0.0.2:5060>", "Contact: <sip:alice@10.0.0.2>, <sip:x@198.51.100.3>", 1), 403},
		{"SDP: another inside host", request("INVITE", "s1", 1, sdp("10.0.0.3", 6000)), 488},
		{"SDP: a third party", request("INVITE", "s2", 1, sdp("198.51.100.3", 6000)), 488},
		{"SDP: a medium's own c= elsewhere", request("INVITE", "s3", 1, sdp("10.0.0.2", 6000)+"c=IN IP4 10.0.0.3\r\n"), 488},
		{"SDP: origin elsewhere", request("INVITE", "s4", 1, strings.Replace(sdp("10.0.0.2", 6000), "o=- 1 1 IN IP4 10.0.0.2", "o=- 1 1 IN IP4 10.0.0.3", 1)), 488},
		{"SDP: a=rtcp elsewhere", request("INVITE", "s7", 1, sdp("10.0.0.2", 6000)+"a=rtcp:6001 IN IP4 10.0.0.3\r\n"), 488},
		{"SDP: a privileged port", request("INVITE", "s5", 1, sdp("10.0.0.2", 554)), 488},
		{"SDP: more media than max_media", request("INVITE", "s6", 1, sdp("10.0.0.2", 6000, 6002, 6004, 6006, 6008)), 488},
	}
	l := newLab(t, sip.Config{}, "")
	ua, uas := listen(t, l.Client, 5060), listen(t, l.Server, 5060)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ua.t, uas.t = t, t // failures stop the subtest, not the test
			ua.send(serverSIP, tt.msg)
			got, from := ua.message()
			sent, _ := sip.Parse([]byte(tt.msg), lim)
			if got.Status != tt.status || field(t, got, "call-id") != sent.CallID() || from != serverSIP ||
				!strings.Contains(field(t, got, "warning"), "fwx") {
				t.Errorf("the UA got %d (%s) from %v, want %d from fwx as the peer", got.Status, field(t, got, "warning"), from, tt.status)
			}
			uas.silent()
			if n := l.Session(t).Pinholes(); n != 0 {
				t.Errorf("%d pinholes, want 0", n)
			}
		})
	}
}

// TestAnswerNamingAThirdParty: a peer whose answer names a third party's
// media address opens nothing: neither the third party nor the peer
// reaches the ports fwx announced. With third_party_media the third
// party, and only it, does.
func TestAnswerNamingAThirdParty(t *testing.T) {
	for _, thirdParty := range []bool{false, true} {
		t.Run(fmt.Sprint("third_party_media=", thirdParty), func(t *testing.T) {
			l := newLab(t, sip.Config{ThirdPartyMedia: thirdParty}, "")
			ua, uas := listen(t, l.Client, 5060), listen(t, l.Server, 5060)
			rtp := listen(t, l.Client, 6000)
			peer, third := listen(t, l.Server, 7000), listen(t, l.Server2, 7000)
			ua.send(serverSIP, request("INVITE", "tp", 1, sdp("10.0.0.2", 6000)))
			inv, from := uas.message()
			_, port := mediaPort(t, inv)
			uas.send(from, reply(inv, 200, "<sip:bob@198.51.100.2>", sdp("198.51.100.3", 7000)))
			ua.message()
			peer.send(outside(port), "from the peer")
			rtp.silent()
			third.send(outside(port), "from the third party")
			if thirdParty {
				rtp.expect("from the third party", netip.AddrPortFrom(server2, 7000))
			} else {
				rtp.silent()
			}
		})
	}
}

// TestSlipstreaming: SIP text inside an HTTP request to TCP port 5060 (NAT
// Slipstreaming's browser, with segments cut so that one starts with
// REGISTER) passes as it is and opens nothing: every port it names is
// tried from the outside.
func TestSlipstreaming(t *testing.T) {
	l := newLab(t, sip.Config{}, "")
	sipText := request("REGISTER", "slip", 1, "", "Contact: <sip:x@10.0.0.2:5061;transport=tcp>") +
		request("INVITE", "slip", 2, sdp("10.0.0.2", 6000))
	post := fmt.Sprintf("POST /upload HTTP/1.1\r\nHost: 198.51.100.2:5060\r\nContent-Length: %d\r\n\r\n", len(sipText))
	ln, err := l.Server.ListenTCP(5060)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	got := make(chan string, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			got <- err.Error()
			return
		}
		defer c.Close()
		buf := make([]byte, len(post)+len(sipText))
		n := 0
		for n < len(buf) {
			m, err := c.Read(buf[n:])
			n += m
			if err != nil {
				break
			}
		}
		got <- string(buf[:n])
	}()
	c, err := l.Client.DialTCP(lab.Context(t, 5*time.Second), serverSIP)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.Write([]byte(post))
	time.Sleep(50 * time.Millisecond)
	c.Write([]byte(sipText))
	select {
	case g := <-got:
		if g != post+sipText {
			t.Errorf("the server got\n%q\nwant the request unchanged", g)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the server got nothing")
	}
	if n := l.Session(t).Pinholes(); n != 0 {
		t.Errorf("%d pinholes, want 0", n)
	}
	// Every port the text names, from the outside, over UDP and TCP.
	for _, port := range []uint16{5060, 5061, 6000, 6001} {
		sock := listen(t, l.Client, port)
		probe := listen(t, l.Server, 9000+port)
		probe.send(outside(port), "probe")
		sock.silent()
		if _, err := l.Server.DialTCP(lab.Context(t, 300*time.Millisecond), outside(port)); err == nil {
			t.Errorf("TCP port %d is open from the outside", port)
		}
	}
}

// TestOnlyWholeDatagrams: a datagram that does not start with SIP is not
// read, however SIP it is after its first bytes, and opens nothing; one
// that starts as SIP but does not parse, or is over max_message, is
// dropped.
func TestOnlyWholeDatagrams(t *testing.T) {
	l := newLab(t, sip.Config{MaxMessage: 1024}, "")
	ua, uas := listen(t, l.Client, 5060), listen(t, l.Server, 5060)
	inner := request("INVITE", "mid", 1, sdp("10.0.0.2", 6000))
	ua.send(serverSIP, "\x00\x01\x00\x00"+inner)
	if got, _ := uas.recv(5 * time.Second); got != "\x00\x01\x00\x00"+inner {
		t.Errorf("the UAS got %q, want the datagram unchanged", clipped(got))
	}
	if n := l.Session(t).Pinholes(); n != 0 {
		t.Errorf("%d pinholes, want 0", n)
	}
	rtp, probe := listen(t, l.Client, 6000), listen(t, l.Server, 7000)
	probe.send(outside(6000), "probe")
	rtp.silent()

	ua.send(serverSIP, strings.Replace(inner, "CSeq: 1 INVITE", "CSeq: one INVITE", 1))
	uas.silent()
	ua.send(serverSIP, request("OPTIONS", "big", 1, "", "X-Pad: "+strings.Repeat("a", 1024)))
	uas.silent()
}

// TestFailedCallsCloseMedia: CANCEL, a failure answer and an unanswered
// offer (after ring_timeout) close the ports an offer bound.
func TestFailedCallsCloseMedia(t *testing.T) {
	l := newLab(t, sip.Config{}, "")
	ua, uas := listen(t, l.Client, 5060), listen(t, l.Server, 5060)
	pinholes := func() int { return l.Session(t).Pinholes() }

	ua.send(serverSIP, request("INVITE", "cancelled", 1, sdp("10.0.0.2", 6000)))
	uas.message()
	if n := pinholes(); n != 2 {
		t.Fatalf("%d pinholes after an offer, want its pair", n)
	}
	ua.send(serverSIP, request("CANCEL", "cancelled", 1, ""))
	uas.message()
	if n := pinholes(); n != 0 {
		t.Errorf("%d pinholes after CANCEL, want 0", n)
	}

	ua.send(serverSIP, request("INVITE", "busy", 1, sdp("10.0.0.2", 6000)))
	inv, from := uas.message()
	uas.send(from, reply(inv, 486, "", ""))
	ua.message()
	if n := pinholes(); n != 0 {
		t.Errorf("%d pinholes after 486, want 0", n)
	}

	ua.send(serverSIP, request("INVITE", "unanswered", 1, sdp("10.0.0.2", 6000)))
	uas.message()
	l.Clock.Advance(2 * time.Minute)
	if n := pinholes(); n != 2 {
		t.Errorf("%d pinholes while it rings, want 2", n)
	}
	l.Clock.Advance(2 * time.Minute)
	waitFor(t, "the ring timeout", func() bool { return pinholes() == 0 })
}

// TestMaxCalls: a client may hold max_calls calls with media; fwx answers
// another offer 503.
func TestMaxCalls(t *testing.T) {
	l := newLab(t, sip.Config{}, strings.Replace(sipPolicy, "protocols: [sip, sip-tcp]}", "protocols: [sip, sip-tcp], filter_settings: {max_calls: 1}}", 1))
	ua, uas := listen(t, l.Client, 5060), listen(t, l.Server, 5060)
	ua.send(serverSIP, request("INVITE", "first", 1, sdp("10.0.0.2", 6000)))
	uas.message()
	ua.send(serverSIP, request("INVITE", "second", 1, sdp("10.0.0.2", 6002)))
	if got, _ := ua.message(); got.Status != 503 {
		t.Errorf("second call answered %d, want 503 from fwx", got.Status)
	}
	uas.silent()
}

// TestDescriptionOutsideACall: a description outside an INVITE, ACK,
// PRACK or UPDATE transaction (capabilities in an OPTIONS) is checked and
// rewritten to fwx's address, but opens nothing.
func TestDescriptionOutsideACall(t *testing.T) {
	l := newLab(t, sip.Config{}, "")
	ua, uas := listen(t, l.Client, 5060), listen(t, l.Server, 5060)
	ua.send(serverSIP, request("OPTIONS", "caps", 1, sdp("10.0.0.2", 6000)))
	got, _ := uas.message()
	if addr, port := mediaPort(t, got); addr != fwxlab.FWOutside || port != 6000 {
		t.Errorf("the peer got media %v:%d, want fwx's address and the port unchanged", addr, port)
	}
	if n := l.Session(t).Pinholes(); n != 0 {
		t.Errorf("%d pinholes, want 0", n)
	}
	ua.send(serverSIP, request("OPTIONS", "caps2", 1, sdp("10.0.0.3", 6000)))
	if got, _ := ua.message(); got.Status != 488 {
		t.Errorf("capabilities naming another host: %d, want 488", got.Status)
	}
}

// TestBodyIsNotAMessage: on a TCP connection, SIP text inside a message's
// body (as Content-Length frames it) is never read as a message, whatever
// the segments.
func TestBodyIsNotAMessage(t *testing.T) {
	l := newLab(t, sip.Config{}, "")
	ln, err := l.Server.ListenTCP(5060)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	c, err := l.Client.DialTCP(lab.Context(t, 5*time.Second), serverSIP)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	s, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ua, uas := newTCPPeer(t, c), newTCPPeer(t, s)
	inner := strings.Replace(request("INVITE", "inner", 1, sdp("10.0.0.3", 6000)), "10.0.0.2", "10.0.0.3", -1)
	message := fmt.Sprintf("MESSAGE sip:bob@198.51.100.2 SIP/2.0\r\nVia: SIP/2.0/TCP 10.0.0.2:5060;branch=z9hG4bKm\r\n"+
		"From: <sip:alice@10.0.0.2>;tag=a\r\nTo: <sip:bob@198.51.100.2>\r\nCall-ID: m\r\nCSeq: 1 MESSAGE\r\n"+
		"Content-Type: text/plain\r\nContent-Length: %d\r\n\r\n", len(inner))
	ua.write(message)
	time.Sleep(50 * time.Millisecond) // a segment starts with the INVITE
	ua.write(inner)
	got := uas.message()
	if got.Method != "MESSAGE" || string(got.Body) != inner {
		t.Fatalf("the peer got %s with body %q, want the MESSAGE with the INVITE as its text", got.Method, clipped(string(got.Body)))
	}
	if n := l.Session(t).Pinholes(); n != 0 {
		t.Errorf("%d pinholes, want 0", n)
	}
}

// TestMaxRegistrations: fwx keeps at most max_registrations of a client's
// registrations reachable.
func TestMaxRegistrations(t *testing.T) {
	l := newLab(t, sip.Config{MaxRegistrations: 1}, "")
	registrar := listen(t, l.Server, 5060)
	for _, port := range []uint16{5060, 5070} {
		ua := listen(t, l.Client, port)
		ua.send(serverSIP, strings.ReplaceAll(request("REGISTER", fmt.Sprint("reg-", port), 1, ""), "10.0.0.2:5060", fmt.Sprintf("10.0.0.2:%d", port)))
		reg, from := registrar.message()
		registrar.send(from, reply(reg, 200, field(t, reg, "contact")+";expires=600", ""))
		if ok, _ := ua.message(); ok.Status != 200 {
			t.Fatalf("REGISTER from %d answered %d", port, ok.Status)
		}
	}
	if n := l.Session(t).Pinholes(); n != 1 {
		t.Errorf("%d registrations kept reachable, want 1", n)
	}
}

// TestTCPMessageTooLarge: on a TCP connection, a message whose body would
// take it past max_message ends the connection before the body is read:
// the filter never holds more than max_message bytes of a message, and the
// peer gets nothing of it.
func TestTCPMessageTooLarge(t *testing.T) {
	l := newLab(t, sip.Config{MaxMessage: 2048}, "")
	ln, err := l.Server.ListenTCP(5060)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	c, err := l.Client.DialTCP(lab.Context(t, 5*time.Second), serverSIP)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	s, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	msg := strings.Replace(request("MESSAGE", "big", 1, strings.Repeat("a", 4096)), "SIP/2.0/UDP", "SIP/2.0/TCP", 1)
	c.Write([]byte(msg))
	s.SetReadDeadline(time.Now().Add(5 * time.Second))
	got, err := io.ReadAll(s)
	if !errors.Is(err, syscall.ECONNRESET) || len(got) > 0 {
		t.Errorf("the peer read %d bytes and %v; want nothing, and the connection reset", len(got), err)
	}
}
