package session_test

import (
	"errors"
	"net/netip"
	"testing"
	"time"

	"github.com/fwx-dev/fwx/netstack/lab"
	"github.com/fwx-dev/fwx/netstack/lab/fwxlab"
	"github.com/fwx-dev/fwx/session"
)

// A grant made Unarmed is reserved but lets nothing through until the
// filter arms it; a connection that arrives before is not refused but
// waits (its SYN is dropped and retransmitted) and goes through once the
// grant is armed.

func TestBindUnarmed(t *testing.T) {
	for _, tt := range []struct {
		name    string
		verdict func(*session.Connection) error
		want    bool
	}{
		{"armed", (*session.Connection).Arm, true},
		{"killed", func(c *session.Connection) error { c.Kill(); return nil }, false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			tb := newTestbed(t, sdkPolicy)
			fwxlab.EchoTCP(t, tb.Client, 5001)
			res := bind(t, tb.Session(t), session.BindRequest{ClientAddrs: []netip.AddrPort{clientAt(5001)},
				Flags: session.Timeout | session.Unarmed})
			if tb.serverConnects(t, "server", res.Proxy, false) {
				t.Fatal("the server connected through an unarmed bind")
			}
			// A connection started before the verdict waits for it.
			early := make(chan error, 1)
			go func() {
				c, err := tb.Server.DialTCP(lab.Context(t, 5*time.Second), res.Proxy)
				if err == nil {
					c.Close()
				}
				early <- err
			}()
			time.Sleep(200 * time.Millisecond)
			if err := tt.verdict(res.Conns[0]); err != nil {
				t.Fatal(err)
			}
			if err := <-early; (err == nil) != tt.want {
				t.Errorf("connection started before the verdict: %v, want connected=%v", err, tt.want)
			}
			if n := res.Conns[0].Used(); n != map[bool]int{true: 1, false: 0}[tt.want] {
				t.Errorf("Used() = %d", n)
			}
		})
	}
}

func TestFutureConnectUnarmed(t *testing.T) {
	tb := newTestbed(t, sdkPolicy)
	dst := netip.AddrPortFrom(serverIP.Addr(), 7777)
	fwxlab.EchoTCP(t, tb.Server, 7777)
	a, err := tb.Session(t).AllowFutureConnect(session.FutureConnect{Addr: dst, Transport: session.TCP,
		Protocol: "ftp", Flags: session.Timeout | session.Unarmed})
	if err != nil {
		t.Fatal(err)
	}
	early := make(chan error, 1)
	go func() {
		c, err := tb.Client.DialTCP(lab.Context(t, 5*time.Second), dst)
		if err == nil {
			c.Close()
		}
		early <- err
	}()
	time.Sleep(200 * time.Millisecond)
	if a.Used() != 0 {
		t.Fatal("an unarmed permission was used")
	}
	if err := a.Arm(); err != nil {
		t.Fatal(err)
	}
	if err := <-early; err != nil {
		t.Fatalf("connection started before arming: %v", err)
	}
	if err := a.Arm(); !errors.Is(err, session.ErrTerminating) {
		t.Errorf("arming a used permission: %v, want ErrTerminating", err)
	}
}

// TestGrantOnLapse: OnLapse reports, with its deadline, a Timeout grant
// that lapsed unused, once, when fwx sweeps; not one that was used.
func TestGrantOnLapse(t *testing.T) {
	tb := newTestbed(t, sdkPolicy)
	s := tb.Session(t)
	fwxlab.EchoTCP(t, tb.Client, 5001)
	lapsed := make(chan time.Time, 4)
	onLapse := func(at time.Time) { lapsed <- at }
	unused := bind(t, s, session.BindRequest{ClientAddrs: []netip.AddrPort{clientAt(5001)}, Flags: session.Timeout, OnLapse: onLapse})
	used := bind(t, s, session.BindRequest{ClientAddrs: []netip.AddrPort{clientAt(5001)}, Flags: session.Timeout, OnLapse: onLapse})
	if !tb.serverConnects(t, "server", used.Proxy, true) {
		t.Fatal("no connection through the bind")
	}
	deadline := tb.Clock.Now().Add(time.Minute)
	tb.Clock.Advance(61 * time.Second)
	tb.FW.Expire()
	tb.FW.Expire()
	select {
	case at := <-lapsed:
		if !at.Equal(deadline) {
			t.Errorf("lapsed at %v, want the deadline %v", at, deadline)
		}
	default:
		t.Fatal("OnLapse not called")
	}
	if len(lapsed) != 0 {
		t.Errorf("OnLapse called %d more times", len(lapsed))
	}
	if unused.Conns[0].Live() {
		t.Error("the lapsed bind is still live")
	}
}

// TestUsedBindNotCounted: a Timeout bind that was used holds no pinhole
// any more: it does not count against the session's cap while its
// connection goes on.
func TestUsedBindNotCounted(t *testing.T) {
	tb := newTestbed(t, sdkPolicy)
	fwxlab.EchoTCP(t, tb.Client, 5001)
	s := tb.Session(t)
	res := bind(t, s, session.BindRequest{ClientAddrs: []netip.AddrPort{clientAt(5001)}, Flags: session.Timeout})
	if n := s.Pinholes(); n != 1 {
		t.Fatalf("%d pinholes after the bind, want 1", n)
	}
	c, err := tb.Server.DialTCP(lab.Context(t, 5*time.Second), res.Proxy)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if n := s.Pinholes(); n != 0 {
		t.Errorf("%d pinholes while the connection through the used bind is open, want 0", n)
	}
}
