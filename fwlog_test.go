package fwx_test

import (
	"net/netip"
	"strings"
	"testing"
	"time"

	"gvisor.dev/gvisor/pkg/tcpip/header"

	"github.com/fwx-dev/fwx/nat"
	"github.com/fwx-dev/fwx/netstack/lab"
)

// barrier waits until fwx has handled every packet injected into seg
// before it: the forward loop takes a side's packets in order, so when its
// answer to a ping from the unowned address from comes back, the packets
// before the ping have been decided.
func barrier(t *testing.T, seg *lab.Segment, from, fwAddr netip.Addr) {
	t.Helper()
	const id = 0xbeef
	if err := seg.Inject(lab.ICMPEcho(from, fwAddr, header.ICMPv4Echo, id, 1)); err != nil {
		t.Fatal(err)
	}
	timeout := time.After(10 * time.Second)
	for {
		select {
		case pkt := <-seg.Captured():
			if p := nat.Parse(pkt); p.Kind == nat.Query && p.ICMPType == uint8(header.ICMPv4EchoReply) && p.Dst.Addr() == from {
				return
			}
		case <-timeout:
			t.Fatal("fwx did not answer the barrier ping")
		}
	}
}

// TestDeniedRetriesOneRecord: a denied flow makes one record however often
// it is retried, written once the retries stop, with the count of attempts.
func TestDeniedRetriesOneRecord(t *testing.T) {
	tb := newTestbed(t, strings.Replace(denyPolicy, "%s", "drop", 1))
	syn := lab.TCPPacket(netip.AddrPortFrom(rawClient, 5000), netip.AddrPortFrom(serverIP.Addr(), 81), header.TCPFlagSyn, 1, 0, nil)
	udp := lab.UDPPacket(netip.AddrPortFrom(rawClient, 5001), netip.AddrPortFrom(serverIP.Addr(), 5353), []byte("q"))
	for i := range 5 {
		tb.Inside.Inject(syn)
		if i < 3 {
			tb.Inside.Inject(udp)
		}
		barrier(t, tb.Inside, rawClient, fwIn.Addr())
		tb.Clock.Advance(10 * time.Second) // retries 10 s apart: one flow
		tb.FW.Expire()
	}
	if recs := tb.Log.Records(t, map[string]string{"event": "denied"}); len(recs) != 1 {
		// Only the UDP flow, quiet since its third attempt 20 s ago,
		// could be due; the SYN was retried 10 s ago.
		t.Fatalf("%d denied records while the SYN is still being retried: %v", len(recs), recs)
	}
	tb.Clock.Advance(30 * time.Second)
	tb.FW.Expire()
	for _, c := range []struct {
		match    map[string]string
		attempts float64
	}{
		{map[string]string{"event": "denied", "protocol": "tcp", "client": "10.0.0.9:5000", "destination": "198.51.100.2:81", "rule": "no-81"}, 5},
		{map[string]string{"event": "denied", "protocol": "udp", "client": "10.0.0.9:5001", "destination": "198.51.100.2:5353", "rule": "no-81"}, 3},
	} {
		recs := tb.Log.Records(t, c.match)
		if len(recs) != 1 {
			t.Errorf("%d records match %v, want 1", len(recs), c.match)
			continue
		}
		if recs[0]["attempts"] != c.attempts {
			t.Errorf("attempts %v, want %v: %v", recs[0]["attempts"], c.attempts, recs[0])
		}
		if first, last := recs[0]["time"], recs[0]["last"]; first != labStart || last == first {
			t.Errorf("time %v, last %v: want the first attempt's time and a later last attempt", first, last)
		}
	}
}

var labStart = "2026-11-23T09:00:00Z"

// TestUnsolicitedFlood: unsolicited packets from many sources make a
// bounded number of records: beyond the log's table of pending denials,
// attempts are counted in one summary record.
func TestUnsolicitedFlood(t *testing.T) {
	tb := newTestbed(t, "")
	const n = 5000
	for i := range n {
		src := netip.AddrPortFrom(netip.AddrFrom4([4]byte{203, 0, byte(i >> 8), byte(i)}), 40000)
		if err := tb.Outside.Inject(lab.TCPPacket(src, netip.AddrPortFrom(fwOut.Addr(), 22), header.TCPFlagSyn, 1, 0, nil)); err != nil {
			t.Fatal(err)
		}
	}
	barrier(t, tb.Outside, netip.MustParseAddr("198.51.100.9"), fwOut.Addr())
	tb.Clock.Advance(31 * time.Second)
	tb.FW.Expire()
	flows := tb.Log.Records(t, map[string]string{"event": "denied", "direction": "inbound"})
	summary := tb.Log.Records(t, map[string]string{"event": "denied-summary", "direction": "inbound", "rule": "default-deny"})
	if len(flows) != 4096 || len(summary) != 1 || summary[0]["attempts"] != float64(n-4096) {
		t.Errorf("%d denied records and summaries %v; want 4096 records and one summary of %d attempts", len(flows), summary, n-4096)
	}
}
