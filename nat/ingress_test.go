package nat_test

import (
	"encoding/binary"
	"net/netip"
	"testing"

	"gvisor.dev/gvisor/pkg/tcpip/header"

	"github.com/fwx-dev/fwx/nat"
	"github.com/fwx-dev/fwx/netstack/lab"
)

// withOptions returns pkt with the IP options opts (a multiple of 4
// bytes) inserted after its header, lengths and header checksum fixed.
func withOptions(pkt, opts []byte) []byte {
	out := append(append(append([]byte(nil), pkt[:header.IPv4MinimumSize]...), opts...), pkt[header.IPv4MinimumSize:]...)
	ip := header.IPv4(out)
	ip.SetHeaderLength(uint8(header.IPv4MinimumSize + len(opts)))
	ip.SetTotalLength(uint16(len(out)))
	ip.SetChecksum(0)
	ip.SetChecksum(^ip.CalculateChecksum())
	return out
}

var (
	// lsrr is a loose source route through 192.0.2.9, padded with a NOP.
	lsrr = []byte{0x83, 7, 4, 192, 0, 2, 9, 1}
	// ssrr is the strict one.
	ssrr = []byte{0x89, 7, 4, 192, 0, 2, 9, 1}
	// recordRoute asks routers to record their addresses: harmless.
	recordRoute = []byte{7, 7, 4, 0, 0, 0, 0, 1}
)

func ap(s string) netip.AddrPort { return netip.MustParseAddrPort(s) }

// TestIngress checks each ingress rule: what it drops, with its reason,
// and what it lets through.
func TestIngress(t *testing.T) {
	pub := netip.AddrPortFrom(ext, 8080)
	tcp := func(src, dst netip.AddrPort, flags header.TCPFlags) []byte {
		return lab.TCPPacket(src, dst, flags, 1000, 0, nil)
	}
	udp := func(src, dst netip.AddrPort) []byte { return lab.UDPPacket(src, dst, []byte("x")) }
	tests := []ingressCase{
		{"inside client", false, udp(client, server), nat.Forward, 0},
		{"source outside the inside network", false, udp(ap("192.168.1.5:5000"), server), nat.Drop, nat.DropSpoofedSource},
		{"source in another inside network", false, udp(ap("10.9.0.5:5000"), server), nat.Forward, 0},
		{"unspecified source", false, udp(ap("0.0.0.0:68"), server), nat.Drop, nat.DropMartianSource},
		{"loopback source", false, udp(ap("127.0.0.1:5000"), server), nat.Drop, nat.DropMartianSource},
		{"multicast source", false, udp(ap("224.0.0.5:5000"), server), nat.Drop, nat.DropMartianSource},
		{"broadcast source", false, udp(ap("255.255.255.255:5000"), server), nat.Drop, nat.DropMartianSource},
		{"inside broadcast source", false, udp(ap("10.0.0.255:5000"), server), nat.Drop, nat.DropMartianSource},
		{"fwx's inside address as source", false, udp(netip.AddrPortFrom(inner, 5000), server), nat.Drop, nat.DropOwnAddress},
		{"loopback destination", false, udp(client, ap("127.0.0.1:53")), nat.Drop, nat.DropMartianDestination},
		{"multicast destination", false, udp(client, ap("224.0.0.251:5353")), nat.Drop, nat.DropMartianDestination},
		{"multicast destination an option allows", false, udp(client, ap("239.255.255.250:1900")), nat.Forward, 0},
		{"broadcast destination", false, udp(client, ap("255.255.255.255:67")), nat.Drop, nat.DropMartianDestination},
		{"inside broadcast destination", false, udp(client, ap("10.0.0.255:137")), nat.Drop, nat.DropMartianDestination},
		{"unspecified destination", false, udp(client, ap("0.0.0.0:80")), nat.Drop, nat.DropMartianDestination},
		{"loose source route", false, withOptions(udp(client, server), lsrr), nat.Drop, nat.DropSourceRoute},
		{"strict source route", false, withOptions(udp(client, server), ssrr), nat.Drop, nat.DropSourceRoute},
		{"record route", false, withOptions(udp(client, server), recordRoute), nat.Forward, 0},
		{"malformed options", false, withOptions(udp(client, server), []byte{7, 9, 4, 0}), nat.Drop, nat.DropInvalid},
		{"SYN+FIN", false, tcp(client, server, syn_|fin_), nat.Drop, nat.DropBadTCPFlags},
		{"SYN+RST", false, tcp(client, server, syn_|rst_), nat.Drop, nat.DropBadTCPFlags},
		{"no flags", false, tcp(client, server, 0), nat.Drop, nat.DropBadTCPFlags},
		{"FIN alone", false, tcp(client, server, fin_), nat.Drop, nat.DropBadTCPFlags},
		{"Xmas", false, tcp(client, server, fin_|header.TCPFlagPsh|header.TCPFlagUrg), nat.Drop, nat.DropBadTCPFlags},
		{"SYN with ECN", false, tcp(client, server, syn_|header.TCPFlagEce|header.TCPFlagCwr), nat.Forward, 0},
		{"ACK without a flow", false, tcp(client, server, ack_), nat.Reset, nat.DropStale},

		{"outside to a published server", true, tcp(server, pub, syn_), nat.Forward, 0},
		{"fwx's outside address as source", true, tcp(netip.AddrPortFrom(ext, 80), pub, syn_), nat.Drop, nat.DropOwnAddress},
		{"an inside address from the outside", true, tcp(ap("10.0.0.9:80"), pub, syn_), nat.Drop, nat.DropSpoofedSource},
		{"loopback from the outside", true, tcp(ap("127.0.0.1:80"), pub, syn_), nat.Drop, nat.DropMartianSource},
		{"source-routed from the outside", true, withOptions(tcp(server, pub, syn_), lsrr), nat.Drop, nat.DropSourceRoute},
		{"SYN+FIN from the outside", true, tcp(server, pub, syn_|fin_), nat.Drop, nat.DropBadTCPFlags},
		{"unsolicited", true, udp(server, netip.AddrPortFrom(ext, 9)), nat.Drop, nat.DropUnsolicited},
		{"past fwx", true, udp(server, client), nat.Drop, nat.DropUnsolicited},
	}
	checkIngress(t, tests, nat.Config{
		Decider:             publishPolicy{},
		InsideNetworks:      []netip.Prefix{netip.MustParsePrefix("10.0.0.0/24"), netip.MustParsePrefix("10.9.0.0/16")},
		SpecialDestinations: []netip.Prefix{netip.MustParsePrefix("239.0.0.0/8")},
	}, pub, ap("10.0.0.5:80"))
}

