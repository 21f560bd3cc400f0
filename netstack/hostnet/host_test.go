package hostnet

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"os"
	"runtime"
	"testing"
	"time"

	"golang.org/x/sys/unix"
	"gvisor.dev/gvisor/pkg/tcpip/header"

	"github.com/fwx-dev/fwx/nat"
	"github.com/fwx-dev/fwx/netstack/lab"
)

var loopback = netip.MustParseAddr("127.0.0.1")

func newHost(t *testing.T) *Host {
	t.Helper()
	h, err := New(Options{Addr: loopback})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.Close() })
	return h
}

// freePort returns a port of proto nobody holds on loopback right now.
func freePort(t *testing.T, network string) netip.AddrPort {
	t.Helper()
	var ap netip.AddrPort
	switch network {
	case "udp":
		c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
		if err != nil {
			t.Fatal(err)
		}
		ap = c.LocalAddr().(*net.UDPAddr).AddrPort()
		c.Close()
	default:
		l, err := net.ListenTCP("tcp4", &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)})
		if err != nil {
			t.Fatal(err)
		}
		ap = l.Addr().(*net.TCPAddr).AddrPort()
		l.Close()
	}
	return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
}

// readPacket reads one packet from the host, failing after a while.
func readPacket(t *testing.T, h *Host) []byte {
	t.Helper()
	got := make(chan []byte, 1)
	go func() {
		bufs, sizes := [][]byte{make([]byte, 70000)}, []int{0}
		if n, err := h.Read(bufs, sizes, 4); err == nil && n == 1 {
			got <- bufs[0][4 : 4+sizes[0]]
		}
	}()
	select {
	case p := <-got:
		return p
	case <-time.After(5 * time.Second):
		t.Fatal("no packet from the host")
		return nil
	}
}

func TestUDPMapping(t *testing.T) {
	h := newHost(t)
	server, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer server.Close()
	srv := server.LocalAddr().(*net.UDPAddr).AddrPort()
	srv = netip.AddrPortFrom(srv.Addr().Unmap(), srv.Port())
	ext := freePort(t, "udp")
	if err := h.Hold(nat.UDP, ext, false); err != nil {
		t.Fatal(err)
	}

	// Out: the payload leaves from the held port.
	pkt := lab.UDPPacket(ext, srv, []byte("hello"))
	if n, err := h.Write([][]byte{append(make([]byte, 4), pkt...)}, 4); err != nil || n != 1 {
		t.Fatalf("write: %d, %v", n, err)
	}
	buf := make([]byte, 100)
	server.SetReadDeadline(time.Now().Add(5 * time.Second))
	n, from, err := server.ReadFromUDPAddrPort(buf)
	if err != nil || string(buf[:n]) != "hello" || from.Port() != ext.Port() {
		t.Fatalf("server read %q from %v: %v", buf[:n], from, err)
	}

	// In: the reply comes back as a packet from the server to the
	// external endpoint, with valid checksums.
	if _, err := server.WriteToUDPAddrPort([]byte("world"), from); err != nil {
		t.Fatal(err)
	}
	p := readPacket(t, h)
	if err := lab.VerifyChecksums(p); err != nil {
		t.Fatal(err)
	}
	ip := header.IPv4(p)
	u := header.UDP(ip.Payload())
	if netip.AddrFrom4(ip.SourceAddress().As4()) != srv.Addr() || u.SourcePort() != srv.Port() ||
		netip.AddrFrom4(ip.DestinationAddress().As4()) != ext.Addr() || u.DestinationPort() != ext.Port() ||
		string(u.Payload()) != "world" {
		t.Fatalf("packet %s", lab.PacketString(p))
	}

	// Released: the port is the host's again.
	h.Release(nat.UDP, ext)
	c, err := net.ListenUDP("udp4", net.UDPAddrFromAddrPort(ext))
	if err != nil {
		t.Fatalf("port not given back: %v", err)
	}
	c.Close()
}

func TestHoldBusyPort(t *testing.T) {
	h := newHost(t)
	for _, network := range []string{"udp", "tcp"} {
		t.Run(network, func(t *testing.T) {
			var busy netip.AddrPort
			var proto nat.Proto
			if network == "udp" {
				c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
				if err != nil {
					t.Fatal(err)
				}
				defer c.Close()
				busy, proto = c.LocalAddr().(*net.UDPAddr).AddrPort(), nat.UDP
			} else {
				l, err := net.ListenTCP("tcp4", &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)})
				if err != nil {
					t.Fatal(err)
				}
				defer l.Close()
				busy, proto = l.Addr().(*net.TCPAddr).AddrPort(), nat.TCP
			}
			busy = netip.AddrPortFrom(busy.Addr().Unmap(), busy.Port())
			if err := h.Hold(proto, busy, true); !errors.Is(err, nat.ErrPortInUse) {
				t.Fatalf("hold of a busy port: %v", err)
			}
		})
	}
}

