package session_test

import (
	"errors"
	"net"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/fwx-dev/fwx/netstack/lab"
	"github.com/fwx-dev/fwx/netstack/lab/fwxlab"
	"github.com/fwx-dev/fwx/session"
)

// sdkPolicy allows the client only FTP control connections and ping; every
// secondary connection must come through a pinhole.
const sdkPolicy = `
protocols:
  - {name: ftp, transport: tcp, ports: [21]}
  - {name: tftp, transport: udp, ports: [69]}
rules:
  - {name: ftp-out, action: allow, from: [internal], to: [external], protocols: [ftp, tftp, ping]}
`

// serverConnects reports whether the server (or server2) reaches dst over
// TCP; expect says whether it should, which sets how long to wait.
func (tb *testbed) serverConnects(t *testing.T, from string, dst netip.AddrPort, expect bool) bool {
	t.Helper()
	h := tb.Server
	if from == "server2" {
		h = tb.Server2
	}
	wait := 300 * time.Millisecond
	if expect {
		wait = 5 * time.Second
	}
	return fwxlab.Connects(t, h, dst, wait)
}

// clientConnects reports whether the client reaches dst over TCP.
func (tb *testbed) clientConnects(t *testing.T, dst netip.AddrPort) bool {
	t.Helper()
	return fwxlab.Connects(t, tb.Client, dst, 2*time.Second)
}

func bind(t *testing.T, s *session.Session, req session.BindRequest) *session.BindResult {
	t.Helper()
	if req.Protocol == "" {
		req.Protocol = "ftp"
	}
	if req.Transport == 0 {
		req.Transport = session.TCP
	}
	res, err := s.BindForClient(req)
	if err != nil {
		t.Fatalf("BindForClient: %v", err)
	}
	return res
}

func clientAt(port uint16) netip.AddrPort { return netip.AddrPortFrom(clientIP.Addr(), port) }

// TestBindPortsAlignedConsecutive: N ports are consecutive, the lowest a
// multiple of N, and the i-th client address gets the i-th port.
func TestBindPortsAlignedConsecutive(t *testing.T) {
	tb := newTestbed(t, sdkPolicy)
	var clients []netip.AddrPort
	var got []<-chan netip.AddrPort
	for i := range 4 {
		port := uint16(6000 + 10*i) // not consecutive on the client
		clients = append(clients, clientAt(port))
		got = append(got, fwxlab.EchoUDP(t, tb.Client, port))
	}
	res := bind(t, tb.Session(t), session.BindRequest{ClientAddrs: clients, Transport: session.UDP, Protocol: "tftp"})
	if res.Proxy.Port()%4 != 0 || res.Proxy.Addr() != fwOut.Addr() {
		t.Fatalf("bound %v: want fwx's outside address and a port that is a multiple of 4", res.Proxy)
	}
	srv, err := tb.Server.ListenUDP(0)
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	for i, c := range res.Conns {
		if want := netip.AddrPortFrom(fwOut.Addr(), res.Proxy.Port()+uint16(i)); c.Addr() != want {
			t.Errorf("connection %d bound %v, want %v", i, c.Addr(), want)
		}
		srv.WriteTo([]byte("hi"), net.UDPAddrFromAddrPort(c.Addr()))
		if from := fwxlab.Recv(t, got[i]); from.Addr() != serverIP.Addr() {
			t.Errorf("client port %v got a datagram from %v", clients[i], from)
		}
	}
}

// TestBindTCPNoKernelMode: a TCP bind made with NoKernelMode takes the
// user-mode path though no filter watches it; without the flag it takes
// the fast path.
func TestBindTCPNoKernelMode(t *testing.T) {
	for _, tt := range []struct {
		flags session.Flags
		path  string
	}{
		{0, "fast"},
		{session.NoKernelMode, "user"},
	} {
		t.Run(tt.flags.String(), func(t *testing.T) {
			tb := newTestbed(t, sdkPolicy)
			fwxlab.EchoTCP(t, tb.Client, 5001)
			res := bind(t, tb.Session(t), session.BindRequest{ClientAddrs: []netip.AddrPort{clientAt(5001)}, Flags: tt.flags})
			if !tb.serverConnects(t, "server", res.Proxy, true) {
				t.Fatal("no connection through the bind")
			}
			tb.Log.WaitRecords(t, 1, map[string]string{"event": "allowed", "direction": "inbound", "destination": res.Proxy.String(), "path": tt.path})
		})
	}
}

