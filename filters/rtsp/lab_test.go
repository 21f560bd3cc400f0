package rtsp_test

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"net/textproto"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/fwx-dev/fwx/filters"
	"github.com/fwx-dev/fwx/filters/rtsp"
	"github.com/fwx-dev/fwx/netstack/lab"
	"github.com/fwx-dev/fwx/netstack/lab/fwxlab"
	"github.com/fwx-dev/fwx/session"
)

// rtspPolicy lets the inside use RTSP through the filter and nothing else,
// publishes an inside RTSP server (client2), and filters by address and
// port: every media datagram must come through one of the filter's
// pinholes.
const rtspPolicy = `
protocols:
  - {name: rtsp, transport: tcp, ports: [554, 8554], filter: rtsp}
  - {name: rtsp-server, transport: tcp, ports: [8554], direction: inbound, filter: rtsp}
rules:
  - {name: rtsp-out, action: allow, from: [internal], to: [external], protocols: [rtsp]}
publish:
  - {name: rtspd, protocol: rtsp-server, listen: ":8554", server: "10.0.0.3:8554"}
options:
  filtering: address-and-port-dependent
`

func newLab(t *testing.T, cfg rtsp.Config) *fwxlab.Lab {
	t.Helper()
	reg := &filters.Registry{}
	reg.Register(rtsp.Name, func() session.Filter { return rtsp.New(cfg) })
	return fwxlab.New(t, fwxlab.Options{Policy: rtspPolicy, Filters: reg})
}

// request is what the scripted server read.
type request struct {
	method, uri string
	header      textproto.MIMEHeader
	from        netip.AddrPort // the control connection's peer
}

// server is a scripted RTSP server on a lab host. By default it answers
// every request 200, and a SETUP with the client's transport plus
// server_port (a new pair per SETUP, from 6970) and a session; answer
// overrides that for a request when it returns non-empty.
type server struct {
	t      *testing.T
	host   *lab.Host
	got    chan request
	answer func(r request, cseq string) string

	mu    sync.Mutex
	ports uint16
}

func serve(t *testing.T, h *lab.Host, port uint16) *server {
	s := &server{t: t, host: h, got: make(chan request, 64), ports: 6970}
	ln, err := h.ListenTCP(port)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go s.control(c)
		}
	}()
	return s
}

func (s *server) control(c net.Conn) {
	defer c.Close()
	from := c.RemoteAddr().(*net.TCPAddr).AddrPort()
	br := bufio.NewReader(c)
	r := textproto.NewReader(br)
	for {
		if b, err := br.Peek(4); err == nil && b[0] == '$' {
			// An interleaved frame (RTCP from the player).
			frame := make([]byte, 4+int(b[2])<<8+int(b[3]))
			io.ReadFull(br, frame)
			s.got <- request{method: "$", uri: string(frame[4:]), from: from}
			continue
		}
		line, err := r.ReadLine()
		if err != nil {
			return
		}
		f := strings.Fields(line)
		if len(f) != 3 {
			s.got <- request{method: line, from: from}
			continue
		}
		h, err := r.ReadMIMEHeader()
		if err != nil {
			return
		}
		if n, _ := strconv.Atoi(h.Get("Content-Length")); n > 0 {
			io.CopyN(io.Discard, r.R, int64(n))
		}
		req := request{method: f[0], uri: f[1], header: h, from: from}
		s.got <- req
		cseq := h.Get("CSeq")
		if s.answer != nil {
			if a := s.answer(req, cseq); a != "" {
				io.WriteString(c, a)
				continue
			}
		}
		switch f[0] {
		case "SETUP":
			s.mu.Lock()
			p := s.ports
			s.ports += 2
			s.mu.Unlock()
			fmt.Fprintf(c, "RTSP/1.0 200 OK\r\nCSeq: %s\r\nSession: 4711;timeout=60\r\nTransport: %s;server_port=%d-%d\r\n\r\n",
				cseq, strings.Split(h.Get("Transport"), ",")[0], p, p+1)
		default:
			fmt.Fprintf(c, "RTSP/1.0 200 OK\r\nCSeq: %s\r\n\r\n", cseq)
		}
	}
}

func (s *server) next(t *testing.T) request {
	t.Helper()
	select {
	case r := <-s.got:
		return r
	case <-time.After(5 * time.Second):
		t.Fatal("the server got no request")
		return request{}
	}
}

// nothing checks that the server got no request.
func (s *server) nothing(t *testing.T) {
	t.Helper()
	select {
	case r := <-s.got:
		t.Fatalf("the server got %s %s", r.method, r.uri)
	case <-time.After(200 * time.Millisecond):
	}
}

