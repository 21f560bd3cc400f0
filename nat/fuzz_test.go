package nat_test

import (
	"bytes"
	"net/netip"
	"testing"

	"gvisor.dev/gvisor/pkg/tcpip/header"

	"github.com/fwx-dev/fwx/nat"
	"github.com/fwx-dev/fwx/netstack/lab"
)

// FuzzTranslate feeds arbitrary bytes to the parser and the table from both
// sides. Properties: nothing panics, and every packet the table forwards
// carries correct checksums if it arrived with them.
func FuzzTranslate(f *testing.F) {
	// Seeds: one packet of each kind fwx handles, and an ICMP error.
	f.Add(lab.UDPPacket(client, server, []byte("x")), false)
	f.Add(syn(client, server), false)
	f.Add(lab.ICMPEcho(client.Addr(), server.Addr(), header.ICMPv4Echo, 1, 1), false)
	f.Add(lab.UDPPacket(server, netip.AddrPortFrom(ext, client.Port()), nil), true)
	sent := nat.Parse(lab.UDPPacket(netip.AddrPortFrom(ext, client.Port()), server, nil))
	buf := make([]byte, nat.MaxReplyLen)
	n := nat.BuildICMPError(buf, &sent, netip.AddrFrom4([4]byte{203, 0, 113, 1}), nat.PortUnreachable)
	f.Add(bytes.Clone(buf[:n]), true)
	// IP options: a source route (dropped) and a record route (passed).
	f.Add(withOptions(lab.UDPPacket(client, server, nil), lsrr), false)
	f.Add(withOptions(lab.UDPPacket(server, netip.AddrPortFrom(ext, client.Port()), nil), recordRoute), true)
	// IPv6: a datagram, an echo, an error quoting a translated packet,
	// extension headers.
	f.Add(lab.UDPPacket(client6, server6, []byte("x")), false)
	f.Add(lab.ICMPv6Echo(client6.Addr(), server6.Addr(), header.ICMPv6EchoRequest, 1, 1), false)
	f.Add(lab.UDPPacket(server6, netip.AddrPortFrom(ext6, client6.Port()), nil), true)
	f.Add(lab.ICMPv6Error(router6, ext6, header.ICMPv6PacketTooBig, 0, 1280, lab.UDPPacket(netip.AddrPortFrom(ext6, client6.Port()), server6, nil)), true)
	f.Add(withExt(syn(client6, server6), hopByHop, destOpts), false)
	f.Fuzz(func(t *testing.T, pkt []byte, inbound bool) {
		tab, _ := newTable(t, nat.Config{Filtering: nat.EndpointIndependent})
		// Open a flow of each family so fuzzed inbound packets can
		// match one.
		out(tab, lab.UDPPacket(client, server, nil), t0)
		out(tab, lab.UDPPacket(client6, server6, nil), t0)
		valid := lab.VerifyChecksums(pkt) == nil
		p := nat.Parse(pkt)
		var v nat.Verdict
		if inbound {
			v = tab.Inbound(&p, t0)
		} else {
			v = tab.Outbound(&p, t0)
		}
		if (v == nat.Forward || v == nat.Hairpin) && valid {
			if err := lab.VerifyChecksums(p.Bytes()); err != nil {
				t.Fatalf("%v after translating %s", err, lab.PacketString(p.Bytes()))
			}
		}
		if v == nat.Reject || v == nat.Local {
			rb := make([]byte, nat.MaxReplyLen)
			nat.BuildRST(rb, &p)
			from := inner
			if p.Is6() {
				from = inner6
			}
			nat.BuildICMPError(rb, &p, from, nat.AdminProhibited)
		}
	})
}
