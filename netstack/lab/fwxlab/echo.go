package fwxlab

import (
	"io"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/fwx-dev/fwx/netstack/lab"
)

// Servers and checks that most tests through fwx need: echo servers that
// report who reached them (the address fwx translated to), and a round
// trip through one.

// EchoTCP serves a TCP echo on h's port (IPv4) until the test ends, and
// reports each client's address, as the server sees it, on the channel
// (64 of them; later ones are not reported).
func EchoTCP(tb testing.TB, h *lab.Host, port uint16) <-chan netip.AddrPort {
	tb.Helper()
	return EchoTCPOn(tb, h, netip.AddrPortFrom(netip.IPv4Unspecified(), port))
}

// EchoTCPOn is EchoTCP on addr, of either family.
func EchoTCPOn(tb testing.TB, h *lab.Host, addr netip.AddrPort) <-chan netip.AddrPort {
	tb.Helper()
	ln, err := h.ListenTCPOn(addr)
	if err != nil {
		tb.Fatal(err)
	}
	return ServeEcho(tb, ln)
}

// ServeEcho echoes what every connection ln accepts sends until the test
// ends, when it closes ln, and reports each client's address on the
// channel (64 of them; later ones are not reported). ln may be a lab
// host's listener or a real one.
func ServeEcho(tb testing.TB, ln net.Listener) <-chan netip.AddrPort {
	tb.Cleanup(func() { ln.Close() })
	peers := make(chan netip.AddrPort, 64)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			// A connection reset at once has no remote address any more.
			var peer netip.AddrPort
			if a, ok := c.RemoteAddr().(*net.TCPAddr); ok {
				peer = a.AddrPort()
			}
			select {
			case peers <- peer:
			default: // nobody is counting this many
			}
			go func() {
				defer c.Close()
				io.Copy(c, c)
			}()
		}
	}()
	return peers
}

// EchoUDP serves a UDP echo on h's port (IPv4) until the test ends, and
// reports each datagram's source on the channel, which holds 16: a test
// that sends more must read them.
func EchoUDP(tb testing.TB, h *lab.Host, port uint16) <-chan netip.AddrPort {
	tb.Helper()
	return EchoUDPOn(tb, h, netip.AddrPortFrom(netip.IPv4Unspecified(), port))
}

// EchoUDPOn is EchoUDP on addr, of either family.
func EchoUDPOn(tb testing.TB, h *lab.Host, addr netip.AddrPort) <-chan netip.AddrPort {
	tb.Helper()
	c, err := h.ListenUDPOn(addr)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { c.Close() })
	peers := make(chan netip.AddrPort, 16)
	go func() {
		buf := make([]byte, 65536)
		for {
			n, from, err := c.ReadFrom(buf)
			if err != nil {
				return
			}
			peers <- from.(*net.UDPAddr).AddrPort()
			c.WriteTo(buf[:n], from)
		}
	}()
	return peers
}

// Recv returns the next value from ch, failing the test after 5 seconds.
func Recv[T any](tb testing.TB, ch <-chan T) T {
	tb.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(5 * time.Second):
		tb.Fatal("timed out")
	}
	panic("unreachable")
}

// RoundTrip writes msg to c and fails the test unless the same bytes come
// back within 5 seconds (from an echo server).
func RoundTrip(tb testing.TB, c net.Conn, msg string) {
	tb.Helper()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := c.Write([]byte(msg)); err != nil {
		tb.Fatal(err)
	}
	buf := make([]byte, len(msg))
	if _, err := io.ReadFull(c, buf); err != nil {
		tb.Fatal(err)
	}
	if string(buf) != msg {
		tb.Fatalf("echo %q, want %q", buf, msg)
	}
}

// Connects reports whether h reaches dst over TCP within wait. Give a
// connection that should succeed seconds (the race detector and a loaded
// machine slow the lab down), and one that should not a short wait: a
// pinhole that wrongly let it through would answer within milliseconds.
func Connects(tb testing.TB, h *lab.Host, dst netip.AddrPort, wait time.Duration) bool {
	tb.Helper()
	c, err := h.DialTCP(lab.Context(tb, wait), dst)
	if err != nil {
		return false
	}
	c.Close()
	return true
}

// CountAtLeast reads a counter (a segment's [lab.SegmentStats], say)
// until it reaches want or a second has passed, and returns the last
// value read: a segment counts a packet after it handed it to its host,
// so a test can see a datagram before the count of its last fragment.
func CountAtLeast(read func() uint64, want uint64) uint64 {
	deadline := time.Now().Add(time.Second)
	for {
		n := read()
		if n >= want || time.Now().After(deadline) {
			return n
		}
		time.Sleep(5 * time.Millisecond)
	}
}
