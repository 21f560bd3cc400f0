package session_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"net/netip"
	"syscall"
	"testing"
	"time"

	"github.com/fwx-dev/fwx/nat"
	"github.com/fwx-dev/fwx/netstack/lab"
	"github.com/fwx-dev/fwx/netstack/lab/fwxlab"
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
	peers := fwxlab.EchoTCP(t, tb.Server, 7)
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
	if p := fwxlab.Recv(t, peers); p.Addr() != fwOut.Addr() {
		t.Errorf("server saw %v, want fwx's outside address", p)
	}
	if p := c.RemoteAddr().(*net.TCPAddr).AddrPort(); p != netip.AddrPortFrom(serverIP.Addr(), 7) {
		t.Errorf("client's peer %v, want the server", p)
	}
	tb.Log.WaitRecords(t, 1, map[string]string{"event": "allowed", "destination": "198.51.100.2:7", "path": "user", "rule": "echo-out"})
	// Other protocols stay on the fast path.
	fwxlab.EchoTCP(t, tb.Server, 8000)
	d, err := tb.Client.DialTCP(lab.Context(t, 5*time.Second), netip.AddrPortFrom(serverIP.Addr(), 8000))
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	fwxlab.RoundTrip(t, d, "fast")
}

// TestUserModeDeny: a filter denying the connect event refuses the client
// with a RST; no connection reaches the server. The firewall log says the
// filter denied the flow, and never that it was allowed.
func TestUserModeDeny(t *testing.T) {
	f := &probeFilter{onConnect: func(ev *session.Event) error { return ev.Conn.Deny() }}
	tb := newTestbed(t, echoPolicy, withFilter("probe", f))
	peers := fwxlab.EchoTCP(t, tb.Server, 7)
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
	peers := fwxlab.EchoTCP(t, tb.Client, 5001)
	res, err := tb.Session(t).BindForClient(session.BindRequest{ClientAddrs: []netip.AddrPort{clientAt(5001)},
		Transport: session.TCP, Protocol: "echo", Flags: session.NoKernelMode, IPFilter: session.NewIPFilter(serverIP.Addr())})
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
	if p := fwxlab.Recv(t, peers); p.Addr() != serverIP.Addr() {
		t.Errorf("inside client saw a connection from %v, want the real server %v", p, serverIP.Addr())
	}
	if ev := fwxlab.Recv(t, events); ev.Type != session.EventAcceptedConnection || ev.Remote.Addr() != serverIP.Addr() {
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
	peers := fwxlab.EchoTCP(t, tb.Client, 5001)
	res, err := tb.Session(t).BindForClient(session.BindRequest{ClientAddrs: []netip.AddrPort{clientAt(5001)},
		Transport: session.TCP, Protocol: "echo"})
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
	fwxlab.EchoTCP(t, tb.Server, 8000)
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
	peers := fwxlab.EchoTCP(t, tb.Client, 80)
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
	if p := fwxlab.Recv(t, peers); p.Addr() != serverIP.Addr() {
		t.Errorf("published server saw %v, want the outside client %v", p, serverIP.Addr())
	}
	if ev := fwxlab.Recv(t, events); ev.Type != session.EventAcceptedConnection || ev.Conn.Session().ClientAddr() != clientIP.Addr() {
		t.Errorf("event %v in the session of %v; want accepted-connection in the server's session", ev.Type, ev.Conn.Session().ClientAddr())
	}
}

// TestUserModeDialLimit: a client whose user-mode connections wait on a
// server that never answers holds at most its client-dials of them; its
// next ones are reset at once, and another client's still get through.
func TestUserModeDialLimit(t *testing.T) {
	tb := newTestbed(t, echoPolicy+`
options:
  limits: {client-dials: 2}
`, withFilter("probe", &probeFilter{}))
	fwxlab.EchoTCP(t, tb.Server, 7)
	// 198.51.100.77 is on the outside segment but no host has it: the
	// outside netstack's SYNs land in the capture, unanswered.
	blackhole := netip.MustParseAddrPort("198.51.100.77:7")
	for i := range 2 {
		go func() {
			c, err := tb.Client.DialTCP(lab.Context(t, 3*time.Second), blackhole)
			if err == nil {
				c.Close()
				t.Errorf("dial %d to a host that never answers succeeded", i)
			}
		}()
	}
	// Wait for both dials to be pending at fwx: their SYNs reach the
	// outside.
	for range 2 {
		fwxlab.Recv(t, tb.Outside.Captured())
	}
	start := time.Now()
	_, err := tb.Client.DialTCP(lab.Context(t, 3*time.Second), blackhole)
	if !errors.Is(err, syscall.ECONNREFUSED) || time.Since(start) > time.Second {
		t.Fatalf("third dial: %v after %v; want refused at once", err, time.Since(start))
	}
	c, err := tb.Client2.DialTCP(lab.Context(t, 5*time.Second), netip.AddrPortFrom(serverIP.Addr(), 7))
	if err != nil {
		t.Fatalf("another client's filtered connection: %v", err)
	}
	fwxlab.RoundTrip(t, c, "through")
	c.Close()
	if n := tb.FW.Stats().Drops[nat.DropClientDials]; n != 1 {
		t.Errorf("%d client-dials refusals counted, want 1", n)
	}
	// The refused flow's record is the table's denial, and nothing says
	// it was allowed.
	tb.WaitDenied(t, 1, map[string]string{"event": "denied", "destination": blackhole.String(), "reason": "client-dials"})
	if recs := tb.Log.Records(t, map[string]string{"event": "allowed", "destination": blackhole.String()}); len(recs) != 2 {
		t.Errorf("%d allowed records for the black hole, want the 2 pending dials'", len(recs))
	}
}
