package lab

import (
	"net/netip"
	"testing"
	"time"

	"gvisor.dev/gvisor/pkg/buffer"
	"gvisor.dev/gvisor/pkg/tcpip/stack"
)

// TestCaptureDrops checks that a full capture queue drops and counts
// rather than blocking the writer.
func TestCaptureDrops(t *testing.T) {
	CheckGoroutines(t)
	n := New(Options{})
	defer n.Close()
	seg := n.NewSegment("ext")
	pkt := UDPPacket(netip.MustParseAddrPort("10.0.0.1:1"), netip.MustParseAddrPort("10.9.9.9:2"), nil)
	const extra = 5
	for range captureLen + extra {
		if _, err := seg.Device().Write([][]byte{pkt}, 0); err != nil {
			t.Fatal(err)
		}
	}
	st := seg.Stats()
	if st.Captured != captureLen+extra || st.CaptureDrops != extra || len(seg.Captured()) != captureLen {
		t.Errorf("stats %+v, %d queued; want %d captured, %d dropped, %d queued",
			st, len(seg.Captured()), captureLen+extra, extra, captureLen)
	}
}

// TestLinkSendDrops checks that a host's full send queue drops and counts
// rather than blocking gVisor.
func TestLinkSendDrops(t *testing.T) {
	var logged int
	l := newLink(1500, 2, func([]byte) { logged++ })
	var pkts stack.PacketBufferList
	for range 3 {
		pkts.PushBack(stack.NewPacketBuffer(stack.PacketBufferOptions{
			Payload: buffer.MakeWithData(UDPPacket(netip.MustParseAddrPort("10.0.0.1:1"), netip.MustParseAddrPort("10.0.0.2:2"), nil)),
		}))
	}
	defer pkts.DecRef()
	n, err := l.WritePackets(pkts)
	if n != 2 || err != nil {
		t.Errorf("WritePackets = %d, %v; want 2, nil", n, err)
	}
	if l.drops.Load() != 1 || l.sent.Load() != 2 || logged != 1 {
		t.Errorf("drops %d, sent %d, logged %d; want 1, 2, 1", l.drops.Load(), l.sent.Load(), logged)
	}
	if got := <-l.out; VerifyChecksums(*got) != nil {
		t.Errorf("queued packet %s", PacketString(*got))
	}
	l.Close()
	if _, err := l.WritePackets(pkts); err == nil {
		t.Error("WritePackets after Close succeeded")
	}
}

// TestDeviceClosedFirst checks the order a real gateway shuts down in: it
// closes its devices, then the test closes the network. Host packets sent
// in between are counted, and Close does not hang.
func TestDeviceClosedFirst(t *testing.T) {
	CheckGoroutines(t)
	n := New(Options{})
	defer n.Close()
	seg := n.NewSegment("int")
	h, err := seg.AddHost("client", clientAddr, clientGW)
	if err != nil {
		t.Fatal(err)
	}
	seg.Device().Close()
	c, err := h.DialUDP(netip.AddrPort{}, netip.MustParseAddrPort("10.0.2.2:53"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	for range 3 {
		if _, err := c.Write([]byte("x")); err != nil {
			t.Fatal(err)
		}
	}
	// The pump runs on its own goroutine.
	for i := 0; seg.Stats().ClosedDrops < 3; i++ {
		if i == 10000 {
			t.Fatalf("ClosedDrops = %d after 10s, want 3", seg.Stats().ClosedDrops)
		}
		time.Sleep(time.Millisecond)
	}
	if st := seg.Stats(); st.FromHosts != 0 || h.Stats().SendDrops != 0 {
		t.Errorf("segment %+v, host %+v; want only ClosedDrops", st, h.Stats())
	}
}
