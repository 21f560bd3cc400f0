package gateway

import (
	"net/netip"
	"testing"

	"gvisor.dev/gvisor/pkg/tcpip/header"

	"github.com/fwx-dev/fwx/nat"
	"github.com/fwx-dev/fwx/netstack/lab"
)

// TestFragmentVerdicts: a datagram that arrives in fragments is answered
// as it would be whole: a segment of no connection fwx knows gets a RST
// back, an allowed datagram is forwarded.
func TestFragmentVerdicts(t *testing.T) {
	client := netip.MustParseAddrPort("10.0.0.2:40000")
	server := netip.MustParseAddrPort("198.51.100.2:80")
	payload := make([]byte, 200)
	for _, tt := range []struct {
		name            string
		pkt             []byte
		forward, answer int
	}{
		{"stale segment", lab.TCPPacket(client, server, header.TCPFlagAck, 1, 1, payload), 0, 1},
		{"datagram", lab.UDPPacket(client, server, payload), 1, 0},
	} {
		for _, fragmented := range []bool{false, true} {
			pkts := [][]byte{tt.pkt}
			if fragmented {
				bufs, sizes := [][]byte{make([]byte, 1500), make([]byte, 1500), make([]byte, 1500)}, make([]int, 3)
				n := nat.Refragment(tt.pkt, 148, bufs, sizes, 0)
				if n < 2 {
					t.Fatalf("%s: cut into %d fragments", tt.name, n)
				}
				pkts = nil
				for i := range n {
					pkts = append(pkts, bufs[i][:sizes[i]])
				}
			}
			g, in, out := newReplayGateway(t, false)
			in.pkts, in.reads = pkts, 1
			g.forwardBatch(newBatch(128), in, out, true)
			// The whole datagram leaves in as many fragments as came.
			if out.written != tt.forward*len(pkts) || in.written != tt.answer {
				t.Errorf("%s, fragmented %v: %d packets forwarded, %d answered; want %d, %d",
					tt.name, fragmented, out.written, in.written, tt.forward*len(pkts), tt.answer)
			}
		}
	}
}
