package ftp_test

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/fwx-dev/fwx/filters"
	"github.com/fwx-dev/fwx/filters/ftp"
	"github.com/fwx-dev/fwx/netstack/lab"
	"github.com/fwx-dev/fwx/netstack/lab/fwxlab"
	"github.com/fwx-dev/fwx/session"
)

// ftpPolicy lets the client use FTP through the filter and nothing else, so
// every data connection must come through one of the filter's pinholes; the
// NAT filters address-and-port-dependently, the strictest way, so nothing
// but a pinhole lets the server in.
const ftpPolicy = `
options:
  filtering: address-and-port-dependent
protocols:
  - {name: ftp, transport: tcp, ports: [21], filter: ftp}
  - {name: ftp-ro, transport: tcp, ports: [2121], filter: ftp-readonly}
  - {name: ftp-server, transport: tcp, ports: [21], direction: inbound, filter: ftp}
rules:
  - {name: ftp-out, action: allow, from: [internal], to: [external], protocols: [ftp, ftp-ro]}
publish:
  - {name: ftpd, protocol: ftp-server, listen: ":21", server: "10.0.0.2:21"}
`

func newLab(t *testing.T) *fwxlab.Lab {
	reg := &filters.Registry{}
	reg.Register(ftp.Name, func() session.Filter { return ftp.New(ftp.Config{}) })
	reg.Register(ftp.NameReadOnly, func() session.Filter { return ftp.New(ftp.Config{ReadOnly: true}) })
	return fwxlab.New(t, fwxlab.Options{Policy: ftpPolicy, Filters: reg})
}

// server is a scripted FTP server on a lab host: it answers the commands
// the tests use, reports what it received (but USER and PASS), and makes
// real data connections (active and passive).
type server struct {
	t    *testing.T
	host *lab.Host
	// got receives every command line the server reads.
	got chan string
	// reply overrides the reply to a verb.
	reply map[string]string
	// hold, if set, delays the reply to a verb until it is closed.
	hold map[string]chan struct{}
	// greeting replaces "220 scripted" (set before the first dial).
	greeting string
	mu       sync.Mutex
	pasv     uint16
}

func serve(t *testing.T, h *lab.Host, port uint16) *server {
	return serveOn(t, h, netip.AddrPortFrom(netip.IPv4Unspecified(), port))
}

