package callback_test

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/fwx-dev/fwx/filters"
	"github.com/fwx-dev/fwx/filters/example/callback"
	"github.com/fwx-dev/fwx/netstack/lab"
	"github.com/fwx-dev/fwx/netstack/lab/fwxlab"
	"github.com/fwx-dev/fwx/session"
)

// The tests run fwx in the fwx lab (package fwxlab), whose hosts they use:
//
//	client 10.0.0.2 ─ inside ─ fwx ─ outside ─┬ server  198.51.100.2
//	                  10.0.0.1   198.51.100.1 └ server2 198.51.100.3

// labPolicy lets the client out on the callback protocol only, and binds
// the protocol to the filter: a callback connection can come in only
// through the filter's pinhole.
const labPolicy = `
protocols:
  - {name: callback, transport: tcp, ports: [7000], filter: callback}
rules:
  - {name: callback-out, action: allow, from: [internal], to: [external], protocols: [callback]}
`

type testbed struct{ *fwxlab.Lab }

// newTestbed runs fwx with the callback filter between the lab's hosts,
// and stops everything when the test ends, checking that no goroutine is
// left behind.
func newTestbed(t *testing.T) *testbed {
	t.Helper()
	reg := &filters.Registry{}
	callback.Register(reg)
	return &testbed{fwxlab.New(t, fwxlab.Options{Policy: labPolicy, Filters: reg})}
}

// waitPinholes waits until the session holds want connection objects and
// permissions (a filtered connection in progress counts as one).
func waitPinholes(t *testing.T, s *session.Session, want int) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for s.Pinholes() != want {
		if time.Now().After(deadline) {
			t.Fatalf("session holds %d pinholes, want %d", s.Pinholes(), want)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func recv[T any](t *testing.T, ch <-chan T) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(5 * time.Second):
		t.Fatal("timed out")
	}
	panic("unreachable")
}

// janitor runs a test's helper goroutines and, when the test ends, closes
// what they block on and waits for them, before the testbed counts
// goroutines.
type janitor struct {
	wg      sync.WaitGroup
	mu      sync.Mutex
	closed  bool
	closers []io.Closer
}

func newJanitor(t *testing.T) *janitor {
	j := &janitor{}
	t.Cleanup(func() {
		j.mu.Lock()
		j.closed = true
		closers := j.closers
		j.mu.Unlock()
		for _, c := range closers {
			c.Close()
		}
		j.wg.Wait()
	})
	return j
}

// track closes c when the test ends (at once if it has ended).
func (j *janitor) track(c io.Closer) {
	j.mu.Lock()
	defer j.mu.Unlock()
	if j.closed {
		c.Close()
		return
	}
	j.closers = append(j.closers, c)
}

// callbackServer is the far end of the callback protocol, on a lab host.
// It answers each line with one line: "OK <port>" for a CALLBACK it
// handled, "ERR dial" when its dial failed, "ECHO <line>" for anything
// else. With dial set it handles CALLBACK <port> as the protocol says: it
// dials back to the control connection's peer on port and writes
// "hello\r\n"; without, it only reports the port, so a test can dial it.
type callbackServer struct {
	dial  bool
	lines chan string         // every line received, without "\r\n"
	peers chan netip.AddrPort // every control connection's peer
}

func startServer(t *testing.T, j *janitor, h *lab.Host, dial bool) *callbackServer {
	t.Helper()
	ln, err := h.ListenTCP(7000)
	if err != nil {
		t.Fatal(err)
	}
	j.track(ln)
	srv := &callbackServer{dial: dial, lines: make(chan string, 64), peers: make(chan netip.AddrPort, 8)}
	j.wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			j.track(c)
			j.wg.Go(func() { srv.serve(h, c) })
		}
	})
	return srv
}

func (srv *callbackServer) serve(h *lab.Host, c net.Conn) {
	defer c.Close()
	peer := c.RemoteAddr().(*net.TCPAddr).AddrPort()
	srv.peers <- peer
	sc := bufio.NewScanner(c)
	for sc.Scan() {
		line := strings.TrimSuffix(sc.Text(), "\r")
		srv.lines <- line
		arg, ok := strings.CutPrefix(line, "CALLBACK ")
		port, err := strconv.ParseUint(arg, 10, 16)
		var reply string
		switch {
		case !ok || err != nil:
			reply = "ECHO " + line
		case !srv.dial || dialBack(h, netip.AddrPortFrom(peer.Addr(), uint16(port))) == nil:
			reply = "OK " + arg
		default:
			reply = "ERR dial"
		}
		if _, err := io.WriteString(c, reply+"\r\n"); err != nil {
			return
		}
	}
}

// dialBack opens the callback connection and says hello.
func dialBack(h *lab.Host, dst netip.AddrPort) error {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	c, err := h.DialTCP(ctx, dst)
	if err != nil {
		return err
	}
	defer c.Close()
	_, err = io.WriteString(c, "hello\r\n")
	return err
}

// callbackConn is a callback connection the client accepted.
type callbackConn struct {
	conn net.Conn
	peer netip.AddrPort
}

// listenCallbacks accepts callback connections on the client's port.
func listenCallbacks(t *testing.T, j *janitor, h *lab.Host, port uint16) <-chan callbackConn {
	t.Helper()
	ln, err := h.ListenTCP(port)
	if err != nil {
		t.Fatal(err)
	}
	j.track(ln)
	got := make(chan callbackConn, 8)
	j.wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			j.track(c)
			got <- callbackConn{c, c.RemoteAddr().(*net.TCPAddr).AddrPort()}
		}
	})
	return got
}

// control is the client's control connection to the server.
type control struct {
	net.Conn
	r *bufio.Reader
}

func dialControl(t *testing.T, j *janitor, tb *testbed) *control {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, err := tb.Client.DialTCP(ctx, netip.AddrPortFrom(fwxlab.ServerAddr, 7000))
	if err != nil {
		t.Fatal(err)
	}
	j.track(c)
	return &control{c, bufio.NewReader(c)}
}

func (c *control) send(t *testing.T, s string) {
	t.Helper()
	c.SetWriteDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.WriteString(c, s); err != nil {
		t.Fatal(err)
	}
}

// readLine reads one line, without "\r\n".
func (c *control) readLine(t *testing.T) string {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	line, err := c.r.ReadString('\n')
	if err != nil {
		t.Fatalf("read from the control connection: %v (after %q)", err, line)
	}
	return strings.TrimSuffix(line, "\r\n")
}

// callback sends CALLBACK port and returns the port fwx bound, as the
// server saw it and answered.
func (c *control) callback(t *testing.T, port uint16) uint16 {
	t.Helper()
	c.send(t, "CALLBACK "+strconv.Itoa(int(port))+"\r\n")
	reply := c.readLine(t)
	arg, ok := strings.CutPrefix(reply, "OK ")
	bound, err := strconv.ParseUint(arg, 10, 16)
	if !ok || err != nil {
		t.Fatalf("CALLBACK %d: reply %q, want OK <port>", port, reply)
	}
	return uint16(bound)
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

func readAll(t *testing.T, c net.Conn) string {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	b, err := io.ReadAll(c)
	if err != nil {
		t.Errorf("read the callback connection: %v", err)
	}
	return string(b)
}
