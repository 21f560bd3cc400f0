package fwx_test

import (
	"bytes"
	"net/netip"
	"testing"
	"time"

	"github.com/fwx-dev/fwx/netstack/lab"
	"github.com/fwx-dev/fwx/netstack/lab/fwxlab"
)

// TestFragmentedUDP sends a UDP datagram of 8 KiB each way through fwx:
// the lab's stacks fragment it to their 1500-byte MTU, fwx reassembles it,
// translates it whole and cuts it again, and the far stack reassembles
// what arrives.
func TestFragmentedUDP(t *testing.T) {
	tb := newTestbed(t, "")
	peers := fwxlab.EchoUDP(t, tb.Server, 7000)
	c, err := tb.Client.DialUDP(netip.AddrPortFrom(clientIP.Addr(), 40000), netip.AddrPortFrom(serverIP.Addr(), 7000))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	msg := make([]byte, 8192)
	for i := range msg {
		msg[i] = byte(i*13 + i>>8)
	}
	toServer, toClient := tb.Outside.Stats().ToHosts, tb.Inside.Stats().ToHosts
	c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := c.Write(msg); err != nil {
		t.Fatal(err)
	}
	got := make([]byte, 65536)
	n, err := c.Read(got)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got[:n], msg) {
		t.Fatalf("echo of %d bytes differs from the %d sent", n, len(msg))
	}
	if from := fwxlab.Recv(t, peers); from != netip.AddrPortFrom(fwOut.Addr(), 40000) {
		t.Errorf("server saw the datagram from %v, want fwx's outside address", from)
	}
	// 8 KiB in 1500-byte packets is six fragments each way.
	if d := fwxlab.CountAtLeast(func() uint64 { return tb.Outside.Stats().ToHosts - toServer }, 6); d < 6 {
		t.Errorf("the server received %d packets, want at least 6 fragments", d)
	}
	if d := fwxlab.CountAtLeast(func() uint64 { return tb.Inside.Stats().ToHosts - toClient }, 6); d < 6 {
		t.Errorf("the client received %d packets, want at least 6 fragments", d)
	}
	if s := tb.FW.Stats(); s.Reassembly != 0 {
		t.Errorf("%d bytes held in reassembly after the datagrams crossed", s.Reassembly)
	}
}

// TestFragmentedPing sends pings of 4000 bytes, fragmented, to the server
// through fwx and to fwx itself: both answers come back whole.
func TestFragmentedPing(t *testing.T) {
	tb := newTestbed(t, "")
	payload := bytes.Repeat([]byte("fragmented ping "), 250)
	for _, dst := range []netip.Addr{serverIP.Addr(), fwIn.Addr()} {
		from, err := tb.Client.Ping(lab.Context(t, 5*time.Second), dst, 0, 1, payload)
		if err != nil {
			t.Fatalf("ping %v: %v", dst, err)
		}
		if from != dst {
			t.Errorf("reply from %v, want %v", from, dst)
		}
	}
}
