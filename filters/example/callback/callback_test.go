package callback_test

import (
	"net/netip"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/fwx-dev/fwx/filters/example/callback"
	"github.com/fwx-dev/fwx/netstack/lab"
	"github.com/fwx-dev/fwx/netstack/lab/fwxlab"
)

// TestCallback: a CALLBACK through fwx reaches the client's listener from
// the real server, which saw only fwx's outside address; other lines pass
// both ways unchanged.
func TestCallback(t *testing.T) {
	tb := newTestbed(t)
	j := newJanitor(t)
	srv := startServer(t, j, tb.Server, true)
	callbacks := listenCallbacks(t, j, tb.Client, 5001)
	c := dialControl(t, j, tb)

	c.send(t, "HELLO there\r\n")
	if got := c.readLine(t); got != "ECHO HELLO there" {
		t.Errorf("reply %q, want the server's echo", got)
	}
	bound := c.callback(t, 5001)
	cb := recv(t, callbacks)
	if cb.peer.Addr() != fwxlab.ServerAddr {
		t.Errorf("callback connection from %v, want the server %v", cb.peer, fwxlab.ServerAddr)
	}
	if got := readAll(t, cb.conn); got != "hello\r\n" {
		t.Errorf("callback connection carried %q, want hello", got)
	}
	if peer := recv(t, srv.peers); peer.Addr() != fwxlab.FWOutside {
		t.Errorf("server saw the control connection from %v, want fwx's outside address", peer)
	}
	for _, want := range []string{"HELLO there", "CALLBACK " + strconv.Itoa(int(bound))} {
		if got := recv(t, srv.lines); got != want {
			t.Errorf("server read %q, want %q", got, want)
		}
	}
}

// TestCallbackRefused: a CALLBACK for a privileged port, or with no valid
// port, is answered by the filter, never reaches the server, and binds
// nothing.
func TestCallbackRefused(t *testing.T) {
	for _, line := range []string{"CALLBACK 80", "CALLBACK 1023", "callback 0", "CALLBACK 65536", "CALLBACK", "CALLBACK 5001 5002"} {
		t.Run(line, func(t *testing.T) {
			tb := newTestbed(t)
			j := newJanitor(t)
			srv := startServer(t, j, tb.Server, true)
			c := dialControl(t, j, tb)
			c.send(t, "HELLO\r\n")
			c.readLine(t)
			recv(t, srv.lines)
			s := tb.Session(t)
			before := s.Pinholes() // the control connection itself

			c.send(t, line+"\r\n")
			if got := c.readLine(t); got != "ERR bad port" {
				t.Errorf("reply %q, want ERR bad port", got)
			}
			c.send(t, "PING\r\n")
			if got := c.readLine(t); got != "ECHO PING" {
				t.Errorf("reply %q, want ECHO PING", got)
			}
			if got := recv(t, srv.lines); got != "PING" {
				t.Errorf("server read %q: the refused line got through", got)
			}
			if got := s.Pinholes(); got != before {
				t.Errorf("session holds %d pinholes, had %d: something was bound", got, before)
			}
		})
	}
}

// TestCallbackSplitCommand: a command split across two writes is held until
// its line is complete, then handled as one.
func TestCallbackSplitCommand(t *testing.T) {
	tb := newTestbed(t)
	j := newJanitor(t)
	srv := startServer(t, j, tb.Server, true)
	callbacks := listenCallbacks(t, j, tb.Client, 5001)
	c := dialControl(t, j, tb)

	c.send(t, "CALLBACK 50")
	select {
	case got := <-srv.lines:
		t.Fatalf("server read %q before the line was complete", got)
	case <-time.After(100 * time.Millisecond):
	}
	c.send(t, "01\r\n")
	if got := c.readLine(t); !strings.HasPrefix(got, "OK ") {
		t.Fatalf("reply %q, want OK", got)
	}
	if cb := recv(t, callbacks); cb.peer.Addr() != fwxlab.ServerAddr {
		t.Errorf("callback connection from %v, want the server", cb.peer)
	}
}

