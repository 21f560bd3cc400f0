package sip_test

import (
	"fmt"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/fwx-dev/fwx/filters"
	"github.com/fwx-dev/fwx/filters/sip"
	"github.com/fwx-dev/fwx/netstack/lab"
	"github.com/fwx-dev/fwx/netstack/lab/fwxlab"
	"github.com/fwx-dev/fwx/session"
)

// sipPolicy lets the inside use SIP over UDP and TCP through the filter
// and nothing else, and filters by address and port: every answer,
// request and media packet for a client comes through the filter's
// pinholes.
const sipPolicy = `
protocols:
  - {name: sip, transport: udp, ports: [5060], filter: sip}
  - {name: sip-tcp, transport: tcp, ports: [5060], filter: sip}
rules:
  - {name: sip-out, action: allow, from: [internal], to: [external], protocols: [sip, sip-tcp]}
options:
  filtering: address-and-port-dependent
`

var (
	serverSIP = netip.AddrPortFrom(fwxlab.ServerAddr, 5060)
	server2   = fwxlab.Server2
)

// newLab starts fwx with the SIP filter configured by cfg; its timers
// run on the lab's manual clock, fwx's.
func newLab(t *testing.T, cfg sip.Config, policy string) *fwxlab.Lab {
	t.Helper()
	reg := &filters.Registry{}
	reg.Register(sip.Name, func() session.Filter { return sip.New(cfg) }, sip.Settings...)
	if policy == "" {
		policy = sipPolicy
	}
	return fwxlab.New(t, fwxlab.Options{Policy: policy, Filters: reg})
}

// udp is a UDP socket on a lab host: a SIP endpoint or a media port.
type udp struct {
	t    *testing.T
	c    net.PacketConn
	port uint16
}

func listen(t *testing.T, h *lab.Host, port uint16) *udp {
	t.Helper()
	c, err := h.ListenUDP(port)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return &udp{t: t, c: c, port: port}
}

func (u *udp) send(to netip.AddrPort, payload string) {
	u.t.Helper()
	if _, err := u.c.WriteTo([]byte(payload), net.UDPAddrFromAddrPort(to)); err != nil {
		u.t.Fatal(err)
	}
}

// recv returns the next datagram and its source, or "" after d.
func (u *udp) recv(d time.Duration) (string, netip.AddrPort) {
	buf := make([]byte, 65536)
	u.c.SetReadDeadline(time.Now().Add(d))
	n, from, err := u.c.ReadFrom(buf)
	if err != nil {
		return "", netip.AddrPort{}
	}
	return string(buf[:n]), from.(*net.UDPAddr).AddrPort()
}

// expect checks that payload arrives from src.
func (u *udp) expect(payload string, src netip.AddrPort) {
	u.t.Helper()
	got, from := u.recv(5 * time.Second)
	if got != payload || from != src {
		u.t.Fatalf("port %d got %q from %v, want %q from %v", u.port, got, from, payload, src)
	}
}

// silent checks that nothing arrives.
func (u *udp) silent() {
	u.t.Helper()
	if got, from := u.recv(300 * time.Millisecond); got != "" {
		u.t.Fatalf("port %d got %q from %v, want nothing", u.port, clipped(got), from)
	}
}

// message waits for a SIP message and returns it parsed, and its source.
func (u *udp) message() (*sip.Message, netip.AddrPort) {
	u.t.Helper()
	got, from := u.recv(5 * time.Second)
	if got == "" {
		u.t.Fatalf("port %d: no SIP message", u.port)
	}
	m, err := sip.Parse([]byte(got), lim)
	if err != nil {
		u.t.Fatalf("port %d got %q: %v", u.port, clipped(got), err)
	}
	return m, from
}

func clipped(s string) string {
	if len(s) > 300 {
		return s[:300] + "..."
	}
	return s
}

// msg builds a SIP message: a start line, fields, and a body with its
// Content-Length (and Content-Type application/sdp when it has one).
func msg(start string, body string, fields ...string) string {
	var b strings.Builder
	b.WriteString(start + "\r\n")
	for _, f := range fields {
		b.WriteString(f + "\r\n")
	}
	if body != "" {
		b.WriteString("Content-Type: application/sdp\r\n")
	}
	fmt.Fprintf(&b, "Content-Length: %d\r\n\r\n%s", len(body), body)
	return b.String()
}

// sdp is a session description with one audio medium (and more ports for
// more media) at addr.
func sdp(addr string, ports ...uint16) string {
	s := fmt.Sprintf("v=0\r\no=- 1 1 IN IP4 %s\r\ns=-\r\nc=IN IP4 %s\r\nt=0 0\r\n", addr, addr)
	for _, p := range ports {
		s += fmt.Sprintf("m=audio %d RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n", p)
	}
	return s
}

// request builds a request from the client's UA at 10.0.0.2:5060.
func request(method, callID string, cseq int, body string, extra ...string) string {
	fields := append([]string{
		"Via: SIP/2.0/UDP 10.0.0.2:5060;branch=z9hG4bK-" + callID + fmt.Sprint(cseq),
		"Max-Forwards: 70",
		"From: <sip:alice@10.0.0.2>;tag=a1",
		"To: <sip:bob@198.51.100.2>",
		"Call-ID: " + callID,
		fmt.Sprintf("CSeq: %d %s", cseq, method),
		"Contact: <sip:alice@10.0.0.2:5060>",
	}, extra...)
	return msg(method+" sip:bob@198.51.100.2 SIP/2.0", body, fields...)
}

// reply builds a response to m, with a To tag, the given Contact and body.
func reply(m *sip.Message, status int, contact, body string) string {
	var fields []string
	for _, f := range m.Fields {
		switch strings.ToLower(f.Name) {
		case "via", "from", "call-id", "cseq":
			fields = append(fields, f.Name+": "+f.Value)
		case "to":
			v := f.Value
			if !strings.Contains(v, "tag=") {
				v += ";tag=b1"
			}
			fields = append(fields, "To: "+v)
		}
	}
	if contact != "" {
		fields = append(fields, "Contact: "+contact)
	}
	return msg(fmt.Sprintf("SIP/2.0 %d Reason", status), body, fields...)
}

// field returns a field's one value.
func field(t *testing.T, m *sip.Message, name string) string {
	t.Helper()
	v, ok := m.Get(name)
	if !ok {
		t.Fatalf("no one %s in %s %s%d", name, m.Method, m.Reason, m.Status)
	}
	return v
}

// mediaPort returns the port of the first m= line of m's description,
// and its c= address.
func mediaPort(t *testing.T, m *sip.Message) (netip.Addr, uint16) {
	t.Helper()
	s, err := sip.ParseSDP(m.Body)
	if err != nil || len(s.Media) == 0 {
		t.Fatalf("no description in %s%d: %v", m.Method, m.Status, err)
	}
	a, _ := s.MediaAddr(&s.Media[0])
	return a, s.Media[0].Port
}

func outside(port uint16) netip.AddrPort { return netip.AddrPortFrom(fwxlab.FWOutside, port) }

func server(port uint16) netip.AddrPort { return netip.AddrPortFrom(fwxlab.ServerAddr, port) }
