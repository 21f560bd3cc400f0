package fwx_test

import (
	"io"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/fwx-dev/fwx/netstack/lab"
	"github.com/fwx-dev/fwx/netstack/lab/fwxlab"
)

// TestHostModeIPv6: host mode carries IPv6 beside IPv4: a dual-stack
// client reaches IPv6 servers on the host's network through the host's
// IPv6 address, by TCP, UDP and ping.
func TestHostModeIPv6(t *testing.T) {
	if !fwxlab.InOwnNetns(t) {
		return
	}
	tb := &testbed{fwxlab.New(t, fwxlab.Options{IPv6: true, Host: true})}

	ln, err := net.ListenTCP("tcp6", net.TCPAddrFromAddrPort(netip.AddrPortFrom(fwxlab.HostServer6, 0)))
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	peers := make(chan netip.AddrPort, 1)
	go func() {
		c, err := ln.AcceptTCP()
		if err != nil {
			return
		}
		peers <- c.RemoteAddr().(*net.TCPAddr).AddrPort()
		defer c.Close()
		io.Copy(c, c)
	}()
	c, err := tb.Client.DialTCPFrom(lab.Context(t, 5*time.Second), netip.AddrPortFrom(client6, 40200), ln.Addr().(*net.TCPAddr).AddrPort())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	fwxlab.RoundTrip(t, c, "tcp6 through the host")
	if got := fwxlab.Recv(t, peers); got != netip.AddrPortFrom(fwxlab.HostAddr6, 40200) {
		t.Errorf("server saw %v, want %v", got, netip.AddrPortFrom(fwxlab.HostAddr6, 40200))
	}

	pc, err := net.ListenUDP("udp6", net.UDPAddrFromAddrPort(netip.AddrPortFrom(fwxlab.HostServer6, 0)))
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	go func() {
		buf := make([]byte, 65536)
		for {
			n, from, err := pc.ReadFromUDPAddrPort(buf)
			if err != nil {
				return
			}
			pc.WriteToUDPAddrPort(buf[:n], from)
		}
	}()
	u, err := tb.Client.DialUDP(netip.AddrPortFrom(client6, 40201), pc.LocalAddr().(*net.UDPAddr).AddrPort())
	if err != nil {
		t.Fatal(err)
	}
	defer u.Close()
	fwxlab.RoundTrip(t, u, "udp6 through the host")

	if from, err := tb.Client.Ping(lab.Context(t, 5*time.Second), fwxlab.HostServer6, 0, 1, []byte("ping6")); err != nil || from != fwxlab.HostServer6 {
		t.Errorf("ping %v: reply from %v, %v", fwxlab.HostServer6, from, err)
	}
}
