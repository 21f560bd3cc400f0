package sip_test

import (
	"bufio"
	"io"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/fwx-dev/fwx/filters/sip"
	"github.com/fwx-dev/fwx/netstack/lab"
	"github.com/fwx-dev/fwx/netstack/lab/fwxlab"
)

// call makes the client's UA call the UAS on the server host with one
// audio medium on the client's port 6000, the UAS answering with media at
// its own port 7000; it returns the outside pair the UAS was told and
// the INVITE as the UAS got it.
func call(t *testing.T, ua, uas *udp, callID string) (uint16, *sip.Message) {
	t.Helper()
	ua.send(serverSIP, request("INVITE", callID, 1, sdp("10.0.0.2", 6000)))
	inv, from := uas.message()
	if from.Addr() != fwxlab.FWOutside {
		t.Fatalf("the INVITE came from %v, want fwx's outside address", from)
	}
	via, _ := sip.ParseVia(inv.Values("via")[0])
	contact, _ := sip.ParseContact(field(t, inv, "contact"))
	if via.SentBy != (sip.HostPort{Host: "198.51.100.1", Port: from.Port()}) || contact.URI.Host != via.SentBy {
		t.Fatalf("the UAS got Via %v and Contact %v, want fwx's endpoint %v", via.SentBy, contact.URI.Host, from)
	}
	addr, port := mediaPort(t, inv)
	if addr != fwxlab.FWOutside || port%2 != 0 || port == 6000 {
		t.Fatalf("the UAS was told media at %v:%d, want fwx's address and an even port of its own", addr, port)
	}
	uas.send(from, reply(inv, 200, "<sip:bob@198.51.100.2:5060>", sdp("198.51.100.2", 7000)))
	ok, _ := ua.message()
	if ok.Status != 200 {
		t.Fatalf("the UA got %d", ok.Status)
	}
	if via, _ := sip.ParseVia(ok.Values("via")[0]); via.SentBy != (sip.HostPort{Host: "10.0.0.2", Port: 5060}) {
		t.Errorf("the UA got its Via back as %v", via.SentBy)
	}
	return port, inv
}

// TestCallUDP: a call from a UA behind fwx to a UAS outside, over UDP.
// The UAS sees fwx's address in Via, Contact and the description, with an
// aligned pair for the audio; RTP and RTCP cross both ways, the UA's from
// the pair; no one else reaches the pair; BYE closes it.
func TestCallUDP(t *testing.T) {
	l := newLab(t, sip.Config{}, "")
	ua, uas := listen(t, l.Client, 5060), listen(t, l.Server, 5060)
	rtp, rtcp := listen(t, l.Client, 6000), listen(t, l.Client, 6001)
	peerRTP, peerRTCP := listen(t, l.Server, 7000), listen(t, l.Server, 7001)
	intruder := listen(t, l.Server2, 7000)

	pair, inv := call(t, ua, uas, "call-1")
	rtp.send(server(7000), "rtp from the UA")
	peerRTP.expect("rtp from the UA", outside(pair))
	rtcp.send(server(7001), "rtcp from the UA")
	peerRTCP.expect("rtcp from the UA", outside(pair+1))
	peerRTP.send(outside(pair), "rtp from the UAS")
	rtp.expect("rtp from the UAS", server(7000))
	peerRTCP.send(outside(pair+1), "rtcp from the UAS")
	rtcp.expect("rtcp from the UAS", server(7001))
	intruder.send(outside(pair), "intruder")
	rtp.silent()

	// The UAS hangs up: BYE to the UA's Contact, which names fwx.
	contact, _ := sip.ParseContact(field(t, inv, "contact"))
	bye := strings.Replace(request("BYE", "call-1", 2, ""), "BYE sip:bob@198.51.100.2", "BYE "+contact.URI.String(), 1)
	bye = strings.Replace(bye, "Via: SIP/2.0/UDP 10.0.0.2:5060", "Via: SIP/2.0/UDP 198.51.100.2:5060", 1)
	uas.send(netip.AddrPortFrom(fwxlab.FWOutside, contact.URI.Host.Port), bye)
	got, _ := ua.message()
	if got.Method != "BYE" || got.URI != "sip:alice@10.0.0.2:5060" {
		t.Fatalf("the UA got %s %s, want BYE to its own Contact", got.Method, got.URI)
	}
	peerRTP.send(outside(pair), "rtp after BYE")
	rtp.silent()
	if n := l.Session(t).Pinholes(); n != 0 {
		t.Errorf("%d pinholes after BYE, want 0", n)
	}
}

