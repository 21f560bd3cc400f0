package fwx_test

import (
	"errors"
	"io"
	"net"
	"net/netip"
	"syscall"
	"testing"
	"time"

	"github.com/fwx-dev/fwx/netstack/lab"
	"github.com/fwx-dev/fwx/netstack/lab/fwxlab"
)

// The timers come from the policy, each different, so the test also proves
// the policy reaches the NAT table.
const timerPolicy = `
rules:
  - {name: out, action: allow, from: [internal], to: [external], protocols: [any]}
options:
  timeouts: {udp: 3m, icmp: 70s, tcp-established: 2h10m, tcp-transitory: 5m, tcp-rst: 6m}
`

// expectRead reads msg from c within a short real-time wait, or, when msg
// is empty, checks that nothing arrives.
func expectRead(t *testing.T, c net.Conn, msg string) {
	t.Helper()
	wait := 5 * time.Second
	if msg == "" {
		wait = 300 * time.Millisecond
	}
	c.SetReadDeadline(time.Now().Add(wait))
	buf := make([]byte, 64)
	n, err := c.Read(buf)
	var ne net.Error
	switch {
	case msg == "" && errors.As(err, &ne) && ne.Timeout():
	case msg == "":
		t.Fatalf("read %q, %v; want nothing: the flow should have expired", buf[:n], err)
	case err != nil:
		t.Fatalf("read: %v; want %q: the flow expired early", err, msg)
	case string(buf[:n]) != msg:
		t.Fatalf("read %q, want %q", buf[:n], msg)
	}
}

// TestUDPTimer checks that a UDP flow lives for its timer after the last
// packet and not a second more, on the injected clock.
func TestUDPTimer(t *testing.T) {
	tb := newTestbed(t, timerPolicy)
	srv, err := tb.Server.ListenUDP(7000)
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	c, err := tb.Client.DialUDP(netip.AddrPortFrom(clientIP.Addr(), 44000), netip.AddrPortFrom(serverIP.Addr(), 7000))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.Write([]byte("hi"))
	buf := make([]byte, 16)
	srv.SetReadDeadline(time.Now().Add(5 * time.Second))
	_, peer, err := srv.ReadFrom(buf)
	if err != nil {
		t.Fatal(err)
	}

	tb.Clock.Advance(3*time.Minute - time.Second)
	srv.WriteTo([]byte("late"), peer) // refreshes the flow too
	expectRead(t, c, "late")

	tb.Clock.Advance(3*time.Minute + time.Second)
	srv.WriteTo([]byte("too late"), peer)
	expectRead(t, c, "")
	if n := tb.FW.Flows(); n != 0 {
		t.Errorf("%d flows after expiry, want 0", n)
	}
	tb.Log.WaitRecords(t, 1, map[string]string{"event": "ended", "protocol": "udp"})
}

// TestICMPTimer checks the ICMP query timer through the log: the flow's end
// is reported only once its timer has run out after the last packet, and
// its duration runs to that last packet.
func TestICMPTimer(t *testing.T) {
	tb := newTestbed(t, timerPolicy)
	if _, err := tb.Client.Ping(lab.Context(t, 5*time.Second), serverIP.Addr(), 9, 1, nil); err != nil {
		t.Fatal(err)
	}
	tb.Clock.Advance(10 * time.Second)
	if _, err := tb.Client.Ping(lab.Context(t, 5*time.Second), serverIP.Addr(), 9, 2, nil); err != nil {
		t.Fatal(err)
	}
	tb.Clock.Advance(69 * time.Second)
	if n := tb.FW.Expire(); n != 0 {
		t.Fatalf("%d flows expired before the 70 s timer", n)
	}
	tb.Clock.Advance(2 * time.Second)
	if n := tb.FW.Expire(); n != 1 {
		t.Fatalf("%d flows expired after the 70 s timer, want 1", n)
	}
	rec := tb.Log.WaitRecords(t, 1, map[string]string{"event": "ended", "protocol": "icmp"})[0]
	if d, _ := rec["duration"].(float64); d != 10 || rec["time"] != "2026-11-23T09:01:20Z" {
		t.Errorf("duration %v at %v, want 10 s (first to last echo), ended when the timer ran out at 09:01:20", rec["duration"], rec["time"])
	}
}

// TestTCPEstablishedTimer checks the established-connection timer: an idle
// connection survives just under it and is cut just over it.
func TestTCPEstablishedTimer(t *testing.T) {
	tb := newTestbed(t, timerPolicy)
	ln, err := tb.Server.ListenTCP(8000)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	accepted := make(chan net.Conn, 1)
	go func() {
		if c, err := ln.Accept(); err == nil {
			accepted <- c
		}
	}()
	c, err := tb.Client.DialTCP(lab.Context(t, 5*time.Second), netip.AddrPortFrom(serverIP.Addr(), 8000))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	s := fwxlab.Recv(t, accepted)
	defer s.Close()
	// Let the handshake's last ACK pass before the clock moves.
	roundTripTCP(t, c, s)

	tb.Clock.Advance(2*time.Hour + 10*time.Minute - time.Second)
	s.Write([]byte("still here"))
	expectRead(t, c, "still here")

	tb.Clock.Advance(2*time.Hour + 10*time.Minute + time.Second)
	s.Write([]byte("gone"))
	// The data never arrives. The client may learn of the cut: a segment
	// it sends now (the ACK of "still here", delayed) belongs to no
	// connection fwx knows, and gets a RST.
	c.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
	var ne net.Error
	if n, err := c.Read(make([]byte, 16)); !errors.Is(err, syscall.ECONNRESET) && !(errors.As(err, &ne) && ne.Timeout()) {
		t.Fatalf("read %d bytes, %v; want nothing, or a reset: the flow should have expired", n, err)
	}
}

// TestTCPResetTimer checks that after a RST the flow stays for the RST
// timer (RFC 7857), so a late packet of the connection still passes, and
// not longer.
func TestTCPResetTimer(t *testing.T) {
	tb := newTestbed(t, timerPolicy)
	// Nothing listens on server2:9: the SYN is answered with a RST.
	_, err := tb.Client.DialTCP(lab.Context(t, 5*time.Second), netip.AddrPortFrom(server2IP.Addr(), 9))
	if err == nil {
		t.Fatal("connected to a closed port")
	}
	tb.Clock.Advance(6*time.Minute - time.Second)
	if n := tb.FW.Expire(); n != 0 || tb.FW.Flows() != 1 {
		t.Fatalf("flow gone %d before the RST timer", n)
	}
	tb.Clock.Advance(2 * time.Second)
	if n := tb.FW.Expire(); n != 1 {
		t.Fatalf("%d flows expired after the RST timer, want 1", n)
	}
}

func roundTripTCP(t *testing.T, c, s net.Conn) {
	t.Helper()
	c.Write([]byte("ping"))
	buf := make([]byte, 4)
	s.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.ReadFull(s, buf); err != nil {
		t.Fatal(err)
	}
	s.Write([]byte("pong"))
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.ReadFull(c, buf); err != nil {
		t.Fatal(err)
	}
}