// TestIngressIPv6 checks the ingress rules on IPv6: its special-purpose
// sources (RFC 6890), its inside networks, fwx's own addresses, and a
// routing header with segments left, IPv6's source route.
func TestIngressIPv6(t *testing.T) {
	pub := netip.AddrPortFrom(ext6, 8080)
	tcp := func(src, dst netip.AddrPort, flags header.TCPFlags) []byte {
		return lab.TCPPacket(src, dst, flags, 1000, 0, nil)
	}
	udp := func(src, dst netip.AddrPort) []byte { return lab.UDPPacket(src, dst, []byte("x")) }
	// The lab builds no packet from an IPv4-mapped address: one is
	// written in (its checksum is not checked before the drop).
	mapped := udp(client6, server6)
	copy(mapped[8:24], netip.MustParseAddr("::ffff:10.0.0.2").AsSlice())
	tests := []ingressCase{
		{"inside client", false, udp(client6, server6), nat.Forward, 0},
		{"source outside the inside network", false, udp(ap("[fd00:1::5]:5000"), server6), nat.Drop, nat.DropSpoofedSource},
		{"unspecified source", false, udp(ap("[::]:546"), server6), nat.Drop, nat.DropMartianSource},
		{"loopback source", false, udp(ap("[::1]:5000"), server6), nat.Drop, nat.DropMartianSource},
		{"link-local source", false, udp(ap("[fe80::2]:5000"), server6), nat.Drop, nat.DropMartianSource},
		{"multicast source", false, udp(ap("[ff02::1]:5000"), server6), nat.Drop, nat.DropMartianSource},
		{"IPv4-mapped source", false, mapped, nat.Drop, nat.DropMartianSource},
		{"fwx's inside address as source", false, udp(netip.AddrPortFrom(inner6, 5000), server6), nat.Drop, nat.DropOwnAddress},
		{"multicast destination", false, udp(client6, ap("[ff02::fb]:5353")), nat.Drop, nat.DropMartianDestination},
		{"multicast destination an option allows", false, udp(client6, ap("[ff05::c]:1900")), nat.Forward, 0},
		{"loopback destination", false, udp(client6, ap("[::1]:53")), nat.Drop, nat.DropMartianDestination},
		{"routing header with segments left", false, withExt(udp(client6, server6), srh2), nat.Drop, nat.DropSourceRoute},
		{"routing header with none left", false, withExt(udp(client6, server6), srh0), nat.Forward, 0},
		{"SYN+FIN", false, tcp(client6, server6, syn_|fin_), nat.Drop, nat.DropBadTCPFlags},

		{"outside to a published server", true, tcp(server6, pub, syn_), nat.Forward, 0},
		{"fwx's outside address as source", true, tcp(netip.AddrPortFrom(ext6, 80), pub, syn_), nat.Drop, nat.DropOwnAddress},
		{"an inside address from the outside", true, tcp(ap("[fd00::9]:80"), pub, syn_), nat.Drop, nat.DropSpoofedSource},
		{"link-local from the outside", true, tcp(ap("[fe80::9]:80"), pub, syn_), nat.Drop, nat.DropMartianSource},
		{"source-routed from the outside", true, withExt(tcp(server6, pub, syn_), srh2), nat.Drop, nat.DropSourceRoute},
	}
	checkIngress(t, tests, nat.Config{
		Decider:             publishPolicy{},
		InsideNetworks:      []netip.Prefix{netip.MustParsePrefix("fd00::/64")},
		SpecialDestinations: []netip.Prefix{netip.MustParsePrefix("ff05::/16")},
	}, pub, ap("[fd00::5]:80"))
}

