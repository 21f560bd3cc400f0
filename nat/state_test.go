package nat_test

import (
	"bytes"
	"errors"
	"net/netip"
	"testing"
	"time"

	"gvisor.dev/gvisor/pkg/tcpip/header"

	"github.com/fwx-dev/fwx/nat"
	"github.com/fwx-dev/fwx/netstack/lab"
)

// stateDecider sends port 21 to the user-mode path, allows every other
// outbound flow and admits the published server from anyone.
type stateDecider struct{}

func (stateDecider) Outbound(_ nat.Proto, _, dst netip.AddrPort) nat.Decision {
	return nat.Decision{Allow: dst.Port() != 23, Rule: "out", UserMode: dst.Port() == 21}
}
func (stateDecider) Inbound(nat.Proto, netip.AddrPort, netip.AddrPort) nat.Decision {
	return nat.Decision{Allow: true, Rule: "www"}
}

var (
	published = netip.AddrPortFrom(ext, 8080)
	webServer = netip.MustParseAddrPort("10.0.0.5:80")
)

// stateTable returns a table as fwx makes it at start: the policy's
// publication in place.
func stateTable(t *testing.T) (*nat.Table, *recorder) {
	tab, rec := newTable(t, nat.Config{Decider: stateDecider{}})
	if err := tab.Publish(nat.TCP, published, webServer); err != nil {
		t.Fatal(err)
	}
	return tab, rec
}

