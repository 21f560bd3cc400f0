package fwx_test

import (
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/fwx-dev/fwx"
	"github.com/fwx-dev/fwx/netstack/hostnet"
	"github.com/fwx-dev/fwx/netstack/lab"
	"github.com/fwx-dev/fwx/session"
)

// Host mode in the lab: the clients are the lab's, behind fwx's inside
// device; the outside is this process's own network stack. So that the
// servers have addresses of their own and nothing leaves the machine, the
// tests run in a network namespace of their own (the test binary runs
// itself again in one), where the host addresses below are on lo.
var (
	hostAddr    = netip.MustParseAddr("192.0.2.1") // fwx's sockets bind here
	hostServer  = netip.MustParseAddr("192.0.2.2")
	hostServer2 = netip.MustParseAddr("192.0.2.3")
	hostAddr6   = netip.MustParseAddr("2001:db8:1::1")
	hostServer6 = netip.MustParseAddr("2001:db8:1::2")
)

const netnsEnv = "FWX_TEST_NETNS"

// inOwnNetns reports whether the test runs in its own namespace. If not,
// it runs the test there (as root; skipped otherwise) and reports its
// result, and the caller returns.
func inOwnNetns(t *testing.T) bool {
	t.Helper()
	if os.Getenv(netnsEnv) == t.Name() {
		for _, args := range [][]string{
			{"link", "set", "lo", "up"},
			{"addr", "add", hostAddr.String() + "/32", "dev", "lo"},
			{"addr", "add", hostServer.String() + "/32", "dev", "lo"},
			{"addr", "add", hostServer2.String() + "/32", "dev", "lo"},
			{"addr", "add", hostAddr6.String() + "/128", "dev", "lo", "nodad"},
			{"addr", "add", hostServer6.String() + "/128", "dev", "lo", "nodad"},
		} {
			if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
				t.Fatalf("ip %s: %v: %s", strings.Join(args, " "), err, out)
			}
		}
		if err := os.WriteFile("/proc/sys/net/ipv4/ping_group_range", []byte("0 2147483647"), 0); err != nil {
			t.Fatal(err)
		}
		return true
	}
	if os.Geteuid() != 0 {
		t.Skip("host-mode lab tests run in a network namespace of their own, which needs root (CI runs as root)")
	}
	if _, err := exec.LookPath("ip"); err != nil {
		t.Skip("host-mode lab tests need ip(8) (iproute2; scripts/deps installs it)")
	}
	cmd := exec.Command(os.Args[0], "-test.run=^"+t.Name()+"$", "-test.v", "-test.count=1")
	cmd.Env = append(os.Environ(), netnsEnv+"="+t.Name())
	cmd.SysProcAttr = &syscall.SysProcAttr{Cloneflags: syscall.CLONE_NEWNET}
	out, err := cmd.CombinedOutput()
	if err != nil || !strings.Contains(string(out), "--- PASS: "+t.Name()) {
		t.Fatalf("in its own network namespace: %v\n%s", err, out)
	}
	if testing.Verbose() {
		t.Logf("in its own network namespace:\n%s", out)
	}
	return false
}

// newHostLab starts fwx in host mode between the lab's clients and this
// namespace's stack.
func newHostLab(t *testing.T, policyYAML string, opts ...func(*fwx.Config)) *testbed {
	t.Helper()
	h, err := hostnet.New(hostnet.Options{Addr: hostAddr})
	if err != nil {
		t.Fatal(err)
	}
	return newTestbed(t, policyYAML, append(opts, func(c *fwx.Config) {
		c.Outside, c.OutsideAddr, c.Host = nil, netip.Prefix{}, h
	})...)
}