// serveOn is serve on addr, of either family.
func serveOn(t *testing.T, h *lab.Host, addr netip.AddrPort) *server {
	s := &server{t: t, host: h, got: make(chan string, 256), reply: map[string]string{},
		hold: map[string]chan struct{}{}, greeting: "220 scripted", pasv: 30000}
	ln, err := h.ListenTCPOn(addr)
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
	self := c.LocalAddr().(*net.TCPAddr).AddrPort().Addr()
	if ch, ok := s.hold["greeting"]; ok {
		<-ch
	}
	fmt.Fprintf(c, "%s\r\n", s.greeting)
	if ch, ok := s.hold["greeting-end"]; ok {
		<-ch // a multi-line greeting, ended later
		fmt.Fprintf(c, "220 ready\r\n")
	}
	// Lines are read as they come, ahead of the replies, as a real
	// server's socket buffer takes them: got shows what reached the
	// server even while a reply is held.
	lines, done := make(chan string, 256), make(chan struct{})
	defer close(done)
	go func() {
		defer close(lines)
		r := bufio.NewReader(c)
		for {
			line, err := r.ReadString('\n')
			if err != nil {
				return
			}
			line = strings.TrimRight(line, "\r\n")
			if line == "" {
				continue // no reply to an empty line, as vsftpd and pure-ftpd
			}
			if verb, _, _ := strings.Cut(line, " "); !strings.EqualFold(verb, "USER") && !strings.EqualFold(verb, "PASS") {
				select { // the login is not news
				case s.got <- line:
				default: // a test that sends many commands does not read them all
				}
			}
			select {
			case lines <- line:
			case <-done:
				return
			}
		}
	}()
	var active netip.AddrPort
	var passive net.Listener
	for line := range lines {
		verb, arg, _ := strings.Cut(line, " ")
		verb = strings.ToUpper(verb)
		if ch, ok := s.hold[verb]; ok {
			<-ch
		}
		if rep, ok := s.reply[verb]; ok {
			fmt.Fprintf(c, "%s\r\n", rep)
			continue
		}
		switch verb {
		case "PORT", "EPRT":
			var err error
			if verb == "PORT" {
				active, err = ftp.ParsePORT(arg)
			} else {
				active, err = ftp.ParseEPRT(arg)
			}
			if err != nil {
				fmt.Fprintf(c, "501 bad\r\n")
				continue
			}
			fmt.Fprintf(c, "200 ok\r\n")
		case "PASV", "EPSV":
			s.mu.Lock()
			s.pasv++
			port := s.pasv
			s.mu.Unlock()
			ln, err := s.host.ListenTCPOn(netip.AddrPortFrom(self, port))
			if err != nil {
				fmt.Fprintf(c, "425 no\r\n")
				continue
			}
			passive, active = ln, netip.AddrPort{}
			if verb == "PASV" {
				fmt.Fprintf(c, "227 %s\r\n", ftp.Format227(netip.AddrPortFrom(self, port)))
			} else {
				fmt.Fprintf(c, "229 %s\r\n", ftp.Format229(port))
			}
		case "RETR":
			data := s.dataConn(active, passive)
			if data == nil {
				fmt.Fprintf(c, "425 no data connection\r\n")
				continue
			}
			fmt.Fprintf(c, "150 sending\r\n")
			fmt.Fprintf(data, "contents of %s", arg)
			data.Close()
			fmt.Fprintf(c, "226 done\r\n")
		case "AUTH":
			fmt.Fprintf(c, "234 proceed\r\n")
		case "USER":
			fmt.Fprintf(c, "331 password please\r\n")
		case "PASS":
			fmt.Fprintf(c, "230 logged in\r\n")
		case "QUIT":
			fmt.Fprintf(c, "221 bye\r\n")
			return
		default:
			fmt.Fprintf(c, "200 %s ok\r\n", verb)
		}
	}
}

// dataConn opens the data connection: to the PORT address, or accepting on
// the passive listener.
func (s *server) dataConn(active netip.AddrPort, passive net.Listener) net.Conn {
	ctx := lab.Context(s.t, 3*time.Second)
	if active.IsValid() {
		c, err := s.host.DialTCP(ctx, active)
		if err != nil {
			return nil
		}
		return c
	}
	if passive == nil {
		return nil
	}
	defer passive.Close()
	type result struct{ c net.Conn }
	ch := make(chan result, 1)
	go func() {
		c, _ := passive.Accept()
		ch <- result{c}
	}()
	select {
	case r := <-ch:
		return r.c
	case <-ctx.Done():
		return nil
	}
}

// client is a raw FTP control connection, line by line.
type client struct {
	t *testing.T
	c net.Conn
	r *bufio.Reader
}

// dial opens a control connection and logs in.
func dial(t *testing.T, h *lab.Host, dst netip.AddrPort) *client {
	t.Helper()
	c := dialNoLogin(t, h, dst)
	c.expect("220")
	c.cmd("USER anonymous", "331")
	c.cmd("PASS guest", "230")
	return c
}

// dialNoLogin opens a control connection and reads nothing.
func dialNoLogin(t *testing.T, h *lab.Host, dst netip.AddrPort) *client {
	t.Helper()
	c, err := h.DialTCP(lab.Context(t, 5*time.Second), dst)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return &client{t: t, c: c, r: bufio.NewReader(c)}
}

func (c *client) send(s string) {
	c.t.Helper()
	if _, err := io.WriteString(c.c, s); err != nil {
		c.t.Fatal(err)
	}
}

