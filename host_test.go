package fwx_test

import (
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/fwx-dev/fwx/netstack/lab"
	"github.com/fwx-dev/fwx/netstack/lab/fwxlab"
)

// newHostLab starts fwx in host mode between the lab's clients and this
// namespace's stack.
func newHostLab(t *testing.T, policyYAML string) *testbed {
	t.Helper()
	return &testbed{fwxlab.New(t, fwxlab.Options{Policy: policyYAML, Host: true})}
}

func TestHostMode(t *testing.T) {
	if !fwxlab.InOwnNetns(t) {
		return
	}
	t.Run("tcp", func(t *testing.T) {
		tb := newHostLab(t, "")
		srv, peers := fwxlab.HostEcho(t, fwxlab.HostServer)
		c, err := tb.Client.DialTCPFrom(lab.Context(t, 5*time.Second), netip.AddrPortFrom(fwxlab.ClientAddr, 40100), srv)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		fwxlab.RoundTrip(t, c, "hello through the host")
		if got := fwxlab.Recv(t, peers); got != netip.AddrPortFrom(fwxlab.HostAddr, 40100) {
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
		ln, err := net.ListenTCP("tcp4", net.TCPAddrFromAddrPort(netip.AddrPortFrom(fwxlab.HostServer, 0)))
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
		ln, err := net.ListenTCP("tcp4", net.TCPAddrFromAddrPort(netip.AddrPortFrom(fwxlab.HostServer, 0)))
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
		srv, err := net.ListenUDP("udp4", net.UDPAddrFromAddrPort(netip.AddrPortFrom(fwxlab.HostServer, 0)))
		if err != nil {
			t.Fatal(err)
		}
		defer srv.Close()
		other, err := net.ListenUDP("udp4", net.UDPAddrFromAddrPort(netip.AddrPortFrom(fwxlab.HostServer2, 0)))
		if err != nil {
			t.Fatal(err)
		}
		defer other.Close()
		c, err := tb.Client.DialUDP(netip.AddrPortFrom(fwxlab.ClientAddr, 40200), srv.LocalAddr().(*net.UDPAddr).AddrPort())
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		c.Write([]byte("ping"))
		buf := make([]byte, 100)
		srv.SetReadDeadline(time.Now().Add(5 * time.Second))
		n, from, err := srv.ReadFromUDPAddrPort(buf)
		if err != nil || string(buf[:n]) != "ping" || from != netip.AddrPortFrom(fwxlab.HostAddr, 40200) {
			t.Fatalf("server read %q from %v (%v), want it from %v", buf[:n], from, err, netip.AddrPortFrom(fwxlab.HostAddr, 40200))
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
		srv, err := net.ListenUDP("udp4", net.UDPAddrFromAddrPort(netip.AddrPortFrom(fwxlab.HostServer, 0)))
		if err != nil {
			t.Fatal(err)
		}
		closed := srv.LocalAddr().(*net.UDPAddr).AddrPort()
		srv.Close()
		c, err := tb.Client.DialUDP(netip.AddrPortFrom(fwxlab.ClientAddr, 40300), closed)
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
		got, err := tb.Client.Ping(lab.Context(t, 5*time.Second), fwxlab.HostServer, 9, 1, []byte("ping"))
		if err != nil || got != fwxlab.HostServer {
			t.Fatalf("echo reply from %v, %v; want one from %v", got, err, fwxlab.HostServer)
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
		peers := fwxlab.EchoTCP(t, tb.Client, 80)
		d := net.Dialer{LocalAddr: &net.TCPAddr{IP: fwxlab.HostServer.AsSlice()}, Timeout: 5 * time.Second}
		c, err := d.Dial("tcp4", netip.AddrPortFrom(fwxlab.HostAddr, 8080).String())
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		fwxlab.RoundTrip(t, c, "to the published server")
		if got := fwxlab.Recv(t, peers); got.Addr() != fwxlab.HostServer {
			t.Errorf("the published server saw %v, want the real client %v", got, fwxlab.HostServer)
		}
	})

}
