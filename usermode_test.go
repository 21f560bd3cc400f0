package fwx_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"net/netip"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/fwx-dev/fwx/netstack/lab"
	"github.com/fwx-dev/fwx/session"
)

// echoPolicy binds the echo protocol (TCP 7) to the test filter "probe";
// everything else goes out on the fast path.
const echoPolicy = `
protocols:
  - {name: echo, transport: tcp, ports: [7], filter: probe}
rules:
  - {name: echo-out, action: allow, from: [internal], to: [external], protocols: [echo]}
  - {name: out, action: allow, from: [internal], to: [external], protocols: [any]}
`

// probeFilter hooks connect events and lets each test decide what to do
// with the connection.
type probeFilter struct {
	onConnect func(ev *session.Event) error
	events    chan session.Event
}

func (f *probeFilter) Init() (session.Hooks, error) {
	return session.Hooks{Events: session.EventConnectTCP | session.EventAcceptedConnection, Secondaries: true}, nil
}
func (f *probeFilter) AttachToSession(*session.Session) (session.SessionFilter, error) { return f, nil }
func (f *probeFilter) Shutdown()                                                       {}
func (f *probeFilter) Detach()                                                         {}
func (f *probeFilter) HandleEvent(ev *session.Event) error {
	if f.events != nil {
		f.events <- *ev
	}
	if f.onConnect != nil {
		return f.onConnect(ev)
	}
	return nil
}

// upper is a data filter that upper-cases what the client sends and passes
// the server's bytes unchanged.
var upper = session.DataFilterFunc(func(ctx context.Context, c *session.Connection, in, out session.Socket) error {
	defer in.Close()
	defer out.Close()
	go func() {
		io.Copy(in, out)
		in.CloseWrite()
	}()
	buf := make([]byte, 4096)
	for {
		n, err := in.Read(buf)
		if n > 0 {
			if _, werr := out.Write(bytes.ToUpper(buf[:n])); werr != nil {
				return werr
			}
		}
		if err != nil {
			out.CloseWrite()
			return nil // the deferred Closes end the server-to-client copy
		}
	}
})

// TestUserModeDataFilter: a flow whose protocol has a filter is terminated
// and its bytes pass through the data filter the filter attached; the
// server still sees fwx's outside address and the client the server's.
func TestUserModeDataFilter(t *testing.T) {
	f := &probeFilter{onConnect: func(ev *session.Event) error { return ev.Conn.AttachDataFilter(upper, session.PriorityMiddle) }}
	tb := newTestbed(t, echoPolicy, withFilter("probe", f))
	peers := echoTCP(t, tb.Server, 7)
	c, err := tb.Client.DialTCP(lab.Context(t, 5*time.Second), netip.AddrPortFrom(serverIP.Addr(), 7))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	c.Write([]byte("hello, filter"))
	got := make([]byte, 13)
	if _, err := io.ReadFull(c, got); err != nil {
		t.Fatal(err)
	}
	if string(got) != "HELLO, FILTER" {
		t.Errorf("echo %q, want the upper-cased bytes", got)
	}
	if p := recv(t, peers); p.Addr() != fwOut.Addr() {
		t.Errorf("server saw %v, want fwx's outside address", p)
	}
	if p := c.RemoteAddr().(*net.TCPAddr).AddrPort(); p != netip.AddrPortFrom(serverIP.Addr(), 7) {
		t.Errorf("client's peer %v, want the server", p)
	}
	tb.Log.WaitRecords(t, 1, map[string]string{"event": "allowed", "destination": "198.51.100.2:7", "path": "user", "rule": "echo-out"})
	// Other protocols stay on the fast path.
	echoTCP(t, tb.Server, 8000)
	d, err := tb.Client.DialTCP(lab.Context(t, 5*time.Second), netip.AddrPortFrom(serverIP.Addr(), 8000))
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	roundTrip(t, d, "fast")
}

// TestUserModeDeny: a filter denying the connect event refuses the client
// with a RST; no connection reaches the server. The firewall log says the
// filter denied the flow, and never that it was allowed.
func TestUserModeDeny(t *testing.T) {
	f := &probeFilter{onConnect: func(ev *session.Event) error { return ev.Conn.Deny() }}
	tb := newTestbed(t, echoPolicy, withFilter("probe", f))
	peers := echoTCP(t, tb.Server, 7)
	dst := netip.AddrPortFrom(serverIP.Addr(), 7)
	_, err := tb.Client.DialTCP(lab.Context(t, 5*time.Second), dst)
	if !errors.Is(err, syscall.ECONNREFUSED) {
		t.Errorf("dial: %v, want connection refused", err)
	}
	select {
	case p := <-peers:
		t.Errorf("server accepted %v", p)
	case <-time.After(100 * time.Millisecond):
	}
	tb.Log.WaitRecords(t, 1, map[string]string{"event": "denied", "destination": dst.String(), "reason": "filter", "filter": "probe", "path": "user"})
	for _, ev := range []string{"allowed", "ended"} {
		if recs := tb.Log.Records(t, map[string]string{"event": ev, "destination": dst.String()}); len(recs) > 0 {
			t.Errorf("the refused flow has an %q record: %v", ev, recs)
		}
	}
}

