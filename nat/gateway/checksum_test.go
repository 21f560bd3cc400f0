package gateway

import (
	"fmt"
	"net/netip"
	"testing"
	"time"

	"gvisor.dev/gvisor/pkg/tcpip/header"

	"github.com/fwx-dev/fwx/nat"
	"github.com/fwx-dev/fwx/netstack/lab"
	"github.com/fwx-dev/fwx/session"
	"github.com/fwx-dev/fwx/session/policy"
)

// newFilterGateway returns a gateway on replay devices (inside, outside)
// whose policy lets the inside reach port on the outside over transport
// through filter f.
func newFilterGateway(t *testing.T, transport string, port uint16, f session.Filter) (*Gateway, *replayDevice, *replayDevice) {
	t.Helper()
	pol, err := policy.Parse("user.yaml", fmt.Appendf(nil, `
protocols:
  - {name: app, transport: %s, ports: [%d], filter: f}
rules:
  - {name: app, action: allow, from: [internal], to: [external], protocols: [app]}
`, transport, port))
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
	t.Cleanup(func() { g.Close() })
	if err := g.sessions.AddFilter("f", f); err != nil {
		t.Fatal(err)
	}
	return g, in, out
}

// TestDivertBadChecksum: a segment of a user-mode connection whose
// checksum is wrong, and that no kernel vouched for (the device has no
// virtio headers), never reaches the inside netstack, which trusts what
// the forward loop hands it, and opens no flow; the same segment with its
// checksum right does.
func TestDivertBadChecksum(t *testing.T) {
	g, in, out := newFilterGateway(t, "tcp", 5201, hookFilter{})
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
		if got := uint64(g.table.Len()); got != tc.want {
			t.Errorf("%s: %d flows, want %d (a bad SYN opens nothing)", tc.name, got, tc.want)
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

// TestDivertDatagramBadChecksum: a datagram of a user-mode UDP flow whose
// checksum is wrong never reaches the flow's datagram filters, whether it
// would open the flow or comes after its first datagram; those with their
// checksum right do, in order.
func TestDivertDatagramBadChecksum(t *testing.T) {
	seen := make(chan string, 8)
	g, in, out := newFilterGateway(t, "udp", 9000, datagramWatcher(func(_ *session.Connection, d *session.Datagram) session.Verdict {
		seen <- string(d.Payload)
		return session.Drop
	}))
	client := netip.MustParseAddrPort("10.0.0.2:40000")
	server := netip.MustParseAddrPort("198.51.100.2:9000")
	batch := newBatch(128)
	for _, tc := range []struct {
		payload string
		bad     bool
	}{
		{"opens, wrong", true},
		{"first", false},
		{"later, wrong", true},
		{"second", false},
	} {
		pkt := lab.UDPPacket(client, server, []byte(tc.payload))
		if tc.bad {
			pkt[len(pkt)-1] ^= 0x10
		}
		in.pkts, in.reads = [][]byte{pkt}, 1
		g.forwardBatch(batch, in, out, true)
	}
	for _, want := range []string{"first", "second"} {
		select {
		case got := <-seen:
			if got != want {
				t.Errorf("the filter saw %q, want %q", got, want)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("the filter never saw %q", want)
		}
	}
	if n := g.table.Stats().Drops[nat.DropChecksum]; n != 1 {
		t.Errorf("bad-checksum drops %d, want 1 (the datagram that would have opened the flow)", n)
	}
}

// datagramWatcher hooks EventUDPDestination, which puts its protocol's
// flows on the user-mode path, and attaches itself to each as a datagram
// filter.
type datagramWatcher func(*session.Connection, *session.Datagram) session.Verdict

func (w datagramWatcher) Init() (session.Hooks, error) {
	return session.Hooks{Events: session.EventUDPDestination}, nil
}
func (w datagramWatcher) AttachToSession(*session.Session) (session.SessionFilter, error) {
	return w, nil
}
func (datagramWatcher) Shutdown() {}
func (datagramWatcher) Detach()   {}
func (w datagramWatcher) HandleEvent(ev *session.Event) error {
	return ev.Conn.AttachDatagramFilter(session.DatagramFilterFunc(w), session.PriorityMiddle)
}
