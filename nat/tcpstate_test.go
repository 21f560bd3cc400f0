package nat_test

import (
	"net/netip"
	"testing"
	"time"

	"gvisor.dev/gvisor/pkg/tcpip/header"

	"github.com/fwx-dev/fwx/nat"
	"github.com/fwx-dev/fwx/netstack/lab"
)

// seg is one TCP segment of a conversation between client and server
// through the table: from the client (out) or the server, with its flags,
// sequence and acknowledgment numbers.
type seg struct {
	fromClient bool
	flags      header.TCPFlags
	seq, ack   uint32
}

const (
	syn_   = header.TCPFlagSyn
	ack_   = header.TCPFlagAck
	fin_   = header.TCPFlagFin
	rst_   = header.TCPFlagRst
	synAck = syn_ | ack_
	finAck = fin_ | ack_
)

// play sends segs through tab, the client's first, at t0 plus one second
// per segment, and returns the client's flow.
func play(t testing.TB, tab *nat.Table, segs []seg) *nat.Flow {
	t.Helper()
	var extEP netip.AddrPort
	for i, s := range segs {
		now := t0.Add(time.Duration(i) * time.Second)
		if s.fromClient {
			out(tab, lab.TCPPacket(client, server, s.flags, s.seq, s.ack, nil), now)
			if i == 0 {
				extEP = tab.LookupOutbound(nat.TCP, client, server, now).External()
			}
		} else {
			in(tab, lab.TCPPacket(server, extEP, s.flags, s.seq, s.ack, nil), now)
		}
	}
	return tab.LookupOutbound(nat.TCP, client, server, t0.Add(time.Duration(len(segs))*time.Second))
}

// The client's ISN is 1000, the server's 5000.
var (
	cSyn    = seg{true, syn_, 1000, 0}
	sSynAck = seg{false, synAck, 5000, 1001}
	cAck    = seg{true, ack_, 1001, 5001}
	open3   = []seg{cSyn, sSynAck, cAck}
)

func with(base []seg, more ...seg) []seg { return append(append([]seg(nil), base...), more...) }

func TestTCPStates(t *testing.T) {
	tests := []struct {
		name     string
		segs     []seg
		userMode bool
		want     nat.TCPState
	}{
		{"syn", []seg{cSyn}, false, nat.TCPSynSent},
		{"syn retransmitted", []seg{cSyn, cSyn}, false, nat.TCPSynSent},
		{"answered", []seg{cSyn, sSynAck}, false, nat.TCPSynReceived},
		{"answer not acknowledged", []seg{cSyn, sSynAck, {true, ack_, 1001, 4000}}, false, nat.TCPSynReceived},
		{"answer acknowledged", open3, false, nat.TCPEstablished},
		{"answer acknowledged with data in it (TFO)", []seg{cSyn, sSynAck, {true, ack_, 1001, 5101}}, false, nat.TCPEstablished},
		{"user mode: the client's ACK of fwx's own answer", []seg{cSyn, sSynAck, {true, ack_, 1001, 77}}, true, nat.TCPEstablished},
		{"user mode: an emulated server", []seg{cSyn, {true, ack_, 1001, 77}}, true, nat.TCPEstablished},
		{"user mode: no ACK", []seg{cSyn, sSynAck}, true, nat.TCPSynReceived},
		{"server's ACK does not complete the client's handshake", []seg{cSyn, sSynAck, {false, ack_, 5001, 1001}}, false, nat.TCPSynReceived},
		{"client FIN", with(open3, seg{true, finAck, 1001, 5001}), false, nat.TCPClosing},
		{"client FIN acknowledged", with(open3, seg{true, finAck, 1001, 5001}, seg{false, ack_, 5001, 1002}), false, nat.TCPClosing},
		{"FIN acknowledged short", with(open3, seg{true, finAck, 1001, 5001}, seg{false, finAck, 5001, 1001}, seg{true, ack_, 1002, 5002}), false, nat.TCPClosing},
		{"both FINs, last not acknowledged", with(open3, seg{true, finAck, 1001, 5001}, seg{false, finAck, 5001, 1002}), false, nat.TCPClosing},
		{"closed", with(open3, seg{true, finAck, 1001, 5001}, seg{false, finAck, 5001, 1002}, seg{true, ack_, 1002, 5002}), false, nat.TCPClosed},
		{"closed by the server first", with(open3, seg{false, finAck, 5001, 1001}, seg{true, finAck, 1001, 5002}, seg{false, ack_, 5002, 1002}), false, nat.TCPClosed},
		{"user mode closed", with(open3, seg{true, finAck, 1, 2}, seg{false, finAck, 3, 4}, seg{true, ack_, 5, 6}), true, nat.TCPClosed},
		{"refused", []seg{cSyn, {false, rst_ | ack_, 0, 1001}}, false, nat.TCPReset},
		{"reset by the client", with(open3, seg{true, rst_, 1001, 0}), false, nat.TCPReset},
		{"nothing after a reset", with(open3, seg{true, rst_, 1001, 0}, seg{true, finAck, 1001, 5001}), false, nat.TCPReset},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tab, _ := newTable(t, nat.Config{Decider: userModeDecider(tt.userMode)})
			f := play(t, tab, tt.segs)
			if f == nil {
				t.Fatal("no flow")
			}
			if got := f.TCPState(); got != tt.want {
				t.Errorf("state %v, want %v", got, tt.want)
			}
		})
	}
}

