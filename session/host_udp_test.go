package session_test

import (
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/fwx-dev/fwx/netstack/lab/fwxlab"
	"github.com/fwx-dev/fwx/session"
)

// TestHostModeDatagrams: in host mode the user-mode path for UDP carries a
// hooked flow's datagrams through its datagram filter and out of the host
// socket of the flow's port, and a permission on the client's mapping
// (RetroactiveAllowBind, TFTP's case) lets a second port of the server in
// under address-and-port-dependent filtering.
func TestHostModeDatagrams(t *testing.T) {
	if !fwxlab.InOwnNetns(t) {
		return
	}
	rw := newRewriter()
	probe := newUDPProbe(func(ev *session.Event) error {
		if ev.Type == session.EventUDPDestination {
			return ev.Conn.AttachDatagramFilter(rw, session.PriorityMiddle)
		}
		return nil
	})
	tb := newHostLab(t, `
protocols:
  - {name: dgram, transport: udp, ports: [9000], filter: probe}
rules:
  - {name: dgram-out, action: allow, from: [internal], to: [external], protocols: [dgram]}
options: {filtering: address-and-port-dependent}
`, withFilter("probe", probe))
	srv, err := net.ListenUDP("udp4", net.UDPAddrFromAddrPort(netip.AddrPortFrom(fwxlab.HostServer, 9000)))
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	second, err := net.ListenUDP("udp4", net.UDPAddrFromAddrPort(netip.AddrPortFrom(fwxlab.HostServer, 9001)))
	if err != nil {
		t.Fatal(err)
	}
	defer second.Close()
	c := openUDP(t, tb.Client, 40300)
	c.send(netip.AddrPortFrom(fwxlab.HostServer, 9000), "hello")
	srv.SetReadDeadline(time.Now().Add(5 * time.Second))
	buf := make([]byte, 100)
	n, from, err := srv.ReadFromUDPAddrPort(buf)
	if err != nil || string(buf[:n]) != "HELLO" {
		t.Fatalf("server read %q from %v (%v), want the filtered HELLO", buf[:n], from, err)
	}
	if from.Addr() != fwxlab.HostAddr {
		t.Errorf("server saw %v, want the host's address", from)
	}
	ev := probe.nextEvent(t, session.EventUDPDestination)
	if ev.Conn.External() != from {
		t.Errorf("connection's external endpoint %v, the server saw %v", ev.Conn.External(), from)
	}
	srv.WriteToUDPAddrPort([]byte("reply"), from)
	if !c.gets("reply", netip.AddrPortFrom(fwxlab.HostServer, 9000)) {
		t.Fatal("the server's reply did not come back")
	}
	second.WriteToUDPAddrPort([]byte("before"), from)
	if !c.gets(none, netip.AddrPort{}) {
		t.Fatal("the filtering let the server's second port in")
	}
	if _, err := tb.Session(t).RetroactiveAllowBind(session.RetroactiveBind{External: from, Transport: session.UDP,
		Protocol: "dgram", Flags: session.Bidirectional, IPFilter: session.NewIPFilter(fwxlab.HostServer)}); err != nil {
		t.Fatal(err)
	}
	second.WriteToUDPAddrPort([]byte("after"), from)
	if !c.gets("after", netip.AddrPortFrom(fwxlab.HostServer, 9001)) {
		t.Error("the permitted port did not get in")
	}
}
