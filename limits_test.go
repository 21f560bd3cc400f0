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

// TestSynFloodFair: one inside host floods SYNs and never completes a
// handshake (it drops the answers); another host's connections all
// succeed meanwhile, and the flood is refused under the flooder's
// half-open limit, reported once.
func TestSynFloodFair(t *testing.T) {
	tb := newTestbed(t, `
rules:
  - {name: out, action: allow, from: [internal], to: [external], protocols: [any]}
options:
  limits: {client-half-open: 20, client-rate: off}
`)
	fwxlab.EchoTCP(t, tb.Server, 80)
	const flood = 500
	for i := range flood {
		syn := lab.TCPPacket(netip.AddrPortFrom(rawClient, uint16(10000+i)), netip.AddrPortFrom(serverIP.Addr(), 80), header.TCPFlagSyn, 1, 0, nil)
		if err := tb.Inside.Inject(syn); err != nil {
			t.Fatal(err)
		}
	}
	for i := range 30 {
		c, err := tb.Client2.DialTCP(lab.Context(t, 5*time.Second), netip.AddrPortFrom(serverIP.Addr(), 80))
		if err != nil {
			t.Fatalf("connection %d of the other host during the flood: %v", i, err)
		}
		fwxlab.RoundTrip(t, c, "hello")
		c.Close()
	}
	st := tb.FW.Stats()
	if n := st.Drops[nat.DropClientHalfOpen]; n != flood-20 {
		t.Errorf("%d SYNs refused for the half-open limit, want %d", n, flood-20)
	}
	// The flooder's refusals are reported once per interval, with how
	// many: the first at once, the other 479 at the end of the interval;
	// not a record per SYN.
	for range 2 { // the table reports; then the log writes once the retries stop
		tb.Clock.Advance(time.Minute)
		tb.FW.Expire()
	}
	match := map[string]string{"event": "denied", "rule": "client-half-open"}
	tb.Log.WaitRecords(t, 2, match)
	for _, r := range tb.Log.Records(t, match) {
		if c, _ := r["client"].(string); netip.MustParseAddrPort(c).Addr() != rawClient {
			t.Errorf("refusal of %v", r["client"])
		}
	}
	if recs := tb.Log.Records(t, match); len(recs) != 2 {
		t.Errorf("%d denied records for the flood, want 2", len(recs))
	}
}

// TestSynRecvTimerFreesTheFlood: the flows of a flood whose answers are
// dropped are gone after the SYN_RECV timer, not the established one: the
// flooder's share is free again a minute later.
func TestSynRecvTimerFreesTheFlood(t *testing.T) {
	tb := newTestbed(t, `
rules:
  - {name: out, action: allow, from: [internal], to: [external], protocols: [any]}
options:
  limits: {client-half-open: 10, client-rate: off}
  timeouts: {tcp-syn-recv: 30s}
`)
	fwxlab.EchoTCP(t, tb.Server, 80)
	for i := range 10 {
		tb.Inside.Inject(lab.TCPPacket(netip.AddrPortFrom(rawClient, uint16(10000+i)), netip.AddrPortFrom(serverIP.Addr(), 80), header.TCPFlagSyn, 1, 0, nil))
	}
	// The server answers each; the answers land in the inside capture,
	// unanswered.
	for range 10 {
		fwxlab.Recv(t, tb.Inside.Captured())
	}
	if n := tb.FW.Flows(); n != 10 {
		t.Fatalf("%d flows, want the 10 half-open ones", n)
	}
	tb.Clock.Advance(29 * time.Second)
	if n := tb.FW.Expire(); n != 0 {
		t.Fatalf("%d flows expired before the SYN_RECV timer", n)
	}
	tb.Clock.Advance(2 * time.Second)
	if n := tb.FW.Expire(); n != 10 {
		t.Fatalf("%d flows expired after the SYN_RECV timer, want 10", n)
	}
}

// TestReloadLimitsAndInsideNetworks: the limits and the inside networks of
// a reloaded policy apply to the next packets.
func TestReloadLimitsAndInsideNetworks(t *testing.T) {
	const out = `
rules:
  - {name: out, action: allow, from: [internal], to: [external], protocols: [any]}
`
	tb := newTestbed(t, out)
	routed := netip.MustParseAddrPort("10.9.0.5:5000")
	nowhere := netip.MustParseAddrPort("198.51.100.77:9")
	tb.Inside.Inject(lab.UDPPacket(routed, nowhere, nil))
	waitDrops(t, tb, nat.DropSpoofedSource, 1)
	if _, err := tb.FW.Reload(mustPolicy(t, out+`
options:
  inside-networks: [10.9.0.0/16]
  limits: {client-half-open: 5, client-rate: off}
`)); err != nil {
		t.Fatal(err)
	}
	tb.Inside.Inject(lab.UDPPacket(routed, nowhere, []byte("after")))
	if p := nat.Parse(fwxlab.Recv(t, tb.Outside.Captured())); len(p.Payload()) != len("after") {
		t.Fatalf("left fwx: %s; want only the packet sent after the reload", lab.PacketString(p.Bytes()))
	}
	for i := range 10 {
		tb.Inside.Inject(lab.TCPPacket(netip.AddrPortFrom(rawClient, uint16(10000+i)), nowhere, header.TCPFlagSyn, 1, 0, nil))
	}
	for range 5 {
		fwxlab.Recv(t, tb.Outside.Captured())
	}
	waitDrops(t, tb, nat.DropClientHalfOpen, 5)
}

// waitDrops waits until fwx has counted n drops for reason r: packets
// cross fwx on goroutines of their own.
func waitDrops(t *testing.T, tb *testbed, r nat.DropReason, n uint64) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for tb.FW.Stats().Drops[r] < n && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	if got := tb.FW.Stats().Drops[r]; got != n {
		t.Fatalf("%d %v drops, want %d", got, r, n)
	}
}
