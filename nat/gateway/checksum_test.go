package gateway

import (
	"net/netip"
	"testing"

	"gvisor.dev/gvisor/pkg/tcpip/header"

	"github.com/fwx-dev/fwx/nat"
	"github.com/fwx-dev/fwx/netstack/lab"
	"github.com/fwx-dev/fwx/netstack/vnettun"
	"github.com/fwx-dev/fwx/session"
	"github.com/fwx-dev/fwx/session/policy"
)

// TestChecksumValid checks what fwx verifies before a packet the kernel
// does not vouch for reaches a netstack: a transport checksum right or
// wrong by one bit, for each protocol and family.
func TestChecksumValid(t *testing.T) {
	c4 := netip.MustParseAddrPort("10.0.0.2:40000")
	s4 := netip.MustParseAddrPort("198.51.100.2:5201")
	c6 := netip.MustParseAddrPort("[fd00::2]:40000")
	s6 := netip.MustParseAddrPort("[2001:db8:100::2]:5201")
	noSum := lab.UDPPacket(c4, s4, []byte("no checksum"))
	noSum[26], noSum[27] = 0, 0 // IPv4 UDP may go without one
	for _, tc := range []struct {
		name string
		pkt  []byte
		at   int // a byte of the transport header or payload to spoil, -1 for none
	}{
		{"tcp", lab.TCPPacket(c4, s4, header.TCPFlagAck, 1, 2, []byte("payload")), 45},
		{"tcp6", lab.TCPPacket(c6, s6, header.TCPFlagAck, 1, 2, []byte("payload")), 65},
		{"udp", lab.UDPPacket(c4, s4, []byte("payload")), 30},
		{"udp6", lab.UDPPacket(c6, s6, []byte("payload")), 50},
		{"udp without checksum", noSum, -1},
		{"icmp", lab.ICMPEcho(c4.Addr(), s4.Addr(), header.ICMPv4Echo, 1, 2), 25},
		{"icmp6", lab.ICMPv6Echo(c6.Addr(), s6.Addr(), header.ICMPv6EchoRequest, 1, 2), 45},
	} {
		p := nat.Parse(tc.pkt)
		if !p.ChecksumValid() {
			t.Errorf("%s: a right checksum found wrong", tc.name)
		}
		if tc.at < 0 {
			continue
		}
		tc.pkt[tc.at] ^= 0x10
		if p := nat.Parse(tc.pkt); p.ChecksumValid() {
			t.Errorf("%s: a wrong checksum found right", tc.name)
		}
	}
}

func TestTrusted(t *testing.T) {
	for _, tc := range []struct {
		h    vnettun.Hdr
		want bool
	}{
		{vnettun.Hdr{}, false},
		{vnettun.Hdr{Flags: vnettun.FlagNeedsCsum}, true},
		{vnettun.Hdr{Flags: vnettun.FlagDataValid}, true},
		{vnettun.Hdr{GSOType: vnettun.GSOTCPv4, Flags: vnettun.FlagNeedsCsum}, true},
	} {
		if got := trusted(tc.h); got != tc.want {
			t.Errorf("trusted(%+v) = %v, want %v", tc.h, got, tc.want)
		}
	}
}

// TestDivertBadChecksum: a segment of a user-mode connection whose
// checksum is wrong, and that no kernel vouched for (the device has no
// virtio headers), never reaches the inside netstack, which trusts what
// the forward loop hands it; the same segment with its checksum right
// does.
func TestDivertBadChecksum(t *testing.T) {
	pol, err := policy.Parse("user.yaml", []byte(`
protocols:
  - {name: bench, transport: tcp, ports: [5201], filter: hook}
rules:
  - {name: bench, action: allow, from: [internal], to: [external], protocols: [bench]}
`))
	if err != nil {
		t.Fatal(err)
	}
	in, out := &replayDevice{}, &replayDevice{}
	g, err := New(Config{
		Inside: queues{in}, Outside: queues{out},
		InsideAddrs:  []netip.Prefix{netip.MustParsePrefix("10.0.0.1/24")},
		OutsideAddrs: []netip.Prefix{netip.MustParsePrefix("198.51.100.1/24")},
		Policy:       pol, Clock: session.SystemClock, Seed: 1,
	})
	if err != nil {
		t.Fatal(err)
	}
	defer g.Close()
	if err := g.sessions.AddFilter("hook", hookFilter{}); err != nil {
		t.Fatal(err)
	}
	server := netip.MustParseAddrPort("198.51.100.2:5201")
	batch := newBatch(128)
	for _, tc := range []struct {
		name string
		port uint16
		bad  bool
		want uint64 // packets the inside netstack has had, after it
	}{
		{"bad checksum", 6000, true, 0},
		{"good checksum", 6001, false, 1},
	} {
		syn := lab.TCPPacket(netip.AddrPortFrom(netip.MustParseAddr("10.0.0.2"), tc.port), server, header.TCPFlagSyn, 1, 0, nil)
		if tc.bad {
			syn[len(syn)-1] ^= 0x10 // the urgent pointer
		}
		in.pkts, in.reads = [][]byte{syn}, 1
		g.forwardBatch(batch, in, out, true)
		if got := g.user.inside.Stats().PacketsIn; got != tc.want {
			t.Errorf("%s: the inside netstack has had %d packets, want %d", tc.name, got, tc.want)
		}
	}
}

// hookFilter hooks the TCP connect event, which puts its protocol's
// connections on the user-mode path, and lets every one through.
type hookFilter struct{}

func (hookFilter) Init() (session.Hooks, error) {
	return session.Hooks{Events: session.EventConnectTCP}, nil
}
func (hookFilter) AttachToSession(*session.Session) (session.SessionFilter, error) {
	return hookFilter{}, nil
}
func (hookFilter) Shutdown()                        {}
func (hookFilter) Detach()                          {}
func (hookFilter) HandleEvent(*session.Event) error { return nil }