// TestUserModeEmulate: a filter emulating the server answers the client
// itself; fwx never connects to the server.
func TestUserModeEmulate(t *testing.T) {
	banner := session.DataFilterFunc(func(ctx context.Context, c *session.Connection, in, out session.Socket) error {
		defer in.Close()
		if out != nil {
			t.Error("emulating filter got an external socket")
		}
		_, err := in.Write([]byte("220 emulated\r\n"))
		return err
	})
	f := &probeFilter{onConnect: func(ev *session.Event) error { return ev.Conn.Emulate(banner) }}
	tb := newTestbed(t, echoPolicy, withFilter("probe", f))
	// Nothing listens on the server: only emulation can answer.
	c, err := tb.Client.DialTCP(lab.Context(t, 5*time.Second), netip.AddrPortFrom(serverIP.Addr(), 7))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	got, _ := io.ReadAll(c)
	if string(got) != "220 emulated\r\n" {
		t.Errorf("read %q, want the emulated banner", got)
	}
}

// TestUserModeBind: a bind made with NoKernelMode is served on the
// user-mode path: the accepted event fires, and bytes reach the client
// through the data filter attached at accept.
func TestUserModeBind(t *testing.T) {
	events := make(chan session.Event, 8)
	f := &probeFilter{events: events, onConnect: func(ev *session.Event) error {
		if ev.Type == session.EventAcceptedConnection {
			return ev.Conn.AttachDataFilter(upper, session.PriorityMiddle)
		}
		return nil
	}}
	tb := newTestbed(t, echoPolicy, withFilter("probe", f))
	peers := echoTCP(t, tb.Client, 5001)
	res, err := tb.Session(t).BindForClient(session.BindRequest{ClientAddrs: []netip.AddrPort{clientAt(5001)},
		Protocol: session.TCP, ProtocolName: "echo", Flags: session.NoKernelMode, IPFilter: session.NewIPFilter(serverIP.Addr())})
	if err != nil {
		t.Fatal(err)
	}
	c, err := tb.Server.DialTCP(lab.Context(t, 5*time.Second), res.Proxy)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	// The server's bytes reach the inside client unchanged; its echo is
	// upper-cased on the way out, since the filter's internal side is the
	// inside client.
	c.SetDeadline(time.Now().Add(5 * time.Second))
	c.Write([]byte("data"))
	buf := make([]byte, 4)
	if _, err := io.ReadFull(c, buf); err != nil {
		t.Fatal(err)
	}
	if string(buf) != "DATA" {
		t.Errorf("echo %q, want DATA: the data filter is not in the path", buf)
	}
	if p := recv(t, peers); p.Addr() != serverIP.Addr() {
		t.Errorf("inside client saw a connection from %v, want the real server %v", p, serverIP.Addr())
	}
	if ev := recv(t, events); ev.Type != session.EventAcceptedConnection || ev.Remote.Addr() != serverIP.Addr() {
		t.Errorf("event %v from %v, want accepted-connection from the server", ev.Type, ev.Remote)
	}
}

// TestUserModeEmulateBind: a filter emulating a bind serves the connections
// accepted on the bound port itself; the client is never contacted.
func TestUserModeEmulateBind(t *testing.T) {
	greeter := session.DataFilterFunc(func(ctx context.Context, c *session.Connection, in, out session.Socket) error {
		if in != nil {
			t.Error("emulated bind got an internal socket")
		}
		defer out.Close()
		_, err := out.Write([]byte("from the filter"))
		return err
	})
	f := &probeFilter{onConnect: func(ev *session.Event) error {
		if ev.Type == session.EventBindTCP {
			return ev.Conn.Emulate(greeter)
		}
		return nil
	}}
	f2 := &bindProbe{probeFilter: f}
	tb := newTestbed(t, echoPolicy, withFilter("probe", f2))
	peers := echoTCP(t, tb.Client, 5001)
	res, err := tb.Session(t).BindForClient(session.BindRequest{ClientAddrs: []netip.AddrPort{clientAt(5001)},
		Protocol: session.TCP, ProtocolName: "echo"})
	if err != nil {
		t.Fatal(err)
	}
	c, err := tb.Server.DialTCP(lab.Context(t, 5*time.Second), res.Proxy)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	got, _ := io.ReadAll(c)
	if string(got) != "from the filter" {
		t.Errorf("read %q, want the emulating filter's bytes", got)
	}
	select {
	case p := <-peers:
		t.Errorf("the client was contacted by %v", p)
	default:
	}
}

// bindProbe is a probeFilter that also hooks bind events.
type bindProbe struct{ *probeFilter }

func (f *bindProbe) Init() (session.Hooks, error) {
	return session.Hooks{Events: session.EventBindTCP, Secondaries: true}, nil
}
func (f *bindProbe) AttachToSession(*session.Session) (session.SessionFilter, error) {
	return f.probeFilter, nil
}