// TestBindSingleAndMultiple: one connection without AllowMultiple, more
// with it.
func TestBindSingleAndMultiple(t *testing.T) {
	for _, tt := range []struct {
		flags session.Flags
		want  []bool
	}{
		{0, []bool{true, false}},
		{session.AllowMultiple, []bool{true, true, true}},
	} {
		t.Run(tt.flags.String(), func(t *testing.T) {
			tb := newTestbed(t, sdkPolicy)
			fwxlab.EchoTCP(t, tb.Client, 5001)
			res := bind(t, tb.Session(t), session.BindRequest{ClientAddrs: []netip.AddrPort{clientAt(5001)}, Flags: tt.flags})
			for i, want := range tt.want {
				if got := tb.serverConnects(t, "server", res.Proxy, want); got != want {
					t.Errorf("connection %d: connected=%v, want %v", i+1, got, want)
				}
			}
		})
	}
}

// TestBindTimeout: a Timeout bind is gone right after the pinhole timeout
// on the injected clock, and not before.
func TestBindTimeout(t *testing.T) {
	for _, tt := range []struct {
		after time.Duration
		want  bool
	}{{59 * time.Second, true}, {61 * time.Second, false}} {
		t.Run(tt.after.String(), func(t *testing.T) {
			tb := newTestbed(t, sdkPolicy)
			fwxlab.EchoTCP(t, tb.Client, 5001)
			res := bind(t, tb.Session(t), session.BindRequest{ClientAddrs: []netip.AddrPort{clientAt(5001)}, Flags: session.Timeout})
			tb.Clock.Advance(tt.after)
			if got := tb.serverConnects(t, "server", res.Proxy, tt.want); got != tt.want {
				t.Errorf("after %v: connected=%v, want %v", tt.after, got, tt.want)
			}
		})
	}
}

// TestBindIPFilter: nil allows everyone, an empty filter no one, a filter
// with the server only the server.
func TestBindIPFilter(t *testing.T) {
	for _, tt := range []struct {
		name            string
		filter          *session.IPFilter
		server, server2 bool
	}{
		{"nil", nil, true, true},
		{"empty", &session.IPFilter{}, false, false},
		{"server only", session.NewIPFilter(serverIP.Addr()), true, false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			tb := newTestbed(t, sdkPolicy)
			fwxlab.EchoTCP(t, tb.Client, 5001)
			res := bind(t, tb.Session(t), session.BindRequest{ClientAddrs: []netip.AddrPort{clientAt(5001)},
				Flags: session.AllowMultiple, IPFilter: tt.filter})
			if got := tb.serverConnects(t, "server2", res.Proxy, tt.server2); got != tt.server2 {
				t.Errorf("server2 connected=%v, want %v", got, tt.server2)
			}
			if got := tb.serverConnects(t, "server", res.Proxy, tt.server); got != tt.server {
				t.Errorf("server connected=%v, want %v", got, tt.server)
			}
		})
	}
}

// TestSetClientAddressLate: a bind made before the client address is known
// refuses connections until SetClientAddress, which works once.
func TestSetClientAddressLate(t *testing.T) {
	tb := newTestbed(t, sdkPolicy)
	fwxlab.EchoTCP(t, tb.Client, 5002)
	res := bind(t, tb.Session(t), session.BindRequest{ClientAddrs: []netip.AddrPort{{}}, Flags: session.AllowMultiple})
	c := res.Conns[0]
	if tb.serverConnects(t, "server", res.Proxy, false) {
		t.Fatal("connected before the client address was known")
	}
	if err := c.SetClientAddress(netip.AddrPortFrom(client2IP.Addr(), 5002)); !errors.Is(err, session.ErrInvalidArgument) {
		t.Errorf("another host's address: %v, want ErrInvalidArgument", err)
	}
	if err := c.SetClientAddress(clientAt(5002)); err != nil {
		t.Fatal(err)
	}
	if !tb.serverConnects(t, "server", res.Proxy, true) {
		t.Error("no connection after SetClientAddress")
	}
	if err := c.SetClientAddress(clientAt(5003)); !errors.Is(err, session.ErrAlreadyExists) {
		t.Errorf("second SetClientAddress: %v, want ErrAlreadyExists", err)
	}
}