// expect reads a reply line and checks its code.
func (c *client) expect(code string) string {
	c.t.Helper()
	c.c.SetReadDeadline(time.Now().Add(5 * time.Second))
	line, err := c.r.ReadString('\n')
	if err != nil {
		c.t.Fatalf("waiting for %s: %v", code, err)
	}
	if !strings.HasPrefix(line, code) {
		c.t.Fatalf("reply %q, want %s", line, code)
	}
	return strings.TrimRight(line, "\r\n")
}

func (c *client) cmd(s, code string) string {
	c.t.Helper()
	c.send(s + "\r\n")
	return c.expect(code)
}

// received returns the next command line the server read.
func (s *server) received(t *testing.T) string {
	t.Helper()
	select {
	case l := <-s.got:
		return l
	case <-time.After(5 * time.Second):
		t.Fatal("the server received nothing")
	}
	return ""
}

func (s *server) receivedNothing(t *testing.T) {
	t.Helper()
	select {
	case l := <-s.got:
		t.Errorf("the server received %q", l)
	case <-time.After(50 * time.Millisecond):
	}
}

var ftpServer = netip.AddrPortFrom(fwxlab.ServerAddr, 21)

// listenData opens a listener on the client for active mode and returns
// the bytes the first data connection brings, and its peer.
func listenData(t *testing.T, h *lab.Host, port uint16) <-chan string {
	return listenDataOn(t, h, netip.AddrPortFrom(netip.IPv4Unspecified(), port))
}

