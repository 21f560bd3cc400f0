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
	f.Fuzz(func(t *testing.T, pkt []byte, inbound bool) {
		tab, _ := newTable(t, nat.Config{Filtering: nat.EndpointIndependent})
		// Open a flow so fuzzed inbound packets can match one.
		out(tab, lab.UDPPacket(client, server, nil), t0)
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
			nat.BuildICMPError(rb, &p, inner, nat.AdminProhibited)
		}
	})
}