// player is an RTSP client's control connection.
type player struct {
	t    *testing.T
	c    net.Conn
	r    *textproto.Reader
	cseq int
}

type response struct {
	status int
	header textproto.MIMEHeader
}

func dial(t *testing.T, h *lab.Host, dst netip.AddrPort) *player {
	t.Helper()
	c, err := h.DialTCP(lab.Context(t, 5*time.Second), dst)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return &player{t: t, c: c, r: textproto.NewReader(bufio.NewReader(c))}
}

// do sends a request with the next CSeq and the given fields, and reads
// the response.
func (p *player) do(method, uri string, fields ...string) response {
	p.t.Helper()
	p.cseq++
	msg := fmt.Sprintf("%s %s RTSP/1.0\r\nCSeq: %d\r\n", method, uri, p.cseq)
	for _, f := range fields {
		msg += f + "\r\n"
	}
	p.send(msg + "\r\n")
	return p.read()
}

func (p *player) send(s string) {
	p.t.Helper()
	if _, err := io.WriteString(p.c, s); err != nil {
		p.t.Fatal(err)
	}
}

func (p *player) read() response {
	p.t.Helper()
	p.c.SetReadDeadline(time.Now().Add(5 * time.Second))
	line, err := p.r.ReadLine()
	if err != nil {
		p.t.Fatalf("reading a response: %v", err)
	}
	f := strings.Fields(line)
	if len(f) < 2 || f[0] != "RTSP/1.0" {
		p.t.Fatalf("status line %q", line)
	}
	h, err := p.r.ReadMIMEHeader()
	if err != nil {
		p.t.Fatal(err)
	}
	code, _ := strconv.Atoi(f[1])
	return response{code, h}
}

// closed reports whether the control connection was ended by fwx.
func (p *player) closed() bool {
	p.c.SetReadDeadline(time.Now().Add(3 * time.Second))
	_, err := p.r.ReadLine()
	var ne net.Error
	return err != nil && !(errors.As(err, &ne) && ne.Timeout())
}

var portsRE = regexp.MustCompile(`(?i)(client|server)_port=(\d+)(?:-(\d+))?`)

// ports returns the port pair of a Transport value's client_port or
// server_port.
func ports(t *testing.T, transport, which string) (uint16, uint16) {
	t.Helper()
	for _, m := range portsRE.FindAllStringSubmatch(transport, -1) {
		if strings.EqualFold(m[1], which) {
			a, _ := strconv.Atoi(m[2])
			b, _ := strconv.Atoi(m[3])
			return uint16(a), uint16(b)
		}
	}
	t.Fatalf("no %s_port in %q", which, transport)
	return 0, 0
}

// media is one UDP port of a host, for RTP or RTCP.
type media struct {
	t    *testing.T
	conn net.PacketConn
	host *lab.Host
	port uint16
}

func listenMedia(t *testing.T, h *lab.Host, port uint16) *media {
	t.Helper()
	c, err := h.ListenUDP(port)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return &media{t: t, conn: c, host: h, port: port}
}

func (m *media) send(to netip.AddrPort, payload string) {
	m.t.Helper()
	if _, err := m.conn.WriteTo([]byte(payload), net.UDPAddrFromAddrPort(to)); err != nil {
		m.t.Fatal(err)
	}
}

// recv waits for a datagram and returns its payload and source; "" if
// none came within d.
func (m *media) recv(d time.Duration) (string, netip.AddrPort) {
	buf := make([]byte, 2048)
	m.conn.SetReadDeadline(time.Now().Add(d))
	n, from, err := m.conn.ReadFrom(buf)
	if err != nil {
		return "", netip.AddrPort{}
	}
	return string(buf[:n]), from.(*net.UDPAddr).AddrPort()
}

// expect checks that payload arrives from src.
func (m *media) expect(payload string, src netip.AddrPort) {
	m.t.Helper()
	got, from := m.recv(3 * time.Second)
	if got != payload || from != src {
		m.t.Fatalf("port %d got %q from %v, want %q from %v", m.port, got, from, payload, src)
	}
}

// silent checks that nothing arrives.
func (m *media) silent() {
	m.t.Helper()
	if got, from := m.recv(300 * time.Millisecond); got != "" {
		m.t.Fatalf("port %d got %q from %v, want nothing", m.port, got, from)
	}
}

func outside(port uint16) netip.AddrPort { return netip.AddrPortFrom(fwxlab.FWOutside, port) }