// listenDataOn is listenData on addr, of either family.
func listenDataOn(t *testing.T, h *lab.Host, addr netip.AddrPort) <-chan string {
	ln, err := h.ListenTCPOn(addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	ch := make(chan string, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		peer := "?"
		if a, ok := c.RemoteAddr().(*net.TCPAddr); ok {
			peer = a.AddrPort().Addr().String()
		}
		b, _ := io.ReadAll(c)
		ch <- peer + " " + string(b)
	}()
	return ch
}

func recvData(t *testing.T, ch <-chan string) string {
	t.Helper()
	select {
	case s := <-ch:
		return s
	case <-time.After(5 * time.Second):
		t.Fatal("no data connection")
	}
	return ""
}

// TestActiveMode: PORT and EPRT from the client are rewritten to fwx's
// outside address and a bound port; the server's data connection reaches
// the client, from the server's real address.
func TestActiveMode(t *testing.T) {
	for _, verb := range []string{"PORT", "EPRT"} {
		t.Run(verb, func(t *testing.T) {
			l := newLab(t)
			srv := serve(t, l.Server, 21)
			data := listenData(t, l.Client, 5001)
			c := dial(t, l.Client, ftpServer)
			arg := ftp.FormatPORT(netip.AddrPortFrom(fwxlab.ClientAddr, 5001))
			if verb == "EPRT" {
				arg = ftp.FormatEPRT(netip.AddrPortFrom(fwxlab.ClientAddr, 5001))
			}
			c.cmd(verb+" "+arg, "200")
			got := srv.received(t)
			var ap netip.AddrPort
			var err error
			if verb == "PORT" {
				ap, err = ftp.ParsePORT(strings.TrimPrefix(got, "PORT "))
			} else {
				ap, err = ftp.ParseEPRT(strings.TrimPrefix(got, "EPRT "))
			}
			if err != nil || ap.Addr() != fwxlab.FWOutside {
				t.Fatalf("server got %q: want the command rewritten to fwx's outside address", got)
			}
			c.cmd("RETR file", "150")
			if got := recvData(t, data); got != fwxlab.ServerAddr.String()+" contents of file" {
				t.Errorf("data connection: %q", got)
			}
			c.expect("226")
		})
	}
}

// TestPassiveMode: a 227 or 229 reply lets the client connect to the
// server's data port, which the policy alone forbids.
func TestPassiveMode(t *testing.T) {
	for _, verb := range []string{"PASV", "EPSV"} {
		t.Run(verb, func(t *testing.T) {
			l := newLab(t)
			serve(t, l.Server, 21)
			c := dial(t, l.Client, ftpServer)
			line := c.cmd(verb, map[string]string{"PASV": "227", "EPSV": "229"}[verb])
			var ap netip.AddrPort
			if verb == "PASV" {
				ap, _ = ftp.Parse227(line[4:])
			} else {
				port, _ := ftp.Parse229(line[4:])
				ap = netip.AddrPortFrom(fwxlab.ServerAddr, port)
			}
			if ap.Addr() != fwxlab.ServerAddr {
				t.Fatalf("reply %q: want the server's own address, unchanged", line)
			}
			d, err := l.Client.DialTCP(lab.Context(t, 5*time.Second), ap)
			if err != nil {
				t.Fatalf("data connection refused: %v", err)
			}
			defer d.Close()
			c.cmd("RETR f", "150")
			b, _ := io.ReadAll(d)
			if string(b) != "contents of f" {
				t.Errorf("data %q", b)
			}
		})
	}
}

var publishedFTP = netip.AddrPortFrom(fwxlab.FWOutside, 21)

// TestPublishedPassive: a published inside server's 227/229 names its inside
// address; the filter rewrites it to fwx's outside address and a port bound
// for the outside client, whose data connection reaches the server.
func TestPublishedPassive(t *testing.T) {
	for _, verb := range []string{"PASV", "EPSV"} {
		t.Run(verb, func(t *testing.T) {
			l := newLab(t)
			serve(t, l.Client, 21) // the published server, inside
			c := dial(t, l.Server, publishedFTP)
			line := c.cmd(verb, map[string]string{"PASV": "227", "EPSV": "229"}[verb])
			var ap netip.AddrPort
			if verb == "PASV" {
				ap, _ = ftp.Parse227(line[4:])
			} else {
				port, _ := ftp.Parse229(line[4:])
				ap = netip.AddrPortFrom(fwxlab.FWOutside, port)
			}
			if ap.Addr() != fwxlab.FWOutside {
				t.Fatalf("reply %q: want fwx's outside address", line)
			}
			// Only the control connection's client may use the port.
			if d, err := l.Server2.DialTCP(lab.Context(t, 300*time.Millisecond), ap); err == nil {
				d.Close()
				t.Error("a third party used the published server's data port")
			}
			d, err := l.Server.DialTCP(lab.Context(t, 5*time.Second), ap)
			if err != nil {
				t.Fatalf("data connection: %v", err)
			}
			defer d.Close()
			c.cmd("RETR f", "150")
			b, _ := io.ReadAll(d)
			if string(b) != "contents of f" {
				t.Errorf("data %q", b)
			}
		})
	}
}

// TestPublishedActive: PORT from the outside client of a published server
// passes unchanged, and the server's data connection reaches that client
// (the only address it may name).
func TestPublishedActive(t *testing.T) {
	l := newLab(t)
	srv := serve(t, l.Client, 21)
	data := listenData(t, l.Server, 5010)
	c := dial(t, l.Server, publishedFTP)
	port := "PORT " + ftp.FormatPORT(netip.AddrPortFrom(fwxlab.ServerAddr, 5010))
	c.cmd(port, "200")
	if got := srv.received(t); got != port {
		t.Errorf("published server got %q, want %q", got, port)
	}
	c.cmd("RETR f", "150")
	if got := recvData(t, data); got != fwxlab.FWOutside.String()+" contents of f" {
		t.Errorf("data connection: %q, want from fwx's outside address", got)
	}
	// A PORT naming anyone else is refused.
	c.expect("226")
	c.cmd("PORT "+ftp.FormatPORT(netip.AddrPortFrom(fwxlab.Server2, 5010)), "500")
}