// userModeDecider allows every outbound flow, on the user-mode path when true.
type userModeDecider bool

func (d userModeDecider) Outbound(nat.Proto, netip.AddrPort, netip.AddrPort) nat.Decision {
	return nat.Decision{Allow: true, Rule: "out", UserMode: bool(d)}
}
func (userModeDecider) Inbound(nat.Proto, netip.AddrPort, netip.AddrPort) nat.Decision {
	return nat.Decision{Rule: "default-deny"}
}

// TestTCPEndReportedAtClose checks that a TCP flow's end is reported when
// its connection closes or is reset, at that packet's time, and not again
// when the flow is reaped after its TIME_WAIT or RST timer.
func TestTCPEndReportedAtClose(t *testing.T) {
	tests := []struct {
		name string
		segs []seg
	}{
		{"closed", with(open3, seg{true, finAck, 1001, 5001}, seg{false, finAck, 5001, 1002}, seg{true, ack_, 1002, 5002})},
		{"reset", with(open3, seg{false, rst_, 5001, 0})},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tab, rec := newTable(t, nat.Config{})
			f := play(t, tab, tt.segs)
			closedAt := t0.Add(time.Duration(len(tt.segs)-1) * time.Second)
			if len(rec.ended) != 1 || rec.ended[0] != f || !rec.endedAt[0].Equal(closedAt) {
				t.Fatalf("ended %v at %v; want the flow once, at %v", rec.ended, rec.endedAt, closedAt)
			}
			if got := f.LastSeen(); !got.Equal(closedAt) {
				t.Errorf("last seen %v, want %v", got, closedAt)
			}
			if tab.Len() != 1 {
				t.Fatalf("%d flows: the closed flow should stay on its timer", tab.Len())
			}
			if n := tab.Expire(t0.Add(time.Hour)); n != 1 || len(rec.ended) != 1 {
				t.Errorf("reaped %d, ended reported %d times; want 1 and 1", n, len(rec.ended))
			}
		})
	}
}

// TestTCPReopen checks that a client reusing the four-tuple of a closed
// connection opens a new flow: decided, reported and timed as new.
func TestTCPReopen(t *testing.T) {
	tab, rec := newTable(t, nat.Config{})
	old := play(t, tab, with(open3, seg{true, rst_, 1001, 0}))
	now := t0.Add(time.Minute)
	v, _ := out(tab, lab.TCPPacket(client, server, syn_, 9000, 0, nil), now)
	if v != nat.Forward {
		t.Fatalf("new SYN: verdict %v", v)
	}
	f := tab.LookupOutbound(nat.TCP, client, server, now)
	if f == nil || f == old || f.TCPState() != nat.TCPSynSent || !f.Start().Equal(now) {
		t.Fatalf("flow after the new SYN: %v (old %v)", f, old)
	}
	if len(rec.started) != 2 || len(rec.ended) != 1 || tab.Len() != 1 {
		t.Errorf("started %d, ended %d, live %d; want 2, 1, 1", len(rec.started), len(rec.ended), tab.Len())
	}
}

// TestSynFloodHoldsPortsBriefly: a client that sends SYNs and ignores the
// answers (a SYN flood whose sender drops its own RSTs) holds each port
// for the SYN_RECV timer, not the established one.
func TestSynFloodHoldsPortsBriefly(t *testing.T) {
	tab, rec := newTable(t, nat.Config{})
	const n = 100
	for i := range n {
		src := netip.AddrPortFrom(client.Addr(), uint16(20000+i))
		_, p := out(tab, lab.TCPPacket(src, server, syn_, 1, 0, nil), t0)
		in(tab, lab.TCPPacket(server, p.Src, synAck, 7, 2, nil), t0)
	}
	syn := nat.DefaultTimeouts().TCPSynRecv
	if got := tab.Expire(t0.Add(syn - time.Second)); got != 0 {
		t.Fatalf("%d flows expired before the SYN_RECV timer", got)
	}
	if got := tab.Expire(t0.Add(syn + time.Second)); got != n || len(rec.ended) != n {
		t.Fatalf("%d flows expired (%d reported) after the SYN_RECV timer, want %d", got, len(rec.ended), n)
	}
}
