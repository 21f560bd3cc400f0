package fwx_test

import (
	"net/netip"
	"testing"
	"time"

	"gvisor.dev/gvisor/pkg/tcpip/header"

	"github.com/fwx-dev/fwx/nat"
	"github.com/fwx-dev/fwx/netstack/lab"
	"github.com/fwx-dev/fwx/netstack/lab/fwxlab"
)

// TestIngressHygiene sends, through the forward loop, packets no honest
// host sends: none leaves fwx, each is counted under its reason, and a
// well-formed packet sent after them does leave.
func TestIngressHygiene(t *testing.T) {
	tb := newTestbed(t, `
rules:
  - {name: out, action: allow, from: [internal], to: [any], protocols: [any]}
publish:
  - {name: www, protocol: any-tcp, listen: ":8080", server: "10.0.0.2:80"}
options:
  special-destinations: [239.255.255.250]
`)
	nowhere := netip.MustParseAddrPort("198.51.100.77:9") // no outside host has it: what fwx sends lands in the capture
	from := func(a string) netip.AddrPort { return netip.MustParseAddrPort(a) }
	inside := []struct {
		pkt    []byte
		reason nat.DropReason
	}{
		{lab.UDPPacket(from("192.168.9.9:5000"), nowhere, nil), nat.DropSpoofedSource},
		{lab.UDPPacket(from("0.0.0.0:68"), nowhere, nil), nat.DropMartianSource},
		{lab.UDPPacket(from("127.0.0.1:5000"), nowhere, nil), nat.DropMartianSource},
		{lab.UDPPacket(from("10.0.0.2:5000"), from("224.0.0.251:5353"), nil), nat.DropMartianDestination},
		{lab.UDPPacket(from("10.0.0.2:5000"), from("255.255.255.255:67"), nil), nat.DropMartianDestination},
		{lab.UDPPacket(from("10.0.0.2:5000"), from("127.0.0.1:53"), nil), nat.DropMartianDestination},
		{lab.TCPPacket(from("10.0.0.2:5001"), nowhere, header.TCPFlagSyn|header.TCPFlagFin, 1, 0, nil), nat.DropBadTCPFlags},
		{lab.TCPPacket(from("10.0.0.2:5002"), nowhere, 0, 1, 0, nil), nat.DropBadTCPFlags},
	}
	for _, c := range inside {
		if err := tb.Inside.Inject(c.pkt); err != nil {
			t.Fatal(err)
		}
	}
	outside := []struct {
		pkt    []byte
		reason nat.DropReason
	}{
		{lab.TCPPacket(netip.AddrPortFrom(fwOut.Addr(), 80), netip.AddrPortFrom(fwOut.Addr(), 8080), header.TCPFlagSyn, 1, 0, nil), nat.DropOwnAddress},
		{lab.TCPPacket(from("10.0.0.3:80"), netip.AddrPortFrom(fwOut.Addr(), 8080), header.TCPFlagSyn, 1, 0, nil), nat.DropSpoofedSource},
	}
	for _, c := range outside {
		if err := tb.Outside.Inject(c.pkt); err != nil {
			t.Fatal(err)
		}
	}
	// A multicast destination the options allow, then a plain packet:
	// both leave, in order, after everything above was dropped.
	tb.Inside.Inject(lab.UDPPacket(from("10.0.0.2:5003"), from("239.255.255.250:1900"), []byte("ssdp")))
	tb.Inside.Inject(lab.UDPPacket(from("10.0.0.2:5004"), nowhere, []byte("ok")))
	for _, want := range []netip.Addr{netip.MustParseAddr("239.255.255.250"), nowhere.Addr()} {
		p := nat.Parse(fwxlab.Recv(t, tb.Outside.Captured()))
		if p.Dst.Addr() != want || p.Src.Addr() != fwOut.Addr() {
			t.Fatalf("left fwx: %v -> %v, want the translated packet to %v", p.Src, p.Dst, want)
		}
	}
	select {
	case pkt := <-tb.Outside.Captured():
		t.Fatalf("also left fwx: %s", lab.PacketString(pkt))
	case pkt := <-tb.Inside.Captured():
		t.Fatalf("reached the inside: %s", lab.PacketString(pkt))
	case <-time.After(50 * time.Millisecond):
	}
	want := map[nat.DropReason]uint64{}
	for _, c := range inside {
		want[c.reason]++
	}
	for _, c := range outside {
		want[c.reason]++
	}
	// The outside's packets cross another reader than the inside's:
	// give it the time to count them.
	counted := func() bool {
		drops := tb.FW.Stats().Drops
		for r, n := range want {
			if drops[r] != n {
				return false
			}
		}
		return true
	}
	for deadline := time.Now().Add(5 * time.Second); !counted() && time.Now().Before(deadline); {
		time.Sleep(10 * time.Millisecond)
	}
	if drops := tb.FW.Stats().Drops; !counted() {
		for r, n := range want {
			t.Errorf("drops[%v] = %d, want %d", r, drops[r], n)
		}
	}
}