// TestSetDataFilterFactory: a session's factory puts a data filter on the
// client's later connections to an address, with no hook and no flag; once
// cancelled, new connections take the fast path again.
func TestSetDataFilterFactory(t *testing.T) {
	tb := newTestbed(t, "")
	echoTCP(t, tb.Server, 8000)
	dst := netip.AddrPortFrom(serverIP.Addr(), 8000)
	a, err := tb.Session(t).SetDataFilterFactory(session.FactoryRequest{Event: session.EventConnectTCP, Addr: dst,
		Factory: func(*session.Connection) (session.DataFilter, error) { return upper, nil }, Priority: session.PriorityMiddle})
	if err != nil {
		t.Fatal(err)
	}
	echo := func() string {
		c, err := tb.Client.DialTCP(lab.Context(t, 5*time.Second), dst)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(5 * time.Second))
		c.Write([]byte("abc"))
		buf := make([]byte, 3)
		if _, err := io.ReadFull(c, buf); err != nil {
			t.Fatal(err)
		}
		return string(buf)
	}
	if got := echo(); got != "ABC" {
		t.Errorf("with the factory: echo %q, want ABC", got)
	}
	if err := a.Cancel(); err != nil {
		t.Fatal(err)
	}
	if err := a.Cancel(); !errors.Is(err, session.ErrTerminating) {
		t.Errorf("second Cancel: %v, want ErrTerminating", err)
	}
	if got := echo(); got != "abc" {
		t.Errorf("after Cancel: echo %q, want abc (fast path)", got)
	}
}

// TestPublishedServerWithFilter: a connection to a published server whose
// protocol has a filter takes the user-mode path; the filter's internal side
// is the published server, which sees the real outside client.
func TestPublishedServerWithFilter(t *testing.T) {
	events := make(chan session.Event, 4)
	f := &probeFilter{events: events, onConnect: func(ev *session.Event) error {
		if !ev.Conn.Inbound() {
			t.Error("a published connection is not marked inbound")
		}
		return ev.Conn.AttachDataFilter(upper, session.PriorityMiddle)
	}}
	tb := newTestbed(t, `
protocols:
  - {name: web-in, transport: tcp, ports: [8080], direction: inbound, filter: probe}
rules:
  - {name: out, action: allow, from: [internal], to: [external], protocols: [any]}
publish:
  - {name: www, protocol: web-in, listen: ":8080", server: "10.0.0.2:80"}
`, withFilter("probe", f))
	peers := echoTCP(t, tb.Client, 80)
	c, err := tb.Server.DialTCP(lab.Context(t, 5*time.Second), netip.AddrPortFrom(fwOut.Addr(), 8080))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	c.Write([]byte("abc"))
	buf := make([]byte, 3)
	if _, err := io.ReadFull(c, buf); err != nil {
		t.Fatal(err)
	}
	if string(buf) != "ABC" {
		t.Errorf("echo %q, want ABC: the published server's reply passes the filter", buf)
	}
	if p := recv(t, peers); p.Addr() != serverIP.Addr() {
		t.Errorf("published server saw %v, want the outside client %v", p, serverIP.Addr())
	}
	if ev := recv(t, events); ev.Type != session.EventAcceptedConnection || ev.Conn.Session().ClientAddr() != clientIP.Addr() {
		t.Errorf("event %v in the session of %v; want accepted-connection in the server's session", ev.Type, ev.Conn.Session().ClientAddr())
	}
}

// TestUserModeFlowControl: a client that stops reading stops the server on
// the user-mode path: fwx's buffering stays bounded (the netstacks' windows
// and the chain's pipes), rather than growing with what the server sends.
func TestUserModeFlowControl(t *testing.T) {
	tb := newTestbed(t, benchPolicy, withFilter("pass", passFilter{}))
	ln, err := tb.Server.ListenTCP(5201)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	var written atomic.Int64
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		chunk := make([]byte, 64<<10)
		for {
			c.SetWriteDeadline(time.Now().Add(10 * time.Second))
			n, err := c.Write(chunk)
			written.Add(int64(n))
			if err != nil {
				return
			}
		}
	}()
	c, err := tb.Client.DialTCP(lab.Context(t, 5*time.Second), netip.AddrPortFrom(serverIP.Addr(), 5201))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	// The client never reads. Wait until the server stalls.
	var last int64 = -1
	for i := 0; i < 100; i++ {
		time.Sleep(100 * time.Millisecond)
		now := written.Load()
		if now == last {
			break
		}
		last = now
	}
	const bound = 48 << 20 // every window and pipe on the way, generously
	if last > bound {
		t.Errorf("the server wrote %d MiB to a client that reads nothing: fwx buffers without bound", last>>20)
	}
	if last <= 0 {
		t.Fatal("nothing was written")
	}
	// Once the client reads, everything flows again.
	buf := make([]byte, 1<<20)
	// Generously: after a long zero window the sender's persist timer
	// may have backed off to seconds before it probes again.
	c.SetReadDeadline(time.Now().Add(30 * time.Second))
	if _, err := io.ReadFull(c, buf); err != nil {
		t.Fatalf("reading after the stall: %v", err)
	}
	t.Logf("stalled after %d KiB in flight", last>>10)
}