// TestSaveRestore: the flows of a table saved at a clean stop go on in the
// next run's table: same external ports, timers, TCP state, counters and
// start, no new records; what could not be saved gets a RST.
func TestSaveRestore(t *testing.T) {
	old, oldRec := stateTable(t)
	// An established connection with data, an answered UDP flow, a closed
	// connection in TIME_WAIT, a connection to the published server, a
	// user-mode connection, and a bound port waiting for its peer.
	est := play(t, old, with(open3, seg{true, ack_, 1001, 5001}))
	_, udpOut := out(old, lab.UDPPacket(client2, server, []byte("q")), t0)
	in(old, lab.UDPPacket(server, udpOut.Src, []byte("a")), t0)
	closedSrc := netip.MustParseAddrPort("10.0.0.2:41000")
	_, c := out(old, lab.TCPPacket(closedSrc, server, syn_, 1000, 0, nil), t0)
	in(old, lab.TCPPacket(server, c.Src, synAck, 5000, 1001, nil), t0)
	out(old, lab.TCPPacket(closedSrc, server, finAck, 1001, 5001, nil), t0)
	in(old, lab.TCPPacket(server, c.Src, finAck, 5001, 1002, nil), t0)
	out(old, lab.TCPPacket(closedSrc, server, ack_, 1002, 5002, nil), t0)
	in(old, lab.TCPPacket(server2, published, syn_, 7000, 0, nil), t0)
	userSrc := netip.MustParseAddrPort("10.0.0.2:42000")
	out(old, lab.TCPPacket(userSrc, netip.AddrPortFrom(server.Addr(), 21), syn_, 1, 0, nil), t0)
	bound := netip.AddrPortFrom(ext, 30000)
	if err := old.ReservePort(nat.TCP, bound); err != nil {
		t.Fatal(err)
	}
	if err := old.ExpectInbound(&nat.Expectation{Proto: nat.TCP, External: bound, Inside: client, Rule: "ftp-data"}); err != nil {
		t.Fatal(err)
	}
	estOut, estIn, _, _ := est.Counters()
	endedBefore := len(oldRec.ended) // the closed connection's

	var buf bytes.Buffer
	stop := t0.Add(time.Second)
	n, handover, err := old.Save(&buf, stop)
	if err != nil || n != 4 {
		t.Fatalf("saved %d flows, %v; want 4 (not the user-mode one)", n, err)
	}
	handover()
	old.Close(stop)
	if got := oldRec.ended[endedBefore:]; len(got) != 1 || !got[0].UserMode() {
		t.Fatalf("ended at stop: %v; want only the user-mode flow", got)
	}

	tab, rec := stateTable(t)
	start := stop.Add(2 * time.Second)
	restored, skipped, err := tab.Restore(bytes.NewReader(buf.Bytes()), start)
	if err != nil || restored != 4 || skipped != 0 {
		t.Fatalf("restored %d, skipped %d, %v", restored, skipped, err)
	}
	if len(rec.started) != 0 || len(rec.ended) != 0 {
		t.Fatalf("restoring reported %d starts and %d ends; want none", len(rec.started), len(rec.ended))
	}
	// The established connection goes on, from the same port, with its
	// history.
	v, p := out(tab, lab.TCPPacket(client, server, ack_|header.TCPFlagPsh, 1001, 5001, []byte("more")), start)
	if v != nat.Forward || p.Src != est.External() {
		t.Fatalf("established connection after restore: %v from %v, want forward from %v", v, p.Src, est.External())
	}
	f := tab.LookupOutbound(nat.TCP, client, server, start)
	if f.TCPState() != nat.TCPEstablished || !f.Start().Equal(est.Start()) {
		t.Errorf("restored flow %v started %v; want established, started %v", f.TCPState(), f.Start(), est.Start())
	}
	if o, i, _, _ := f.Counters(); o <= estOut || i != estIn {
		t.Errorf("counters %d/%d after restore, want more than %d out and %d in", o, i, estOut, estIn)
	}
	// The UDP peer still gets in; the published connection goes on.
	if v, _ := in(tab, lab.UDPPacket(server, udpOut.Src, nil), start); v != nat.Forward {
		t.Errorf("UDP reply after restore: %v", v)
	}
	if v, _ := out(tab, lab.TCPPacket(webServer, server2, synAck, 9000, 7001, nil), start); v != nat.Forward {
		t.Errorf("published server's answer after restore: %v", v)
	}
	// The user-mode connection is gone: its next segment gets a RST.
	if v, _ := out(tab, lab.TCPPacket(userSrc, netip.AddrPortFrom(server.Addr(), 21), ack_, 2, 1, nil), start); v != nat.Reset {
		t.Errorf("user-mode connection's segment after restore: %v, want reset", v)
	}
	// So is the pinhole: its peer is refused with a RST, not silence.
	if v, _ := in(tab, lab.TCPPacket(server, bound, syn_, 1, 0, nil), start); v != nat.Reset {
		t.Errorf("connection to the lost pinhole: %v, want reset", v)
	}
	if st := tab.Stats(); st.Drops[nat.DropPinholeGone] != 1 {
		t.Errorf("pinhole-gone drops %d, want 1", st.Drops[nat.DropPinholeGone])
	}
	// The closed connection, reported by the old run, is not reported
	// again when its TIME_WAIT ends; the others are, once.
	tab.Expire(start.Add(3 * time.Hour))
	if len(rec.ended) != 3 {
		t.Errorf("%d flows reported ended after restore, want 3", len(rec.ended))
	}
}

func TestRestoreRefusesOthers(t *testing.T) {
	old, _ := stateTable(t)
	out(old, lab.UDPPacket(client, server, nil), t0)
	var buf bytes.Buffer
	if _, _, err := old.Save(&buf, t0); err != nil {
		t.Fatal(err)
	}
	other, _ := nat.New(nat.Config{External: []netip.Addr{netip.MustParseAddr("192.0.2.7")}})
	for name, r := range map[string][]byte{
		"another address": buf.Bytes(),
		"garbage":         []byte("not a saved table"),
		"truncated":       buf.Bytes()[:buf.Len()/2],
	} {
		tab := other
		if name != "another address" {
			tab, _ = stateTable(t)
		}
		if _, _, err := tab.Restore(bytes.NewReader(r), t0); !errors.Is(err, nat.ErrState) {
			t.Errorf("%s: %v, want ErrState", name, err)
		}
	}
	// A flow whose timer ran out while fwx was down is left out.
	tab, _ := stateTable(t)
	restored, skipped, err := tab.Restore(bytes.NewReader(buf.Bytes()), t0.Add(time.Hour))
	if err != nil || restored != 0 || skipped != 1 {
		t.Errorf("restored %d, skipped %d, %v; want the expired flow skipped", restored, skipped, err)
	}
}