// TestCallbackLineLimit: a line of MaxLine bytes passes; a longer one
// aborts the control connection, and nothing after it is read or bound.
func TestCallbackLineLimit(t *testing.T) {
	t.Run("longest line", func(t *testing.T) {
		tb := newTestbed(t)
		j := newJanitor(t)
		startServer(t, j, tb.Server, true)
		c := dialControl(t, j, tb)
		long := strings.Repeat("A", callback.DefaultMaxLine-2)
		c.send(t, long+"\r\n")
		if got := c.readLine(t); got != "ECHO "+long {
			t.Errorf("reply %.20q..., want the echo of the %d-byte line", got, callback.DefaultMaxLine)
		}
	})
	t.Run("one byte more", func(t *testing.T) {
		tb := newTestbed(t)
		j := newJanitor(t)
		srv := startServer(t, j, tb.Server, true)
		callbacks := listenCallbacks(t, j, tb.Client, 5001)
		c := dialControl(t, j, tb)
		c.send(t, strings.Repeat("A", callback.DefaultMaxLine-1)+"\r\nCALLBACK 5001\r\n")
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		if line, err := c.r.ReadString('\n'); err == nil || isTimeout(err) {
			t.Errorf("control connection read %q, %v; want it aborted", line, err)
		}
		waitPinholes(t, tb.Session(t), 0)
		select {
		case got := <-srv.lines:
			t.Errorf("server read %.20q... from an aborted connection", got)
		case cb := <-callbacks:
			t.Errorf("callback connection from %v", cb.peer)
		case <-time.After(100 * time.Millisecond):
		}
	})
}

// TestCallbackEndsWithControl: when the control connection ends, the
// filter kills what it bound: an unused port is closed, and a callback
// connection in progress is cut.
func TestCallbackEndsWithControl(t *testing.T) {
	tb := newTestbed(t)
	j := newJanitor(t)
	startServer(t, j, tb.Server, false)
	callbacks := listenCallbacks(t, j, tb.Client, 5001)
	listenCallbacks(t, j, tb.Client, 5002)
	c := dialControl(t, j, tb)

	used := c.callback(t, 5001)
	unused := c.callback(t, 5002)
	ctx := lab.Context(t, 5*time.Second)
	sc, err := tb.Server.DialTCP(ctx, netip.AddrPortFrom(fwxlab.FWOutside, used))
	if err != nil {
		t.Fatalf("server cannot use the first callback port: %v", err)
	}
	j.track(sc)
	cb := recv(t, callbacks)
	c.Close()
	waitPinholes(t, tb.Session(t), 0)

	if fwxlab.Connects(t, tb.Server, netip.AddrPortFrom(fwxlab.FWOutside, unused), 300*time.Millisecond) {
		t.Error("the server reached the second callback port after the control connection ended")
	}
	sc.Write([]byte("late\r\n"))
	cb.conn.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
	if n, err := cb.conn.Read(make([]byte, 16)); n > 0 || err == nil {
		t.Errorf("callback connection still carries data (%d bytes, %v) after its control connection ended", n, err)
	}
}

// TestCallbackOnlyForServer: the pinhole admits the control connection's
// server, not another host on the outside.
func TestCallbackOnlyForServer(t *testing.T) {
	tb := newTestbed(t)
	j := newJanitor(t)
	startServer(t, j, tb.Server, false)
	callbacks := listenCallbacks(t, j, tb.Client, 5001)
	c := dialControl(t, j, tb)

	dst := netip.AddrPortFrom(fwxlab.FWOutside, c.callback(t, 5001))
	if fwxlab.Connects(t, tb.Server2, dst, 300*time.Millisecond) {
		t.Error("a third host used the callback port")
	}
	if !fwxlab.Connects(t, tb.Server, dst, 300*time.Millisecond) {
		t.Fatal("the server cannot use the callback port")
	}
	if cb := recv(t, callbacks); cb.peer.Addr() != fwxlab.ServerAddr {
		t.Errorf("callback connection from %v, want the server", cb.peer)
	}
}

// TestCallbackTimeout: a callback port nobody uses closes after the
// pinhole timeout (fwx's clock, here the lab's manual one), not before.
func TestCallbackTimeout(t *testing.T) {
	for _, tt := range []struct {
		after time.Duration
		want  bool
	}{{59 * time.Second, true}, {61 * time.Second, false}} {
		t.Run(tt.after.String(), func(t *testing.T) {
			tb := newTestbed(t)
			j := newJanitor(t)
			startServer(t, j, tb.Server, false)
			listenCallbacks(t, j, tb.Client, 5001)
			c := dialControl(t, j, tb)

			dst := netip.AddrPortFrom(fwxlab.FWOutside, c.callback(t, 5001))
			tb.Clock.Advance(tt.after)
			if got := fwxlab.Connects(t, tb.Server, dst, 300*time.Millisecond); got != tt.want {
				t.Errorf("after %v: connected=%v, want %v", tt.after, got, tt.want)
			}
		})
	}
}