type ingressCase struct {
	name    string
	inbound bool
	pkt     []byte
	want    nat.Verdict
	reason  nat.DropReason // counted when want is Drop or Reset
}

// checkIngress sends each case's packet through a table made with cfg
// that publishes server on pub, and checks its verdict and that the
// case's reason, and no other, was counted.
func checkIngress(t *testing.T, tests []ingressCase, cfg nat.Config, pub, server netip.AddrPort) {
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tab, _ := newTable(t, cfg)
			if err := tab.Publish(nat.TCP, pub, server); err != nil {
				t.Fatal(err)
			}
			var v nat.Verdict
			if tt.inbound {
				v, _ = in(tab, tt.pkt, t0)
			} else {
				v, _ = out(tab, tt.pkt, t0)
			}
			if v != tt.want {
				t.Fatalf("verdict %v, want %v", v, tt.want)
			}
			drops := tab.Stats().Drops
			for r, n := range drops {
				want := uint64(0)
				if (tt.want == nat.Drop || tt.want == nat.Reset) && nat.DropReason(r) == tt.reason {
					want = 1
				}
				if n != want {
					t.Errorf("drops[%v] = %d, want %d", nat.DropReason(r), n, want)
				}
			}
		})
	}
}

// TestSourceRouteOptionParsing walks option lists: a source route found
// after other options, options ended early, and lengths that overrun.
func TestSourceRouteOptionParsing(t *testing.T) {
	tests := []struct {
		name string
		opts []byte
		kind nat.Kind
		want nat.Verdict
	}{
		{"NOPs then LSRR", []byte{1, 1, 1, 0x83, 7, 4, 192, 0, 2, 9, 0, 0}, nat.Transport, nat.Drop},
		{"end of list before an SSRR", []byte{0, 0x89, 7, 4}, nat.Transport, nat.Forward},
		{"length past the header", []byte{7, 200, 4, 0}, nat.Invalid, nat.Drop},
		{"length too short", []byte{7, 1, 0, 0}, nat.Invalid, nat.Drop},
		{"type without a length", []byte{1, 1, 1, 7}, nat.Invalid, nat.Drop},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tab, _ := newTable(t, nat.Config{})
			pkt := withOptions(lab.UDPPacket(client, server, nil), tt.opts)
			p := nat.Parse(pkt)
			if p.Kind != tt.kind {
				t.Fatalf("kind %v, want %v", p.Kind, tt.kind)
			}
			if v := tab.Outbound(&p, t0); v != tt.want {
				t.Errorf("verdict %v, want %v", v, tt.want)
			}
			if binary.BigEndian.Uint16(pkt[2:]) != uint16(len(pkt)) {
				t.Fatal("helper broke the total length")
			}
		})
	}
}
