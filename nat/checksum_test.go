package nat_test

import (
	"net/netip"
	"testing"

	"gvisor.dev/gvisor/pkg/tcpip/header"

	"github.com/fwx-dev/fwx/nat"
	"github.com/fwx-dev/fwx/netstack/lab"
)

// TestChecksumValid checks what fwx verifies of a packet the kernel does
// not vouch for: a transport checksum right or wrong by one bit, for each
// protocol and family.
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
		// The kernel's word is taken without a look.
		p = nat.Parse(tc.pkt)
		p.SetChecksumVerified(true)
		if !p.ChecksumValid() {
			t.Errorf("%s: a checksum the kernel verified found wrong", tc.name)
		}
	}
}

// TestBadChecksumOpensNothing: a packet that would open a flow but whose
// transport checksum is wrong is dropped as bad-checksum, before any
// decision: no flow, no log record, no RST or ICMP answer (the host it
// was for would have dropped it unseen). The same packet with its
// checksum right, or vouched for by the kernel, opens its flow.
func TestBadChecksumOpensNothing(t *testing.T) {
	client6 := netip.MustParseAddrPort("[fd00::2]:40000")
	server6 := netip.MustParseAddrPort("[2001:db8:1::5]:80")
	published := netip.AddrPortFrom(ext, 8080)
	for _, tc := range []struct {
		name    string
		inbound bool
		pkt     func() []byte
		at      int // the byte spoiled: in the transport header or payload
	}{
		{"tcp syn", false, func() []byte { return syn(client, server) }, 36},
		{"tcp syn6", false, func() []byte { return syn(client6, server6) }, 56},
		{"udp", false, func() []byte { return lab.UDPPacket(client, server, []byte("q")) }, 28},
		{"udp6", false, func() []byte { return lab.UDPPacket(client6, server6, []byte("q")) }, 48},
		{"icmp echo", false, func() []byte { return lab.ICMPEcho(client.Addr(), server.Addr(), header.ICMPv4Echo, 1, 2) }, 25},
		// A stray segment, which would get a RST, gets nothing.
		{"tcp ack", false, func() []byte { return lab.TCPPacket(client, server, header.TCPFlagAck, 1, 2, nil) }, 36},
		{"syn to a published server", true, func() []byte { return syn(server, published) }, 36},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for _, mode := range []string{"wrong", "verified", "right"} {
				tab, rec := newTable(t, nat.Config{Decider: publishPolicy{}})
				if err := tab.Publish(nat.TCP, published, netip.MustParseAddrPort("10.0.0.5:80")); err != nil {
					t.Fatal(err)
				}
				pkt := tc.pkt()
				if mode != "right" {
					pkt[tc.at] ^= 0x10
				}
				p := nat.Parse(pkt)
				p.SetChecksumVerified(mode == "verified")
				var v nat.Verdict
				if tc.inbound {
					v = tab.Inbound(&p, t0)
				} else {
					v = tab.Outbound(&p, t0)
				}
				bad := tab.Stats().Drops[nat.DropChecksum]
				if mode == "wrong" {
					if v != nat.Drop || bad != 1 || tab.Len() != 0 || len(rec.started)+len(rec.denied) != 0 {
						t.Errorf("wrong checksum: verdict %v, bad-checksum %d, flows %d, records %d; want drop, 1, 0, 0",
							v, bad, tab.Len(), len(rec.started)+len(rec.denied))
					}
					continue
				}
				if v == nat.Drop || bad != 0 {
					t.Errorf("%s checksum: verdict %v, bad-checksum %d", mode, v, bad)
				}
			}
		})
	}
}