// TestKillRevokes: Kill closes the bound port and frees it.
func TestKillRevokes(t *testing.T) {
	tb := newTestbed(t, sdkPolicy)
	fwxlab.EchoTCP(t, tb.Client, 5001)
	s := tb.Session(t)
	res := bind(t, s, session.BindRequest{ClientAddrs: []netip.AddrPort{clientAt(5001)}, Flags: session.AllowMultiple})
	if !tb.serverConnects(t, "server", res.Proxy, true) {
		t.Fatal("bound port unreachable")
	}
	res.Conns[0].Kill()
	if tb.serverConnects(t, "server", res.Proxy, false) {
		t.Error("connected after Kill")
	}
	// The port is free: it can be forced again.
	again := bind(t, s, session.BindRequest{ClientAddrs: []netip.AddrPort{clientAt(5001)}, Proxy: res.Proxy})
	if again.Proxy != res.Proxy {
		t.Errorf("rebound %v, want %v", again.Proxy, res.Proxy)
	}
}

// TestSessionEndRevokesEverything: ending a session kills its binds,
// cancels its permissions and frees their ports.
func TestSessionEndRevokesEverything(t *testing.T) {
	tb := newTestbed(t, sdkPolicy)
	fwxlab.EchoTCP(t, tb.Client, 5001)
	fwxlab.EchoTCP(t, tb.Server, 7777)
	s := tb.Session(t)
	res := bind(t, s, session.BindRequest{ClientAddrs: []netip.AddrPort{clientAt(5001)}, Flags: session.AllowMultiple})
	fc, err := s.AllowFutureConnect(session.FutureConnect{Addr: netip.AddrPortFrom(serverIP.Addr(), 7777), Transport: session.TCP,
		Protocol: "ftp", Flags: session.AllowMultiple})
	if err != nil {
		t.Fatal(err)
	}
	rd, err := s.RedirectConnections(session.Redirect{ConnectAddrs: []netip.AddrPort{netip.AddrPortFrom(serverIP.Addr(), 7777)},
		Transport: session.TCP, Protocol: "ftp", Flags: session.AllowMultiple})
	if err != nil {
		t.Fatal(err)
	}
	if got := s.Pinholes(); got != 3 {
		t.Fatalf("%d pinholes, want 3", got)
	}
	s.End()
	if tb.serverConnects(t, "server", res.Proxy, false) {
		t.Error("bind survived the session")
	}
	if tb.clientConnects(t, fc.Addr()) {
		t.Error("future connect survived the session")
	}
	if tb.clientConnects(t, rd.Internal) {
		t.Error("redirect survived the session")
	}
	if err := fc.Cancel(); !errors.Is(err, session.ErrTerminating) {
		t.Errorf("Cancel after End: %v, want ErrTerminating", err)
	}
	if _, err := s.BindForClient(session.BindRequest{ClientAddrs: []netip.AddrPort{clientAt(1)}, Transport: session.TCP, Protocol: "ftp"}); !errors.Is(err, session.ErrTerminating) {
		t.Errorf("BindForClient after End: %v, want ErrTerminating", err)
	}
	// A new session for the client can take the same port: nothing leaked.
	again := bind(t, tb.Session(t), session.BindRequest{ClientAddrs: []netip.AddrPort{clientAt(5001)}, Proxy: res.Proxy})
	if again.Proxy != res.Proxy {
		t.Errorf("port %v not freed by the session's end", res.Proxy)
	}
}

// recorder is a SessionFilter that keeps its events and can deny.
type recorder struct {
	mu     sync.Mutex
	events []session.Event
	deny   session.EventType
	ch     chan session.Event
}

func newRecorder() *recorder { return &recorder{ch: make(chan session.Event, 16)} }

func (r *recorder) HandleEvent(ev *session.Event) error {
	r.mu.Lock()
	r.events = append(r.events, *ev)
	r.mu.Unlock()
	r.ch <- *ev
	if ev.Type&r.deny != 0 {
		return ev.Conn.Deny()
	}
	return nil
}

func (r *recorder) Detach() {}

