package fwx_test

import (
	"net/netip"
	"os"
	"path/filepath"
	"testing"

	"gvisor.dev/gvisor/pkg/tcpip/header"

	"github.com/fwx-dev/fwx"
	"github.com/fwx-dev/fwx/nat"
	"github.com/fwx-dev/fwx/netstack/lab"
	"github.com/fwx-dev/fwx/netstack/lab/fwxlab"
)

func withState(path string) func(*fwx.Config) {
	return func(c *fwx.Config) { c.StateFile = path }
}

// TestRestartKeepsFlows: fwx stopped with a state file writes its flows
// there instead of ending them; the next fwx reads them back (and removes
// the file), and the outside's packets reach the inside as before.
func TestRestartKeepsFlows(t *testing.T) {
	state := filepath.Join(t.TempDir(), "fwx.state")
	inside := netip.AddrPortFrom(rawClient, 5000)
	nowhere := netip.MustParseAddrPort("198.51.100.77:53")

	first := newTestbed(t, "", withState(state))
	first.Inside.Inject(lab.UDPPacket(inside, nowhere, []byte("query")))
	ext := nat.Parse(fwxlab.Recv(t, first.Outside.Captured())).Src
	if err := first.Stop(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(state); err != nil {
		t.Fatalf("no state file after the stop: %v", err)
	}
	if recs := first.Log.Records(t, map[string]string{"event": "ended"}); len(recs) != 0 {
		t.Errorf("ended records at a stop that saved its flows: %v", recs)
	}

	second := newTestbed(t, "", withState(state))
	if n := second.FW.Flows(); n != 1 {
		t.Fatalf("%d flows after the restart, want the saved one", n)
	}
	if _, err := os.Stat(state); !os.IsNotExist(err) {
		t.Errorf("state file still there after it was restored: %v", err)
	}
	second.Outside.Inject(lab.UDPPacket(nowhere, ext, []byte("answer")))
	if p := nat.Parse(fwxlab.Recv(t, second.Inside.Captured())); p.Dst != inside {
		t.Fatalf("answer delivered to %v, want %v", p.Dst, inside)
	}
}

// TestRestartBadStateFile: a state file fwx cannot use is set aside, and
// fwx starts with an empty table.
func TestRestartBadStateFile(t *testing.T) {
	state := filepath.Join(t.TempDir(), "fwx.state")
	if err := os.WriteFile(state, []byte("not a flow table"), 0o600); err != nil {
		t.Fatal(err)
	}
	tb := newTestbed(t, "", withState(state))
	if n := tb.FW.Flows(); n != 0 {
		t.Fatalf("%d flows from a bad state file", n)
	}
	if _, err := os.Stat(state + ".bad"); err != nil {
		t.Errorf("bad state file not set aside: %v", err)
	}
}

// TestCrashPickup: after a start that found no saved table (the previous
// run crashed), a connection that goes on sending from the inside is taken
// up again on its port; one the policy refuses gets a RST at once.
func TestCrashPickup(t *testing.T) {
	tb := newTestbed(t, `
protocols:
  - {name: telnet, transport: tcp, ports: [23]}
rules:
  - {name: no-telnet, action: deny, from: [internal], to: [any], protocols: [telnet]}
  - {name: out, action: allow, from: [internal], to: [external], protocols: [any]}
`, withState(filepath.Join(t.TempDir(), "fwx.state")))
	src := netip.AddrPortFrom(rawClient, 6000)
	tb.Inside.Inject(lab.TCPPacket(src, netip.MustParseAddrPort("198.51.100.77:80"), header.TCPFlagAck|header.TCPFlagPsh, 1000, 2000, []byte("more")))
	p := nat.Parse(fwxlab.Recv(t, tb.Outside.Captured()))
	if p.Src != netip.AddrPortFrom(fwOut.Addr(), 6000) {
		t.Fatalf("picked-up segment left from %v, want the inside port", p.Src)
	}
	tb.Inside.Inject(lab.TCPPacket(src, netip.MustParseAddrPort("198.51.100.77:23"), header.TCPFlagAck, 1000, 2000, nil))
	r := nat.Parse(fwxlab.Recv(t, tb.Inside.Captured()))
	if r.Proto != nat.TCP || r.TCPFlags&header.TCPFlagRst == 0 || r.Dst != src {
		t.Fatalf("answer to a refused connection's segment: %s, want a RST", lab.PacketString(r.Bytes()))
	}
	if st := tb.FW.Stats(); st.PickedUp != 1 {
		t.Errorf("%d connections picked up, want 1", st.PickedUp)
	}
}

// TestNoPickupWithoutState: without a state file, restarts are not meant to
// keep connections: a mid-stream segment is not picked up, it gets a RST.
func TestNoPickupWithoutState(t *testing.T) {
	tb := newTestbed(t, "")
	src := netip.AddrPortFrom(rawClient, 6000)
	tb.Inside.Inject(lab.TCPPacket(src, netip.MustParseAddrPort("198.51.100.77:80"), header.TCPFlagAck, 1000, 2000, []byte("more")))
	r := nat.Parse(fwxlab.Recv(t, tb.Inside.Captured()))
	if r.TCPFlags&header.TCPFlagRst == 0 || r.Dst != src {
		t.Fatalf("answer: %s, want a RST", lab.PacketString(r.Bytes()))
	}
	if st := tb.FW.Stats(); st.PickedUp != 0 || tb.FW.Flows() != 0 {
		t.Errorf("picked up %d, %d flows; want none", st.PickedUp, tb.FW.Flows())
	}
}
