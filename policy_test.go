package fwx_test

import (
	"errors"
	"net/netip"
	"strings"
	"syscall"
	"testing"
	"time"

	"gvisor.dev/gvisor/pkg/tcpip/header"

	"github.com/fwx-dev/fwx/nat"
	"github.com/fwx-dev/fwx/netstack/lab"
	"github.com/fwx-dev/fwx/netstack/lab/fwxlab"
)

const denyPolicy = `
networks:
  server2: [198.51.100.3]
protocols:
  - {name: blocked-tcp, transport: tcp, ports: [81]}
  - {name: blocked-udp, transport: udp, ports: [5353]}
rules:
  - {name: no-81, action: deny, from: [internal], to: [any], protocols: [blocked-tcp, blocked-udp]}
  - {name: no-ping-server2, action: deny, from: [internal], to: [server2], protocols: [ping]}
  - {name: out, action: allow, from: [internal], to: [external], protocols: [any]}
options: {reject: %s}
`

// rawClient is an inside address no lab host owns: what fwx sends to it
// lands in the inside segment's capture queue.
var rawClient = netip.MustParseAddr("10.0.0.9")

// TestDeniedFlows checks that a denied TCP flow gets a RST, other denied
// flows an ICMP administratively-prohibited error from fwx, and that each
// denial is logged with its rule.
func TestDeniedFlows(t *testing.T) {
	tb := newTestbed(t, strings.Replace(denyPolicy, "%s", "reply", 1))

	_, err := tb.Client.DialTCP(lab.Context(t, 5*time.Second), netip.AddrPortFrom(serverIP.Addr(), 81))
	if !errors.Is(err, syscall.ECONNREFUSED) {
		t.Errorf("dial to denied port: %v, want connection refused", err)
	}

	for _, c := range []struct {
		name string
		pkt  []byte
	}{
		{"udp", lab.UDPPacket(netip.AddrPortFrom(rawClient, 5000), netip.AddrPortFrom(serverIP.Addr(), 5353), []byte("q"))},
		{"ping", lab.ICMPEcho(rawClient, server2IP.Addr(), header.ICMPv4Echo, 1, 1)},
	} {
		t.Run(c.name, func(t *testing.T) {
			sent := nat.Parse(c.pkt)
			if err := tb.Inside.Inject(c.pkt); err != nil {
				t.Fatal(err)
			}
			reply := fwxlab.Recv(t, tb.Inside.Captured())
			p := nat.Parse(reply)
			if err := lab.VerifyChecksums(reply); err != nil {
				t.Fatal(err)
			}
			if p.Kind != nat.Error || p.ICMPType != uint8(header.ICMPv4DstUnreachable) || p.ICMPCode != uint8(header.ICMPv4AdminProhibited) ||
				p.Src.Addr() != fwIn.Addr() || p.Quoted().Src != sent.Src {
				t.Errorf("reply %s; want admin-prohibited from %v quoting %v", lab.PacketString(reply), fwIn.Addr(), sent.Src)
			}
		})
	}
	recs := tb.WaitDenied(t, 3, map[string]string{"event": "denied", "action": "deny"})
	rules := map[string]int{}
	for _, r := range recs {
		rules[r["rule"].(string)]++
	}
	if rules["no-81"] != 2 || rules["no-ping-server2"] != 1 {
		t.Errorf("denials by rule %v, want no-81 twice and no-ping-server2 once", rules)
	}
}

// TestDeniedSilently checks the reject: drop option: nothing comes back.
func TestDeniedSilently(t *testing.T) {
	tb := newTestbed(t, strings.Replace(denyPolicy, "%s", "drop", 1))
	tb.Inside.Inject(lab.TCPPacket(netip.AddrPortFrom(rawClient, 5000), netip.AddrPortFrom(serverIP.Addr(), 81), header.TCPFlagSyn, 1, 0, nil))
	tb.Inside.Inject(lab.UDPPacket(netip.AddrPortFrom(rawClient, 5000), netip.AddrPortFrom(serverIP.Addr(), 5353), nil))
	tb.WaitDenied(t, 2, map[string]string{"event": "denied"})
	select {
	case pkt := <-tb.Inside.Captured():
		t.Errorf("got %s; want silence", lab.PacketString(pkt))
	case <-time.After(100 * time.Millisecond):
	}
}

// TestFirewallLog checks the fields of the allowed and ended records.
func TestFirewallLog(t *testing.T) {
	tb := newTestbed(t, "")
	fwxlab.EchoTCP(t, tb.Server, 8000)
	c, err := tb.Client.DialTCPFrom(lab.Context(t, 5*time.Second), netip.AddrPortFrom(clientIP.Addr(), 40100), netip.AddrPortFrom(serverIP.Addr(), 8000))
	if err != nil {
		t.Fatal(err)
	}
	fwxlab.RoundTrip(t, c, "0123456789")
	match := map[string]string{"protocol": "tcp", "client": "10.0.0.2:40100", "destination": "198.51.100.2:8000",
		"translated_source": "198.51.100.1:40100", "rule": "default-outbound", "path": "fast", "direction": "outbound"}
	match["event"] = "allowed"
	tb.Log.WaitRecords(t, 1, match)
	// The flow's last packets come 7 s (on the lab clock) after its first.
	tb.Clock.Advance(7 * time.Second)
	fwxlab.RoundTrip(t, c, "abcdefghij")
	c.Close()
	match["event"] = "ended"
	// The connection's end is logged when its last FIN is acknowledged,
	// not when its flow is reaped after TIME_WAIT.
	rec := tb.Log.WaitRecords(t, 1, match)[0]
	if tb.FW.Flows() != 1 {
		t.Errorf("%d flows; the closed one should stay for its TIME_WAIT timer", tb.FW.Flows())
	}
	// Bytes are IP bytes: at least the payload plus 40 bytes of headers per
	// packet, each way.
	if sent, _ := rec["bytes_sent"].(float64); sent < 20+40*4 {
		t.Errorf("bytes_sent %v", rec["bytes_sent"])
	}
	if got, _ := rec["bytes_received"].(float64); got < 20+40*4 {
		t.Errorf("bytes_received %v", rec["bytes_received"])
	}
	if n, _ := rec["packets_sent"].(float64); n < 5 {
		t.Errorf("packets_sent %v, want the SYN, the ACK, two segments and the FIN at least", rec["packets_sent"])
	}
	if d, _ := rec["duration"].(float64); d != 7 || rec["time"] != "2026-11-23T09:00:07Z" {
		t.Errorf("duration %v s at %v, want 7 s (first to last packet on the lab clock) at the close, 09:00:07", rec["duration"], rec["time"])
	}
	if rec["time"] == nil {
		t.Error("no time field")
	}
}