// TestEstablishedEventCarriesContext: the session filter given to a grant
// receives the established-connection event with the caller's context.
func TestEstablishedEventCarriesContext(t *testing.T) {
	tb := newTestbed(t, sdkPolicy)
	fwxlab.EchoTCP(t, tb.Client, 5001)
	fwxlab.EchoTCP(t, tb.Server, 7777)
	s := tb.Session(t)
	type ctxKey struct{ name string }
	rec := newRecorder()
	res := bind(t, s, session.BindRequest{ClientAddrs: []netip.AddrPort{clientAt(5001)}, Notify: rec, Context: ctxKey{"bind"}})
	if !tb.serverConnects(t, "server", res.Proxy, true) {
		t.Fatal("no connection")
	}
	ev := fwxlab.Recv(t, rec.ch)
	if ev.Type != session.EventEstablishedConnection || ev.Context != (ctxKey{"bind"}) || ev.Remote.Addr() != serverIP.Addr() || ev.Conn != res.Conns[0] {
		t.Errorf("event %v context %v remote %v conn %p; want established, bind, %v, %p", ev.Type, ev.Context, ev.Remote, ev.Conn, serverIP.Addr(), res.Conns[0])
	}
	if _, err := s.AllowFutureConnect(session.FutureConnect{Addr: netip.AddrPortFrom(serverIP.Addr(), 7777), Transport: session.TCP,
		Protocol: "ftp", Notify: rec, Context: ctxKey{"pasv"}}); err != nil {
		t.Fatal(err)
	}
	if !tb.clientConnects(t, netip.AddrPortFrom(serverIP.Addr(), 7777)) {
		t.Fatal("future connect refused")
	}
	if ev := fwxlab.Recv(t, rec.ch); ev.Context != (ctxKey{"pasv"}) || ev.Addr != netip.AddrPortFrom(serverIP.Addr(), 7777) {
		t.Errorf("event context %v addr %v; want pasv, the destination", ev.Context, ev.Addr)
	}
}

// TestEstablishedUserModeBind: a connection accepted on a user-mode bind
// is established once fwx has connected it to the client too, not at its
// first packet: none is reported while the client refuses it (host mode
// accepts every bound connection so; a filter told "established" may count
// on both ends), and the event comes with the client's connection.
func TestEstablishedUserModeBind(t *testing.T) {
	tb := newTestbed(t, sdkPolicy)
	s := tb.Session(t)
	rec := newRecorder()
	res := bind(t, s, session.BindRequest{ClientAddrs: []netip.AddrPort{clientAt(5001)},
		Flags: session.NoKernelMode | session.AllowMultiple, Notify: rec, Context: "bind"})
	tb.serverConnects(t, "server", res.Proxy, false) // nothing listens on the client
	select {
	case ev := <-rec.ch:
		t.Errorf("%v event for a connection the client refused", ev.Type)
	case <-time.After(300 * time.Millisecond):
	}
	fwxlab.EchoTCP(t, tb.Client, 5001)
	if !tb.serverConnects(t, "server", res.Proxy, true) {
		t.Fatal("no connection")
	}
	if ev := fwxlab.Recv(t, rec.ch); ev.Type != session.EventEstablishedConnection || ev.Context != "bind" ||
		ev.Remote.Addr() != serverIP.Addr() || ev.Local != res.Proxy || ev.Conn != res.Conns[0] {
		t.Errorf("event %v context %v local %v remote %v; want established, bind, %v, the server", ev.Type, ev.Context, ev.Local, ev.Remote, res.Proxy)
	}
}

// testFilter is a Filter whose session objects are recorders.
type testFilter struct {
	hooks session.Hooks
	rec   *recorder
}

func (f *testFilter) Init() (session.Hooks, error) { return f.hooks, nil }
func (f *testFilter) AttachToSession(*session.Session) (session.SessionFilter, error) {
	return f.rec, nil
}
func (f *testFilter) Shutdown() {}