// TestPickup: after a start without a saved table, a mid-stream segment
// from the inside re-creates its connection as established, on its inside
// port, when the policy allows it on the fast path and the port is free;
// otherwise, or once the window has closed, it gets a RST.
func TestPickup(t *testing.T) {
	tab, rec := stateTable(t)
	tab.SetPickup(t0.Add(time.Hour))
	seg := func(src, dst netip.AddrPort, at time.Time) (nat.Verdict, nat.Packet) {
		return out(tab, lab.TCPPacket(src, dst, ack_, 1001, 5001, []byte("x")), at)
	}
	v, p := seg(client, server, t0)
	if v != nat.Forward || p.Src != netip.AddrPortFrom(ext, client.Port()) {
		t.Fatalf("mid-stream segment: %v from %v, want forward from the inside port", v, p.Src)
	}
	f := tab.LookupOutbound(nat.TCP, client, server, t0)
	if f == nil || f.TCPState() != nat.TCPEstablished || len(rec.started) != 1 || tab.Stats().PickedUp != 1 {
		t.Fatalf("picked-up flow %v, %d started", f, len(rec.started))
	}
	if v, _ := in(tab, lab.TCPPacket(server, p.Src, ack_, 5001, 1002, nil), t0); v != nat.Forward {
		t.Errorf("server's answer: %v", v)
	}
	// The port is another client's now: that connection cannot go on.
	if v, _ := seg(netip.AddrPortFrom(client2.Addr(), client.Port()), server, t0); v != nat.Reset {
		t.Errorf("segment whose port is taken: %v, want reset", v)
	}
	// Refused by the policy, or on the user-mode path.
	if v, _ := seg(from(client, 43000), netip.AddrPortFrom(server.Addr(), 23), t0); v != nat.Reset {
		t.Errorf("segment the policy refuses: %v, want reset", v)
	}
	if v, _ := seg(from(client, 43001), netip.AddrPortFrom(server.Addr(), 21), t0); v != nat.Reset {
		t.Errorf("segment of a user-mode connection: %v, want reset", v)
	}
	if v, _ := seg(from(client, 43002), server, t0.Add(2*time.Hour)); v != nat.Reset {
		t.Errorf("after the window: %v, want reset", v)
	}
}

// FuzzRestore feeds arbitrary bytes to Restore: it must refuse or restore,
// never panic, and what it restores the table holds.
func FuzzRestore(f *testing.F) {
	tab, _ := newTable(f, nat.Config{})
	out(tab, lab.UDPPacket(client, server, nil), t0)
	play(f, tab, open3)
	var buf bytes.Buffer
	tab.Save(&buf, t0)
	f.Add(buf.Bytes())
	f.Add(buf.Bytes()[:buf.Len()-3])
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		tab, _ := newTable(t, nat.Config{})
		restored, _, err := tab.Restore(bytes.NewReader(b), t0)
		if err == nil && tab.Len() != restored {
			t.Fatalf("restored %d flows, the table holds %d", restored, tab.Len())
		}
	})
}

// TestSaveRestoreIPv6: an IPv6 flow is saved and restored as an IPv4 one
// is, on its external endpoint.
func TestSaveRestoreIPv6(t *testing.T) {
	old, _ := newTable(t, nat.Config{})
	_, p := out(old, lab.UDPPacket(client6, server6, []byte("q")), t0)
	var buf bytes.Buffer
	if n, _, err := old.Save(&buf, t0); err != nil || n != 1 {
		t.Fatalf("saved %d, %v", n, err)
	}
	tab, _ := newTable(t, nat.Config{})
	if restored, _, err := tab.Restore(&buf, t0.Add(time.Second)); err != nil || restored != 1 {
		t.Fatalf("restored %d, %v", restored, err)
	}
	v, r := in(tab, lab.UDPPacket(server6, p.Src, []byte("a")), t0.Add(time.Second))
	if v != nat.Forward || r.Dst != client6 {
		t.Fatalf("reply after restore: %v to %v, want forward to %v", v, r.Dst, client6)
	}
}