// register makes the UA register with the registrar on the server host,
// which grants expires seconds; it returns fwx's endpoint the UA is
// registered at.
func register(t *testing.T, ua, registrar *udp, expires int) netip.AddrPort {
	t.Helper()
	ua.send(serverSIP, request("REGISTER", "reg-1", 1, "", "Expires: 3600"))
	reg, from := registrar.message()
	contact, _ := sip.ParseContact(field(t, reg, "contact"))
	if contact.URI.Host != (sip.HostPort{Host: "198.51.100.1", Port: from.Port()}) {
		t.Fatalf("the registrar got Contact %v from %v", contact, from)
	}
	registrar.send(from, reply(reg, 200, contact.String()+";expires="+itoa(expires), ""))
	if ok, _ := ua.message(); ok.Status != 200 {
		t.Fatalf("REGISTER answered %d", ok.Status)
	}
	return from
}

func itoa(n int) string { return strconv.Itoa(n) }

// TestInboundCall: a UA behind fwx registers with a registrar outside;
// long after its flow to the registrar idled out, the registrar (and only
// it) can still reach it with an INVITE, which arrives for the UA's own
// Contact; the UA's answer gets media to the caller. When the
// registration expires, the registrar is refused.
func TestInboundCall(t *testing.T) {
	l := newLab(t, sip.Config{}, "")
	ua, registrar := listen(t, l.Client, 5060), listen(t, l.Server, 5060)
	other := listen(t, l.Server2, 5060)
	rtp, peerRTP := listen(t, l.Client, 6000), listen(t, l.Server, 7000)
	at := register(t, ua, registrar, 600)

	l.Clock.Advance(6 * time.Minute) // the UDP flow's timer (5 min) runs out
	l.FW.Expire()

	other.send(at, msg("INVITE sip:alice@198.51.100.1 SIP/2.0", "", "Via: SIP/2.0/UDP 198.51.100.3;branch=z9hG4bKx",
		"From: <sip:eve@198.51.100.3>;tag=e", "To: <sip:alice@198.51.100.1>", "Call-ID: in-0", "CSeq: 1 INVITE"))
	ua.silent()

	invite := msg("INVITE sip:alice@"+at.String()+" SIP/2.0", sdp("198.51.100.2", 7000),
		"Via: SIP/2.0/UDP 198.51.100.2:5060;branch=z9hG4bKin1", "From: <sip:bob@198.51.100.2>;tag=b",
		"To: <sip:alice@198.51.100.1>", "Call-ID: in-1", "CSeq: 1 INVITE", "Contact: <sip:bob@198.51.100.2:5060>")
	registrar.send(at, invite)
	inv, from := ua.message()
	if inv.URI != "sip:alice@10.0.0.2:5060" || from != serverSIP {
		t.Fatalf("the UA got INVITE %s from %v, want its own Contact from the registrar", inv.URI, from)
	}
	ua.send(serverSIP, reply(inv, 200, "<sip:alice@10.0.0.2:5060>", sdp("10.0.0.2", 6000)))
	ok, _ := registrar.message()
	addr, port := mediaPort(t, ok)
	if ok.Status != 200 || addr != fwxlab.FWOutside || port%2 != 0 {
		t.Fatalf("the caller got %d with media at %v:%d", ok.Status, addr, port)
	}
	peerRTP.send(outside(port), "rtp to the callee")
	rtp.expect("rtp to the callee", server(7000))
	rtp.send(server(7000), "rtp from the callee")
	peerRTP.expect("rtp from the callee", outside(port))

	l.Clock.Advance(12 * time.Minute) // past the registration and the idle call
	l.FW.Expire()
	waitFor(t, "the registration's end", func() bool { return l.Session(t).Pinholes() == 0 })
	registrar.send(at, strings.Replace(invite, "in-1", "in-2", 1))
	ua.silent()
}