// TestBindEventDeny: a filter hooked to bind events hears of the bind first
// and can deny it; the bind then fails with ErrAddressInUse and ErrDenied,
// and leaks no port.
func TestBindEventDeny(t *testing.T) {
	rec := newRecorder()
	rec.deny = session.EventBindTCP
	f := &testFilter{hooks: session.Hooks{Events: session.EventBindTCP | session.EventListen | session.EventBindUDP, Secondaries: true}, rec: rec}
	pol := `
protocols:
  - {name: ftp, transport: tcp, ports: [21], filter: guard}
rules:
  - {name: ftp-out, action: allow, from: [internal], to: [external], protocols: [ftp]}
`
	tb := newTestbed(t, pol, withFilter("guard", f))
	s := tb.Session(t)
	_, err := s.BindForClient(session.BindRequest{ClientAddrs: []netip.AddrPort{clientAt(5001)}, Transport: session.TCP,
		Protocol: "ftp", Proxy: netip.AddrPortFrom(netip.IPv4Unspecified(), 40000)})
	if !errors.Is(err, session.ErrAddressInUse) || !errors.Is(err, session.ErrDenied) {
		t.Fatalf("denied bind: %v, want ErrAddressInUse and ErrDenied", err)
	}
	if ev := fwxlab.Recv(t, rec.ch); ev.Type != session.EventBindTCP || ev.Addr.Port() != 40000 {
		t.Errorf("filter saw %v for %v, want the bind of port 40000", ev.Type, ev.Addr)
	}
	// Allowed now: the port was not leaked, and the listen event follows.
	rec.deny = 0
	res := bind(t, s, session.BindRequest{ClientAddrs: []netip.AddrPort{clientAt(5001)}, Proxy: netip.AddrPortFrom(netip.IPv4Unspecified(), 40000)})
	fwxlab.Recv(t, rec.ch) // bind
	if ev := fwxlab.Recv(t, rec.ch); ev.Type != session.EventListen || ev.Addr != res.Proxy {
		t.Errorf("second event %v for %v, want listen on %v", ev.Type, ev.Addr, res.Proxy)
	}
	// Deny outside a handler is a bad context.
	if err := res.Conns[0].Deny(); !errors.Is(err, session.ErrBadContext) {
		t.Errorf("Deny outside a handler: %v, want ErrBadContext", err)
	}
	// A UDP bind is denied the same way, at its own event.
	rec.deny = session.EventBindUDP
	_, err = s.BindForClient(session.BindRequest{ClientAddrs: []netip.AddrPort{clientAt(6000)}, Transport: session.UDP, Protocol: "ftp"})
	if !errors.Is(err, session.ErrAddressInUse) || !errors.Is(err, session.ErrDenied) {
		t.Errorf("denied UDP bind: %v, want ErrAddressInUse and ErrDenied", err)
	}
	if ev := fwxlab.Recv(t, rec.ch); ev.Type != session.EventBindUDP {
		t.Errorf("filter saw %v, want the UDP bind", ev.Type)
	}
}

// TestAllowFutureConnect: the client may connect where the policy forbids,
// once, several times with AllowMultiple, only before the deadline with
// Timeout, and not after Cancel.
func TestAllowFutureConnect(t *testing.T) {
	dst := netip.AddrPortFrom(serverIP.Addr(), 7777)
	for _, tt := range []struct {
		name    string
		flags   session.Flags
		advance time.Duration
		cancel  bool
		want    []bool
	}{
		{"none", 0, 0, false, nil},
		{"once", 0, 0, false, []bool{true, false}},
		{"multiple", session.AllowMultiple, 0, false, []bool{true, true, true}},
		{"timeout not yet", session.Timeout, 59 * time.Second, false, []bool{true}},
		{"timeout", session.Timeout, 61 * time.Second, false, []bool{false}},
		{"cancelled", session.AllowMultiple, 0, true, []bool{false}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			tb := newTestbed(t, sdkPolicy)
			fwxlab.EchoTCP(t, tb.Server, 7777)
			if tt.want == nil {
				if tb.clientConnects(t, dst) {
					t.Error("the policy let the client through")
				}
				return
			}
			a, err := tb.Session(t).AllowFutureConnect(session.FutureConnect{Addr: dst, Transport: session.TCP, Protocol: "ftp", Flags: tt.flags})
			if err != nil {
				t.Fatal(err)
			}
			tb.Clock.Advance(tt.advance)
			if tt.cancel {
				if err := a.Cancel(); err != nil {
					t.Fatal(err)
				}
			}
			for i, want := range tt.want {
				if got := tb.clientConnects(t, dst); got != want {
					t.Errorf("connection %d: connected=%v, want %v", i+1, got, want)
				}
			}
		})
	}
}