func TestHeldListener(t *testing.T) {
	h := newHost(t)
	ext := freePort(t, "tcp")
	if err := h.Hold(nat.TCP, ext, true); err != nil {
		t.Fatal(err)
	}
	// The port is taken from the moment it is held.
	if _, err := net.ListenTCP("tcp4", net.TCPAddrFromAddrPort(ext)); err == nil {
		t.Fatal("a held port could be bound by another")
	}
	ln, err := h.ListenTCP(ext)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	c, err := net.Dial("tcp4", ext.String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	a, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	a.Close()
	// Released after it was taken: the taker's listener stays open.
	h.Release(nat.TCP, ext)
	c2, err := net.Dial("tcp4", ext.String())
	if err != nil {
		t.Fatalf("the listener closed under its taker: %v", err)
	}
	c2.Close()
}

func TestDialTCPFallsBack(t *testing.T) {
	h := newHost(t)
	ln, err := net.ListenTCP("tcp4", &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	remote := ln.Addr().(*net.TCPAddr).AddrPort()
	busy, err := net.ListenTCP("tcp4", &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	local := busy.Addr().(*net.TCPAddr).AddrPort()
	tests := []struct {
		name     string
		local    netip.AddrPort
		samePort bool
	}{
		{"free port kept", freePort(t, "tcp"), true},
		{"busy port replaced", netip.AddrPortFrom(loopback, local.Port()), false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := h.DialTCP(context.Background(), tt.local, netip.AddrPortFrom(loopback, remote.Port()))
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			got := c.LocalAddr().(*net.TCPAddr).AddrPort().Port()
			if (got == tt.local.Port()) != tt.samePort {
				t.Fatalf("dialled from port %d, asked for %d", got, tt.local.Port())
			}
		})
	}
	if _, err := h.DialTCP(context.Background(), netip.AddrPortFrom(loopback, 0), freePort(t, "tcp")); !errors.Is(err, unix.ECONNREFUSED) {
		t.Fatalf("dial to a closed port: %v, want ECONNREFUSED", err)
	}
}

func TestClose(t *testing.T) {
	h, err := New(Options{Addr: loopback})
	if err != nil {
		t.Fatal(err)
	}
	ext := freePort(t, "udp")
	if err := h.Hold(nat.UDP, ext, false); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() {
		_, err := h.Read([][]byte{make([]byte, 100)}, []int{0}, 0)
		done <- err
	}()
	h.Close()
	select {
	case err := <-done:
		if !errors.Is(err, os.ErrClosed) {
			t.Fatalf("read after close: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("close did not unblock read")
	}
	if err := h.Hold(nat.UDP, ext, false); !errors.Is(err, os.ErrClosed) {
		t.Fatalf("hold after close: %v", err)
	}
}

// TestPing sends an echo request through a ping socket in a network
// namespace of its own, where the test may allow ping sockets.
func TestPing(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to make a network namespace where ping sockets are allowed")
	}
	h := newHost(t)
	ext := netip.AddrPortFrom(loopback, 4242)
	errc := make(chan error, 1)
	go func() {
		// This thread moves to a new namespace and dies with the
		// goroutine (it stays locked); the ping socket keeps the
		// namespace.
		runtime.LockOSThread()
		errc <- func() error {
			if err := unix.Unshare(unix.CLONE_NEWNET); err != nil {
				return err
			}
			if err := os.WriteFile("/proc/sys/net/ipv4/ping_group_range", []byte("0 2147483647"), 0); err != nil {
				return err
			}
			if err := linkUp("lo"); err != nil {
				return err
			}
			return h.Hold(nat.ICMP, ext, false)
		}()
	}()
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
	req := lab.ICMPEcho(ext.Addr(), loopback, header.ICMPv4Echo, ext.Port(), 7)
	if _, err := h.Write([][]byte{req}, 0); err != nil {
		t.Fatal(err)
	}
	p := readPacket(t, h)
	if err := lab.VerifyChecksums(p); err != nil {
		t.Fatal(err)
	}
	icmp := header.ICMPv4(header.IPv4(p).Payload())
	if icmp.Type() != header.ICMPv4EchoReply || icmp.Ident() != ext.Port() || icmp.Sequence() != 7 {
		t.Fatalf("reply %s", lab.PacketString(p))
	}
}

// linkUp brings an interface of the calling thread's namespace up.
func linkUp(name string) error {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	ifr, err := unix.NewIfreq(name)
	if err != nil {
		return err
	}
	if err := unix.IoctlIfreq(fd, unix.SIOCGIFFLAGS, ifr); err != nil {
		return err
	}
	ifr.SetUint16(ifr.Uint16() | unix.IFF_UP)
	return unix.IoctlIfreq(fd, unix.SIOCSIFFLAGS, ifr)
}

// TestUDPPortUnreachable: a datagram to a closed port comes back as the
// ICMP error the kernel received for it, addressed to the mapping and
// quoting the datagram as it left the mapping.
func TestUDPPortUnreachable(t *testing.T) {
	h := newHost(t)
	ext := freePort(t, "udp")
	closed := freePort(t, "udp")
	if err := h.Hold(nat.UDP, ext, false); err != nil {
		t.Fatal(err)
	}
	if _, err := h.Write([][]byte{lab.UDPPacket(ext, closed, []byte("anyone?"))}, 0); err != nil {
		t.Fatal(err)
	}
	p := readPacket(t, h)
	if err := lab.VerifyChecksums(p); err != nil {
		t.Fatal(err)
	}
	ip := header.IPv4(p)
	icmp := header.ICMPv4(ip.Payload())
	if netip.AddrFrom4(ip.DestinationAddress().As4()) != ext.Addr() ||
		icmp.Type() != header.ICMPv4DstUnreachable || icmp.Code() != header.ICMPv4PortUnreachable {
		t.Fatalf("got %s, want a port unreachable to %v", lab.PacketString(p), ext)
	}
	quoted := header.IPv4(icmp.Payload())
	u := header.UDP(quoted.Payload())
	if netip.AddrFrom4(quoted.SourceAddress().As4()) != ext.Addr() || u.SourcePort() != ext.Port() ||
		netip.AddrFrom4(quoted.DestinationAddress().As4()) != closed.Addr() || u.DestinationPort() != closed.Port() {
		t.Fatalf("quoted %s, want the datagram from %v to %v", lab.PacketString(icmp.Payload()), ext, closed)
	}
}