// hostEcho serves a TCP echo on a host address and reports each peer.
func hostEcho(t *testing.T, addr netip.Addr) (netip.AddrPort, <-chan netip.AddrPort) {
	t.Helper()
	ln, err := net.ListenTCP("tcp4", net.TCPAddrFromAddrPort(netip.AddrPortFrom(addr, 0)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	peers := make(chan netip.AddrPort, 16)
	go func() {
		for {
			c, err := ln.AcceptTCP()
			if err != nil {
				return
			}
			peers <- c.RemoteAddr().(*net.TCPAddr).AddrPort()
			go func() {
				defer c.Close()
				io.Copy(c, c)
				c.CloseWrite()
			}()
		}
	}()
	return ln.Addr().(*net.TCPAddr).AddrPort(), peers
}

func TestHostMode(t *testing.T) {
	if !inOwnNetns(t) {
		return
	}
	t.Run("tcp", func(t *testing.T) {
		tb := newHostLab(t, "")
		srv, peers := hostEcho(t, hostServer)
		c, err := tb.Client.DialTCPFrom(lab.Context(t, 5*time.Second), clientAt(40100), srv)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		roundTrip(t, c, "hello through the host")
		if got := recv(t, peers); got != netip.AddrPortFrom(hostAddr, 40100) {
			t.Errorf("server saw %v, want the host address and the client's port", got)
		}
		// Half-close carried both ways: the client's FIN reaches the
		// server, which answers and closes in turn.
		c.(interface{ CloseWrite() error }).CloseWrite()
		c.SetDeadline(time.Now().Add(5 * time.Second))
		if rest, err := io.ReadAll(c); err != nil || len(rest) != 0 {
			t.Fatalf("after half-close: %q, %v; want a clean end of stream", rest, err)
		}
	})

	t.Run("refused", func(t *testing.T) {
		tb := newHostLab(t, "")
		ln, err := net.ListenTCP("tcp4", net.TCPAddrFromAddrPort(netip.AddrPortFrom(hostServer, 0)))
		if err != nil {
			t.Fatal(err)
		}
		closed := ln.Addr().(*net.TCPAddr).AddrPort()
		ln.Close()
		_, err = tb.Client.DialTCP(lab.Context(t, 5*time.Second), closed)
		if !errors.Is(err, syscall.ECONNREFUSED) && !strings.Contains(fmt.Sprint(err), "refused") {
			t.Fatalf("dial to a closed port: %v, want the refusal as a RST", err)
		}
	})

	t.Run("server reset", func(t *testing.T) {
		tb := newHostLab(t, "")
		ln, err := net.ListenTCP("tcp4", net.TCPAddrFromAddrPort(netip.AddrPortFrom(hostServer, 0)))
		if err != nil {
			t.Fatal(err)
		}
		defer ln.Close()
		go func() {
			c, err := ln.AcceptTCP()
			if err != nil {
				return
			}
			io.ReadFull(c, make([]byte, 5))
			c.SetLinger(0)
			c.Close()
		}()
		c, err := tb.Client.DialTCP(lab.Context(t, 5*time.Second), ln.Addr().(*net.TCPAddr).AddrPort())
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		c.Write([]byte("reset"))
		c.SetDeadline(time.Now().Add(5 * time.Second))
		if _, err := io.ReadAll(c); err == nil || !strings.Contains(err.Error(), "reset") {
			t.Fatalf("read after the server's RST: %v, want a reset", err)
		}
	})

	t.Run("udp", func(t *testing.T) {
		tb := newHostLab(t, "")
		srv, err := net.ListenUDP("udp4", net.UDPAddrFromAddrPort(netip.AddrPortFrom(hostServer, 0)))
		if err != nil {
			t.Fatal(err)
		}
		defer srv.Close()
		other, err := net.ListenUDP("udp4", net.UDPAddrFromAddrPort(netip.AddrPortFrom(hostServer2, 0)))
		if err != nil {
			t.Fatal(err)
		}
		defer other.Close()
		c, err := tb.Client.DialUDP(clientAt(40200), srv.LocalAddr().(*net.UDPAddr).AddrPort())
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		c.Write([]byte("ping"))
		buf := make([]byte, 100)
		srv.SetReadDeadline(time.Now().Add(5 * time.Second))
		n, from, err := srv.ReadFromUDPAddrPort(buf)
		if err != nil || string(buf[:n]) != "ping" || from != netip.AddrPortFrom(hostAddr, 40200) {
			t.Fatalf("server read %q from %v (%v), want it from %v", buf[:n], from, err, netip.AddrPortFrom(hostAddr, 40200))
		}
		// A third party is filtered out (address-dependent filtering);
		// the server's reply comes through from the server's address.
		other.WriteToUDPAddrPort([]byte("intruder"), from)
		srv.WriteToUDPAddrPort([]byte("pong"), from)
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		n, err = c.Read(buf)
		if err != nil || string(buf[:n]) != "pong" {
			t.Fatalf("client read %q, %v; want only the server's pong", buf[:n], err)
		}
	})

	t.Run("udp refused", func(t *testing.T) {
		tb := newHostLab(t, "")
		srv, err := net.ListenUDP("udp4", net.UDPAddrFromAddrPort(netip.AddrPortFrom(hostServer, 0)))
		if err != nil {
			t.Fatal(err)
		}
		closed := srv.LocalAddr().(*net.UDPAddr).AddrPort()
		srv.Close()
		c, err := tb.Client.DialUDP(clientAt(40300), closed)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		c.Write([]byte("anyone?"))
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		if _, err := c.Read(make([]byte, 10)); !errors.Is(err, syscall.ECONNREFUSED) && !strings.Contains(fmt.Sprint(err), "refused") {
			t.Fatalf("read after a datagram to a closed port: %v, want the port unreachable as ECONNREFUSED", err)
		}
	})

	t.Run("ping", func(t *testing.T) {
		tb := newHostLab(t, "")
		got, err := tb.Client.Ping(lab.Context(t, 5*time.Second), hostServer, 9, 1, []byte("ping"))
		if err != nil || got != hostServer {
			t.Fatalf("echo reply from %v, %v; want one from %v", got, err, hostServer)
		}
	})

	t.Run("AllowFutureConnect", func(t *testing.T) {
		// The policy allows only FTP control connections: the pinhole
		// alone lets the client reach the server's other port, once.
		tb := newHostLab(t, sdkPolicy)
		dst, _ := hostEcho(t, hostServer)
		if tb.clientConnects(t, dst) {
			t.Fatal("the policy let the client through")
		}
		if _, err := tb.Session(t).AllowFutureConnect(session.FutureConnect{Addr: dst, Protocol: session.TCP, ProtocolName: "ftp"}); err != nil {
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
		dst, peers := hostEcho(t, hostServer2)
		res, err := tb.Session(t).RedirectConnections(session.Redirect{
			ConnectAddrs: []netip.AddrPort{dst}, Protocol: session.TCP, ProtocolName: "ftp",
		})
		if err != nil {
			t.Fatal(err)
		}
		c, err := tb.Client.DialTCP(lab.Context(t, 5*time.Second), res.Internal)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		roundTrip(t, c, "redirected")
		if got := recv(t, peers); got.Addr() != hostAddr {
			t.Errorf("server saw %v, want the host address", got)
		}
	})

	t.Run("published server", func(t *testing.T) {
		tb := newHostLab(t, `
protocols:
  - {name: web-in, transport: tcp, ports: [8080], direction: inbound}
rules:
  - {name: out, action: allow, from: [internal], to: [external], protocols: [any]}
publish:
  - {name: www, protocol: web-in, listen: ":8080", server: "10.0.0.2:80"}
`)
		peers := echoTCP(t, tb.Client, 80)
		d := net.Dialer{LocalAddr: &net.TCPAddr{IP: hostServer.AsSlice()}, Timeout: 5 * time.Second}
		c, err := d.Dial("tcp4", netip.AddrPortFrom(hostAddr, 8080).String())
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		roundTrip(t, c, "to the published server")
		if got := recv(t, peers); got.Addr() != hostServer {
			t.Errorf("the published server saw %v, want the real client %v", got, hostServer)
		}
	})

	t.Run("bind unarmed", func(t *testing.T) {
		// The host accepts a connection to an unarmed bind before fwx can
		// say anything: it is held until the bind is armed, or reset
		// when the bind is killed.
		for _, arm := range []bool{true, false} {
			tb := newHostLab(t, sdkPolicy)
			echoTCP(t, tb.Client, 5001)
			res := bind(t, tb.Session(t), session.BindRequest{ClientAddrs: []netip.AddrPort{clientAt(5001)},
				Flags: session.Timeout | session.Unarmed, IPFilter: session.NewIPFilter(hostServer)})
			d := net.Dialer{LocalAddr: &net.TCPAddr{IP: hostServer.AsSlice()}, Timeout: 5 * time.Second}
			conn, err := d.Dial("tcp4", res.Proxy.String())
			if err != nil {
				t.Fatal(err)
			}
			time.Sleep(200 * time.Millisecond)
			if arm {
				if err := res.Conns[0].Arm(); err != nil {
					t.Fatal(err)
				}
				roundTrip(t, conn, "held, then armed")
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
		echoTCP(t, tb.Client, 5001)
		echoTCP(t, tb.Client, 5002)
		res := bind(t, tb.Session(t), session.BindRequest{
			ClientAddrs: []netip.AddrPort{clientAt(5001), clientAt(5002)},
			Flags:       session.AllowMultiple,
			IPFilter:    session.NewIPFilter(hostServer),
		})
		if res.Proxy.Addr() != hostAddr || res.Proxy.Port()%2 != 0 {
			t.Fatalf("bound %v: want the host address and an even port", res.Proxy)
		}
		for i, c := range res.Conns {
			// The ports are the host's: nobody else can take them.
			if ln, err := net.ListenTCP("tcp4", net.TCPAddrFromAddrPort(c.Addr())); err == nil {
				ln.Close()
				t.Fatalf("port %v of the bind is not held on the host", c.Addr())
			}
			d := net.Dialer{LocalAddr: &net.TCPAddr{IP: hostServer.AsSlice()}, Timeout: 5 * time.Second}
			conn, err := d.Dial("tcp4", c.Addr().String())
			if err != nil {
				t.Fatalf("connection %d: %v", i, err)
			}
			roundTrip(t, conn, "through the bound port")
			conn.Close()
			// The IP filter: another address is reset.
			d.LocalAddr = &net.TCPAddr{IP: hostServer2.AsSlice()}
			if conn, err := d.Dial("tcp4", c.Addr().String()); err == nil {
				conn.SetDeadline(time.Now().Add(5 * time.Second))
				if _, err := conn.Read(make([]byte, 1)); err == nil {
					t.Errorf("connection from %v through port %v was not refused", hostServer2, c.Addr())
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