// TestRedirectConnections: the client connects to an address on fwx's
// inside and reaches the connect address, from fwx's outside address.
func TestRedirectConnections(t *testing.T) {
	tb := newTestbed(t, sdkPolicy)
	peers := fwxlab.EchoTCP(t, tb.Server2, 8888)
	res, err := tb.Session(t).RedirectConnections(session.Redirect{
		ConnectAddrs: []netip.AddrPort{netip.AddrPortFrom(server2IP.Addr(), 8888)},
		Transport:    session.TCP, Protocol: "ftp",
	})
	if err != nil {
		t.Fatal(err)
	}
	if res.Internal.Addr() != fwIn.Addr() || len(res.Actions) != 1 {
		t.Fatalf("internal address %v, %d actions; want on %v, 1", res.Internal, len(res.Actions), fwIn.Addr())
	}
	c, err := tb.Client.DialTCP(lab.Context(t, 5*time.Second), res.Internal)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	fwxlab.RoundTrip(t, c, "redirected")
	if got := fwxlab.Recv(t, peers); got.Addr() != fwOut.Addr() {
		t.Errorf("server saw %v, want fwx's outside address", got)
	}
	if peer := c.RemoteAddr().(*net.TCPAddr).AddrPort(); peer != res.Internal {
		t.Errorf("client's peer %v, want the internal address %v", peer, res.Internal)
	}
}

// TestSDKErrors: each error case is a sentinel callers test with errors.Is.
func TestSDKErrors(t *testing.T) {
	tb := newTestbed(t, sdkPolicy)
	s := tb.Session(t)
	one := []netip.AddrPort{clientAt(5001)}
	forced := netip.AddrPortFrom(fwOut.Addr(), 45000)
	bind(t, s, session.BindRequest{ClientAddrs: one, Proxy: forced})
	for _, tt := range []struct {
		name string
		err  error
		want error
	}{
		{"timeout with allow-multiple", bindErr(s, session.BindRequest{ClientAddrs: one, Flags: session.Timeout | session.AllowMultiple}), session.ErrInvalidArgument},
		{"bidirectional tcp", bindErr(s, session.BindRequest{ClientAddrs: one, Flags: session.Bidirectional}), session.ErrInvalidArgument},
		{"receive buffer tcp", bindErr(s, session.BindRequest{ClientAddrs: one, Flags: session.IncreaseReceiveBuffer}), session.ErrInvalidArgument},
		{"redirect receive buffer tcp", redirectErr(s, session.Redirect{ConnectAddrs: []netip.AddrPort{netip.MustParseAddrPort("198.51.100.2:9")},
			Transport: session.TCP, Protocol: "ftp", Flags: session.IncreaseReceiveBuffer}), session.ErrInvalidArgument},
		{"retroactive bind tcp", retroErr(s, session.RetroactiveBind{External: netip.MustParseAddrPort("198.51.100.1:9"), Transport: session.TCP, Protocol: "ftp"}), session.ErrInvalidArgument},
		{"no address", bindErr(s, session.BindRequest{}), session.ErrInvalidArgument},
		{"forced port with two", bindErr(s, session.BindRequest{ClientAddrs: []netip.AddrPort{clientAt(1), clientAt(2)}, Proxy: forced}), session.ErrInvalidArgument},
		{"other client's address", bindErr(s, session.BindRequest{ClientAddrs: []netip.AddrPort{netip.AddrPortFrom(client2IP.Addr(), 1)}}), session.ErrInvalidArgument},
		{"not fwx's address", bindErr(s, session.BindRequest{ClientAddrs: one, Proxy: netip.MustParseAddrPort("203.0.113.9:0")}), session.ErrAddressNotAvailable},
		{"address in use", bindErr(s, session.BindRequest{ClientAddrs: one, Proxy: forced}), session.ErrAddressInUse},
		{"protocol denied", bindErr(s, session.BindRequest{ClientAddrs: one, Protocol: "http"}), session.ErrProtocolDenied},
		{"future connect to nowhere", futureErr(s, session.FutureConnect{Transport: session.TCP, Protocol: "ftp"}), session.ErrInvalidArgument},
		{"future connect with bidirectional", futureErr(s, session.FutureConnect{Addr: netip.MustParseAddrPort("198.51.100.2:9"), Transport: session.TCP, Protocol: "ftp", Flags: session.Bidirectional}), session.ErrInvalidArgument},
		{"future connect protocol denied", futureErr(s, session.FutureConnect{Addr: netip.MustParseAddrPort("198.51.100.2:9"), Transport: session.TCP, Protocol: "smtp"}), session.ErrProtocolDenied},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if !errors.Is(tt.err, tt.want) {
				t.Errorf("got %v, want %v", tt.err, tt.want)
			}
		})
	}
	t.Run("busy", func(t *testing.T) {
		var err error
		for i := 0; i < 200 && err == nil; i++ {
			_, err = s.AllowFutureConnect(session.FutureConnect{Addr: netip.AddrPortFrom(serverIP.Addr(), uint16(10000+i)), Transport: session.TCP, Protocol: "ftp"})
		}
		if !errors.Is(err, session.ErrBusy) {
			t.Errorf("after many pinholes: %v, want ErrBusy", err)
		}
	})
}