// waitFor polls cond for a few seconds: the filter's timers run on their
// own goroutines once the lab clock passes them.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("waiting for %s: timed out", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestCallTCP: the same call over TCP: messages are framed on the stream,
// rewritten, and the media work.
func TestCallTCP(t *testing.T) {
	l := newLab(t, sip.Config{}, "")
	ln, err := l.Server.ListenTCP(5060)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	rtp, peerRTP := listen(t, l.Client, 6000), listen(t, l.Server, 7000)
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

	// Two messages in one write: the OPTIONS's body is not a message.
	options := msg("OPTIONS sip:bob@198.51.100.2 SIP/2.0", "", "Via: SIP/2.0/TCP 10.0.0.2:5060;branch=z9hG4bKo",
		"From: <sip:alice@10.0.0.2>;tag=a", "To: <sip:bob@198.51.100.2>", "Call-ID: o", "CSeq: 1 OPTIONS")
	invite := strings.Replace(request("INVITE", "tcp-1", 1, sdp("10.0.0.2", 6000)), "SIP/2.0/UDP", "SIP/2.0/TCP", 1)
	ua.write(options + invite)
	if got := uas.message(); got.Method != "OPTIONS" {
		t.Fatalf("the UAS got %s first", got.Method)
	}
	inv := uas.message()
	addr, port := mediaPort(t, inv)
	if contact := field(t, inv, "contact"); addr != fwxlab.FWOutside || !strings.Contains(contact, "198.51.100.1:") {
		t.Fatalf("the UAS got Contact %s and media at %v", contact, addr)
	}
	uas.write(reply(inv, 200, "<sip:bob@198.51.100.2;transport=tcp>", sdp("198.51.100.2", 7000)))
	if ok := ua.message(); ok.Status != 200 {
		t.Fatalf("the UA got %d", ok.Status)
	}
	peerRTP.send(outside(port), "rtp")
	rtp.expect("rtp", server(7000))
	rtp.send(server(7000), "rtp back")
	peerRTP.expect("rtp back", outside(port))
}

// tcpPeer reads SIP messages from a TCP connection.
type tcpPeer struct {
	t *testing.T
	c net.Conn
	r *bufio.Reader
}

func newTCPPeer(t *testing.T, c net.Conn) *tcpPeer { return &tcpPeer{t, c, bufio.NewReader(c)} }

func (p *tcpPeer) write(s string) {
	p.t.Helper()
	if _, err := io.WriteString(p.c, s); err != nil {
		p.t.Fatal(err)
	}
}

func (p *tcpPeer) message() *sip.Message {
	p.t.Helper()
	p.c.SetReadDeadline(time.Now().Add(5 * time.Second))
	var head strings.Builder
	for {
		line, err := p.r.ReadString('\n')
		if err != nil {
			p.t.Fatalf("reading a message: %v", err)
		}
		head.WriteString(line)
		if line == "\r\n" {
			break
		}
	}
	m, err := sip.ParseHead([]byte(head.String()), lim)
	if err != nil {
		p.t.Fatal(err)
	}
	n, _, _ := m.ContentLength()
	m.Body = make([]byte, n)
	if _, err := io.ReadFull(p.r, m.Body); err != nil {
		p.t.Fatal(err)
	}
	return m
}
