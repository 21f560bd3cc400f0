package session_test

import (
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/fwx-dev/fwx/netstack/lab"
	"github.com/fwx-dev/fwx/netstack/lab/fwxlab"
	"github.com/fwx-dev/fwx/session"
)

// TestHostModeSDK: the filter SDK's grants in host mode, where their ports
// are the host's own (fwxlab's host-mode lab, in a network namespace of
// the test's own).
func TestHostModeSDK(t *testing.T) {
	if !fwxlab.InOwnNetns(t) {
		return
	}
	t.Run("AllowFutureConnect", func(t *testing.T) {
		// The policy allows only FTP control connections: the pinhole
		// alone lets the client reach the server's other port, once.
		tb := newHostLab(t, sdkPolicy)
		dst, _ := fwxlab.HostEcho(t, fwxlab.HostServer)
		if tb.clientConnects(t, dst) {
			t.Fatal("the policy let the client through")
		}
		if _, err := tb.Session(t).AllowFutureConnect(session.FutureConnect{Addr: dst, Transport: session.TCP, Protocol: "ftp"}); err != nil {
			t.Fatal(err)
		}
		if !tb.clientConnects(t, dst) {
			t.Error("the pinhole did not let the client through")
		}
		if tb.clientConnects(t, dst) {
			t.Error("a single-use pinhole let a second connection through")
		}
	})

	t.Run("RedirectConnections", func(t *testing.T) {
		tb := newHostLab(t, sdkPolicy)
		dst, peers := fwxlab.HostEcho(t, fwxlab.HostServer2)
		res, err := tb.Session(t).RedirectConnections(session.Redirect{
			ConnectAddrs: []netip.AddrPort{dst}, Transport: session.TCP, Protocol: "ftp",
		})
		if err != nil {
			t.Fatal(err)
		}
		c, err := tb.Client.DialTCP(lab.Context(t, 5*time.Second), res.Internal)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		fwxlab.RoundTrip(t, c, "redirected")
		if got := fwxlab.Recv(t, peers); got.Addr() != fwxlab.HostAddr {
			t.Errorf("server saw %v, want the host address", got)
		}
	})

	t.Run("bind unarmed", func(t *testing.T) {
		// The host accepts a connection to an unarmed bind before fwx can
		// say anything: it is held until the bind is armed, or reset
		// when the bind is killed.
		for _, arm := range []bool{true, false} {
			tb := newHostLab(t, sdkPolicy)
			fwxlab.EchoTCP(t, tb.Client, 5001)
			res := bind(t, tb.Session(t), session.BindRequest{ClientAddrs: []netip.AddrPort{clientAt(5001)},
				Flags: session.Timeout | session.Unarmed, IPFilter: session.NewIPFilter(fwxlab.HostServer)})
			d := net.Dialer{LocalAddr: &net.TCPAddr{IP: fwxlab.HostServer.AsSlice()}, Timeout: 5 * time.Second}
			conn, err := d.Dial("tcp4", res.Proxy.String())
			if err != nil {
				t.Fatal(err)
			}
			time.Sleep(200 * time.Millisecond)
			if arm {
				if err := res.Conns[0].Arm(); err != nil {
					t.Fatal(err)
				}
				fwxlab.RoundTrip(t, conn, "held, then armed")
			} else {
				res.Conns[0].Kill()
				conn.SetDeadline(time.Now().Add(5 * time.Second))
				if _, err := conn.Read(make([]byte, 1)); err == nil {
					t.Error("a connection to a killed unarmed bind was not refused")
				}
			}
			conn.Close()
		}
	})

	t.Run("bind", func(t *testing.T) {
		tb := newHostLab(t, sdkPolicy)
		fwxlab.EchoTCP(t, tb.Client, 5001)
		fwxlab.EchoTCP(t, tb.Client, 5002)
		res := bind(t, tb.Session(t), session.BindRequest{
			ClientAddrs: []netip.AddrPort{clientAt(5001), clientAt(5002)},
			Flags:       session.AllowMultiple,
			IPFilter:    session.NewIPFilter(fwxlab.HostServer),
		})
		if res.Proxy.Addr() != fwxlab.HostAddr || res.Proxy.Port()%2 != 0 {
			t.Fatalf("bound %v: want the host address and an even port", res.Proxy)
		}
		for i, c := range res.Conns {
			// The ports are the host's: nobody else can take them.
			if ln, err := net.ListenTCP("tcp4", net.TCPAddrFromAddrPort(c.Addr())); err == nil {
				ln.Close()
				t.Fatalf("port %v of the bind is not held on the host", c.Addr())
			}
			d := net.Dialer{LocalAddr: &net.TCPAddr{IP: fwxlab.HostServer.AsSlice()}, Timeout: 5 * time.Second}
			conn, err := d.Dial("tcp4", c.Addr().String())
			if err != nil {
				t.Fatalf("connection %d: %v", i, err)
			}
			fwxlab.RoundTrip(t, conn, "through the bound port")
			conn.Close()
			// The IP filter: another address is reset.
			d.LocalAddr = &net.TCPAddr{IP: fwxlab.HostServer2.AsSlice()}
			if conn, err := d.Dial("tcp4", c.Addr().String()); err == nil {
				conn.SetDeadline(time.Now().Add(5 * time.Second))
				if _, err := conn.Read(make([]byte, 1)); err == nil {
					t.Errorf("connection from %v through port %v was not refused", fwxlab.HostServer2, c.Addr())
				}
				conn.Close()
			}
		}
		for _, c := range res.Conns {
			c.Kill()
		}
		// Killed: the ports go back to the host.
		deadline := time.Now().Add(5 * time.Second)
		for _, c := range res.Conns {
			for {
				ln, err := net.ListenTCP("tcp4", net.TCPAddrFromAddrPort(c.Addr()))
				if err == nil {
					ln.Close()
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("port %v still held after Kill: %v", c.Addr(), err)
				}
				time.Sleep(10 * time.Millisecond)
			}
		}
	})
}
