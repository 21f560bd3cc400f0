package hostnet

import (
	"context"
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

// The host carries IPv6 beside IPv4: sockets of the IPv6 address, with a
// port space of their own, ping6, and ICMPv6 errors from IPV6_RECVERR.

var loopback6 = netip.MustParseAddr("::1")

func newHost6(t *testing.T) *Host {
	t.Helper()
	if _, err := net.ListenPacket("udp6", "[::1]:0"); err != nil {
		t.Skipf("no IPv6 loopback: %v", err)
	}
	h, err := New(Options{Addr: loopback, Addr6: loopback6})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.Close() })
	return h
}

// freePort6 returns a UDP port nobody holds on ::1 right now.
func freePort6(t *testing.T) netip.AddrPort {
	t.Helper()
	c, err := net.ListenUDP("udp6", &net.UDPAddr{IP: net.IPv6loopback})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	return c.LocalAddr().(*net.UDPAddr).AddrPort()
}

func TestOptionsFamilies(t *testing.T) {
	for _, o := range []Options{
		{Addr: loopback6, Addr6: loopback6},
		{Addr: loopback, Addr6: loopback},
		{Addr: netip.IPv6Unspecified()},
	} {
		if h, err := New(o); err == nil {
			h.Close()
			t.Errorf("New(%v, %v) succeeded", o.Addr, o.Addr6)
		}
	}
}

// TestIPv6UDPMapping: a UDP mapping on the IPv6 address, beside one on the
// same port of the IPv4 address.
func TestIPv6UDPMapping(t *testing.T) {
	h := newHost6(t)
	server, err := net.ListenUDP("udp6", &net.UDPAddr{IP: net.IPv6loopback})
	if err != nil {
		t.Fatal(err)
	}
	defer server.Close()
	srv := server.LocalAddr().(*net.UDPAddr).AddrPort()
	ext := freePort6(t)
	if err := h.Hold(nat.UDP, ext, false); err != nil {
		t.Fatal(err)
	}
	// The same port on IPv4 is another socket, if the host has it free.
	ext4 := netip.AddrPortFrom(loopback, ext.Port())
	if err := h.Hold(nat.UDP, ext4, false); err == nil {
		defer h.Release(nat.UDP, ext4)
	}
	if _, err := h.Write([][]byte{lab.UDPPacket(ext, srv, []byte("hello6"))}, 0); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 100)
	server.SetReadDeadline(time.Now().Add(5 * time.Second))
	n, from, err := server.ReadFromUDPAddrPort(buf)
	if err != nil || string(buf[:n]) != "hello6" || from != ext {
		t.Fatalf("server read %q from %v: %v; want from %v", buf[:n], from, err, ext)
	}
	if _, err := server.WriteToUDPAddrPort([]byte("world6"), from); err != nil {
		t.Fatal(err)
	}
	pkt := readPacket(t, h)
	if err := lab.VerifyChecksums(pkt); err != nil {
		t.Fatal(err)
	}
	if p := nat.Parse(pkt); !p.Is6() || p.Src != srv || p.Dst != ext || string(p.Payload()) != "world6" {
		t.Fatalf("packet %s", lab.PacketString(pkt))
	}
}

// TestIPv6PortUnreachable: the ICMPv6 error a datagram caused comes back
// as an ICMPv6 packet to the mapping, quoting the datagram.
func TestIPv6PortUnreachable(t *testing.T) {
	h := newHost6(t)
	ext, closed := freePort6(t), freePort6(t)
	if err := h.Hold(nat.UDP, ext, false); err != nil {
		t.Fatal(err)
	}
	if _, err := h.Write([][]byte{lab.UDPPacket(ext, closed, []byte("anyone?"))}, 0); err != nil {
		t.Fatal(err)
	}
	pkt := readPacket(t, h)
	if err := lab.VerifyChecksums(pkt); err != nil {
		t.Fatal(err)
	}
	p := nat.Parse(pkt)
	if p.Kind != nat.Error || p.Dst.Addr() != ext.Addr() || p.ICMPType != uint8(header.ICMPv6DstUnreachable) ||
		p.ICMPCode != uint8(header.ICMPv6PortUnreachable) {
		t.Fatalf("got %s, want a port unreachable to %v", lab.PacketString(pkt), ext)
	}
	if q := p.Quoted(); q.Src != ext || q.Dst != closed {
		t.Fatalf("quoted %v → %v, want %v → %v", q.Src, q.Dst, ext, closed)
	}
}

// TestIPv6DialTCP: a TCP connection to an IPv6 server leaves from the
// host's IPv6 address.
func TestIPv6DialTCP(t *testing.T) {
	h := newHost6(t)
	ln, err := net.ListenTCP("tcp6", &net.TCPAddr{IP: net.IPv6loopback})
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	c, err := h.DialTCP(context.Background(), netip.AddrPortFrom(loopback, 0), ln.Addr().(*net.TCPAddr).AddrPort())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if local := c.LocalAddr().(*net.TCPAddr).AddrPort().Addr(); local != loopback6 {
		t.Errorf("connection from %v, want %v", local, loopback6)
	}
}

// TestIPv6Ping sends an ICMPv6 echo request through an IPv6 ping socket in
// a network namespace of its own, where the test may allow ping sockets.
func TestIPv6Ping(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to make a network namespace where ping sockets are allowed")
	}
	h := newHost6(t)
	ext := netip.AddrPortFrom(loopback6, 4243)
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread() // the thread dies with the goroutine, in its namespace
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
	req := lab.ICMPv6Echo(ext.Addr(), loopback6, header.ICMPv6EchoRequest, ext.Port(), 9)
	if _, err := h.Write([][]byte{req}, 0); err != nil {
		t.Fatal(err)
	}
	pkt := readPacket(t, h)
	if err := lab.VerifyChecksums(pkt); err != nil {
		t.Fatal(err)
	}
	if p := nat.Parse(pkt); p.Kind != nat.Query || p.ICMPType != uint8(header.ICMPv6EchoReply) || p.Dst != ext {
		t.Fatalf("reply %s", lab.PacketString(pkt))
	}
}