func bindErr(s *session.Session, req session.BindRequest) error {
	if req.Transport == 0 {
		req.Transport = session.TCP
	}
	if req.Protocol == "" {
		req.Protocol = "ftp"
	}
	_, err := s.BindForClient(req)
	return err
}

func redirectErr(s *session.Session, req session.Redirect) error {
	_, err := s.RedirectConnections(req)
	return err
}

func retroErr(s *session.Session, req session.RetroactiveBind) error {
	_, err := s.RetroactiveAllowBind(req)
	return err
}

func futureErr(s *session.Session, req session.FutureConnect) error {
	_, err := s.AllowFutureConnect(req)
	return err
}

// TestIdleSessionEnds: a session that holds nothing ends after the idle
// time, detaching its filters; one that holds a pinhole does not.
func TestIdleSessionEnds(t *testing.T) {
	tb := newTestbed(t, sdkPolicy)
	s := tb.Session(t)
	res := bind(t, s, session.BindRequest{ClientAddrs: []netip.AddrPort{clientAt(5001)}})
	tb.Clock.Advance(11 * time.Minute)
	tb.FW.Expire()
	if s.Context().Err() != nil {
		t.Fatal("a session holding a bind ended")
	}
	res.Conns[0].Kill()
	tb.Clock.Advance(9 * time.Minute)
	tb.FW.Expire()
	if s.Context().Err() != nil {
		t.Fatal("the session ended before its idle time")
	}
	tb.Clock.Advance(2 * time.Minute)
	tb.FW.Expire()
	if s.Context().Err() == nil {
		t.Fatal("an idle session lived on")
	}
	if tb.Session(t) == s {
		t.Error("the client's next session is the ended one")
	}
}

// TestSessionTimers: a filter's timers run on fwx's clock (here the lab's
// manual clock), so a filter needs no clock of its own; stop cancels one;
// none runs after its session ended.
func TestSessionTimers(t *testing.T) {
	tb := newTestbed(t, sdkPolicy)
	s := tb.Session(t)
	if !s.Now().Equal(tb.Clock.Now()) {
		t.Errorf("session time %v, fwx's clock %v", s.Now(), tb.Clock.Now())
	}
	fired := make(chan string, 3)
	s.AfterFunc(time.Minute, func() { fired <- "minute" })
	stop := s.AfterFunc(2*time.Minute, func() { fired <- "stopped" })
	s.AfterFunc(3*time.Minute, func() { fired <- "after the end" })
	tb.Clock.Advance(59 * time.Second)
	select {
	case f := <-fired:
		t.Fatalf("timer %q ran before its time", f)
	case <-time.After(50 * time.Millisecond):
	}
	tb.Clock.Advance(time.Second)
	if f := fwxlab.Recv(t, fired); f != "minute" {
		t.Errorf("timer %q ran, want the minute's", f)
	}
	if !stop() {
		t.Error("stop did not cancel a pending timer")
	}
	s.End()
	tb.Clock.Advance(5 * time.Minute)
	select {
	case f := <-fired:
		t.Errorf("timer %q ran", f)
	case <-time.After(100 * time.Millisecond):
	}
}
