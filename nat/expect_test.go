package nat_test

import (
	"bytes"
	"errors"
	"net/netip"
	"testing"
	"time"

	"gvisor.dev/gvisor/pkg/tcpip/header"

	"github.com/fwx-dev/fwx/nat"
	"github.com/fwx-dev/fwx/netstack/lab"
)

// denyAll is a policy that allows nothing, so only pinholes open flows.
type denyAll struct{}

func (denyAll) Outbound(nat.Proto, netip.AddrPort, netip.AddrPort) nat.Decision {
	return nat.Decision{Rule: "deny-all"}
}
func (denyAll) Inbound(nat.Proto, netip.AddrPort, netip.AddrPort) nat.Decision {
	return nat.Decision{Rule: "deny-all"}
}

type addrSet []netip.Addr

func (s addrSet) Contains(a netip.Addr) bool {
	for _, b := range s {
		if a == b {
			return true
		}
	}
	return false
}

func TestOutboundExpectation(t *testing.T) {
	pasv := netip.AddrPortFrom(server.Addr(), 30000)
	tests := []struct {
		name     string
		multiple bool
		deadline time.Duration
		at       time.Duration
		uses     int // flows attempted from distinct client ports
		want     int // flows admitted
	}{
		{"once", false, 0, 0, 2, 1},
		{"multiple", true, 0, 0, 3, 3},
		{"before deadline", false, time.Minute, 59 * time.Second, 1, 1},
		{"after deadline", false, time.Minute, 61 * time.Second, 1, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tab, _ := newTable(t, nat.Config{Decider: denyAll{}})
			e := &nat.Expectation{Proto: nat.TCP, Client: client.Addr(), Dst: pasv, Multiple: tt.multiple, Rule: "ftp-data"}
			if tt.deadline > 0 {
				e.Deadline = t0.Add(tt.deadline)
			}
			if err := tab.ExpectOutbound(e, t0); err != nil {
				t.Fatal(err)
			}
			got := 0
			for i := 0; i < tt.uses; i++ {
				src := netip.AddrPortFrom(client.Addr(), uint16(50000+i))
				if v, _ := out(tab, syn(src, pasv), t0.Add(tt.at)); v == nat.Forward {
					got++
				}
			}
			if got != tt.want {
				t.Errorf("%d flows admitted, want %d", got, tt.want)
			}
			// Another client may never use the pinhole.
			if v, _ := out(tab, syn(client2, pasv), t0); v != nat.Reject {
				t.Errorf("other client: verdict %v, want reject", v)
			}
		})
	}
}

func TestCancelExpectation(t *testing.T) {
	tab, _ := newTable(t, nat.Config{Decider: denyAll{}})
	e := &nat.Expectation{Proto: nat.UDP, Client: client.Addr(), Dst: server}
	if err := tab.ExpectOutbound(e, t0); err != nil {
		t.Fatal(err)
	}
	if err := tab.Cancel(e, t0); err != nil {
		t.Fatal(err)
	}
	if err := tab.Cancel(e, t0); !errors.Is(err, nat.ErrPinholeGone) {
		t.Errorf("second cancel: %v, want ErrPinholeGone", err)
	}
	if v, _ := out(tab, lab.UDPPacket(client, server, nil), t0); v != nat.Reject {
		t.Errorf("verdict %v after cancel, want reject", v)
	}
}

func TestInboundExpectation(t *testing.T) {
	tab, rec := newTable(t, nat.Config{Decider: denyAll{}})
	bound, err := tab.ReserveBlock(nat.TCP, ext, 1)
	if err != nil {
		t.Fatal(err)
	}
	dataPort := netip.AddrPortFrom(client.Addr(), 5001)
	var established []*nat.Flow
	e := &nat.Expectation{Proto: nat.TCP, External: bound, Remotes: addrSet{server.Addr()},
		Rule: "ftp-data", OnFlow: func(f *nat.Flow) { established = append(established, f) }}
	if err := tab.ExpectInbound(e); err != nil {
		t.Fatal(err)
	}
	from := netip.AddrPortFrom(server.Addr(), 20)
	// The client address is not known yet: refused.
	if v, _ := in(tab, syn(from, bound), t0); v != nat.Drop {
		t.Fatalf("before SetExpectationInside: verdict %v, want drop", v)
	}
	if err := tab.SetExpectationInside(e, dataPort); err != nil {
		t.Fatal(err)
	}
	// A third party is refused by the remote filter.
	if v, _ := in(tab, syn(netip.AddrPortFrom(server2.Addr(), 20), bound), t0); v != nat.Drop {
		t.Errorf("third party: verdict %v, want drop", v)
	}
	pkt := syn(from, bound)
	v, p := in(tab, pkt, t0)
	mustVerdict(t, v, nat.Forward, pkt)
	if p.Dst != dataPort || len(established) != 1 {
		t.Fatalf("forwarded to %v with %d established events; want %v and 1", p.Dst, len(established), dataPort)
	}
	// Single use: a second connection is refused.
	if v, _ := in(tab, syn(netip.AddrPortFrom(server.Addr(), 21), bound), t0); v != nat.Drop {
		t.Errorf("second connection: verdict %v, want drop", v)
	}
	// The client's answer goes back out from the bound port.
	reply := lab.TCPPacket(dataPort, from, header.TCPFlagSyn|header.TCPFlagAck, 1, 1001, nil)
	v, r := out(tab, reply, t0)
	mustVerdict(t, v, nat.Forward, reply)
	if r.Src != bound {
		t.Errorf("reply from %v, want the bound %v", r.Src, bound)
	}
	// Kill ends the flow and frees the port.
	tab.Kill(e, t0)
	if tab.Len() != 0 || len(rec.ended) != 1 {
		t.Errorf("after kill: %d flows, %d ended; want 0 and 1", tab.Len(), len(rec.ended))
	}
	if err := tab.ReservePort(nat.TCP, bound); err != nil {
		t.Errorf("bound port not freed by kill: %v", err)
	}
}

func TestInboundUDPBidirectional(t *testing.T) {
	for _, bidi := range []bool{false, true} {
		tab, _ := newTable(t, nat.Config{Decider: denyAll{}})
		bound, _ := tab.ReserveBlock(nat.UDP, ext, 2)
		e := &nat.Expectation{Proto: nat.UDP, External: bound, Inside: client, Bidirectional: bidi}
		if err := tab.ExpectInbound(e); err != nil {
			t.Fatal(err)
		}
		if v, _ := in(tab, lab.UDPPacket(server, bound, nil), t0); v != nat.Forward {
			t.Fatalf("inbound datagram: verdict %v", v)
		}
		v, _ := out(tab, lab.UDPPacket(client, server, nil), t0)
		if want := map[bool]nat.Verdict{false: nat.Drop, true: nat.Forward}[bidi]; v != want {
			t.Errorf("bidirectional=%v: answer verdict %v, want %v", bidi, v, want)
		}
	}
}

// TestBindIsInsideMapping: a UDP bind is its inside endpoint's mapping
// (RTSP's and SIP's RTP/RTCP pairs): what the endpoint sends where a
// pinhole lets it leaves from the bound port, before the peer sent
// anything, whether the inside endpoint was known at the bind or set
// later; killing the bind ends those flows too. An endpoint that already
// has a mapping keeps it.
func TestBindIsInsideMapping(t *testing.T) {
	for _, later := range []bool{false, true} {
		tab, rec := newTable(t, nat.Config{Decider: denyAll{}})
		bound, _ := tab.ReserveBlock(nat.UDP, ext, 2)
		e := &nat.Expectation{Proto: nat.UDP, External: bound, Remotes: addrSet{server.Addr()}}
		if !later {
			e.Inside = client
		}
		if err := tab.ExpectInbound(e); err != nil {
			t.Fatal(err)
		}
		if later {
			if err := tab.SetExpectationInside(e, client); err != nil {
				t.Fatal(err)
			}
		}
		// Without a pinhole the policy still decides.
		if v, _ := out(tab, lab.UDPPacket(client, server, nil), t0); v != nat.Reject {
			t.Fatalf("later=%v: no pinhole: verdict %v, want reject", later, v)
		}
		grant := &nat.Expectation{Proto: nat.UDP, Client: client.Addr(), Dst: server}
		if err := tab.ExpectOutbound(grant, t0); err != nil {
			t.Fatal(err)
		}
		pkt := lab.UDPPacket(client, server, nil)
		v, p := out(tab, pkt, t0)
		mustVerdict(t, v, nat.Forward, pkt)
		if p.Src != bound {
			t.Errorf("later=%v: sent from %v, want the bound %v", later, p.Src, bound)
		}
		// The peer's answer comes back on that flow.
		if v, r := in(tab, lab.UDPPacket(server, bound, nil), t0); v != nat.Forward || r.Dst != client {
			t.Errorf("later=%v: answer: verdict %v to %v, want forward to %v", later, v, r.Dst, client)
		}
		tab.Kill(e, t0)
		if tab.Len() != 0 || len(rec.ended) != 1 {
			t.Errorf("later=%v: after kill: %d flows, %d ended; want 0 and 1", later, tab.Len(), len(rec.ended))
		}
		if err := tab.ReservePort(nat.UDP, bound); err != nil {
			t.Errorf("later=%v: bound port not freed: %v", later, err)
		}
	}

	// An endpoint with a mapping of its own keeps it.
	tab, _ := newTable(t, nat.Config{Decider: denyAll{}})
	first := &nat.Expectation{Proto: nat.UDP, Client: client.Addr(), Dst: server2}
	if err := tab.ExpectOutbound(first, t0); err != nil {
		t.Fatal(err)
	}
	_, p := out(tab, lab.UDPPacket(client, server2, nil), t0)
	bound, _ := tab.ReserveBlock(nat.UDP, ext, 2)
	if err := tab.ExpectInbound(&nat.Expectation{Proto: nat.UDP, External: bound, Inside: client}); err != nil {
		t.Fatal(err)
	}
	if err := tab.ExpectOutbound(&nat.Expectation{Proto: nat.UDP, Client: client.Addr(), Dst: server}, t0); err != nil {
		t.Fatal(err)
	}
	if _, q := out(tab, lab.UDPPacket(client, server, nil), t0); q.Src != p.Src {
		t.Errorf("sent from %v, want the endpoint's own mapping %v", q.Src, p.Src)
	}
}

// TestRedirect checks RedirectConnections' rewrite: the client talks to an
// address of fwx's inside, the flow goes to the connect address from the
// external address, and replies come back from the inside address.
func TestRedirect(t *testing.T) {
	tab, _ := newTable(t, nat.Config{Decider: denyAll{}})
	internal := netip.AddrPortFrom(inner, 60000)
	e := &nat.Expectation{Proto: nat.TCP, Client: client.Addr(), Dst: internal, Redirect: server}
	if err := tab.ExpectOutbound(e, t0); err != nil {
		t.Fatal(err)
	}
	pkt := syn(client, internal)
	v, p := out(tab, pkt, t0)
	mustVerdict(t, v, nat.Forward, pkt)
	if p.Dst != server || p.Src.Addr() != ext {
		t.Fatalf("redirected %v -> %v, want %v -> %v", p.Src, p.Dst, ext, server)
	}
	reply := lab.TCPPacket(server, p.Src, header.TCPFlagSyn|header.TCPFlagAck, 1, 1001, nil)
	v, r := in(tab, reply, t0)
	mustVerdict(t, v, nat.Forward, reply)
	if r.Src != internal || r.Dst != client {
		t.Errorf("reply %v -> %v, want %v -> %v", r.Src, r.Dst, internal, client)
	}
	// Without the pinhole the inside address is fwx's own.
	if v, _ := out(tab, syn(client2, internal), t0); v != nat.Local {
		t.Errorf("other client to the inside address: %v, want local", v)
	}
}

func TestUserModeDivert(t *testing.T) {
	tab, _ := newTable(t, nat.Config{Decider: userMode{}})
	pkt := syn(client, server)
	orig := string(pkt)
	if v, _ := out(tab, pkt, t0); v != nat.Divert || string(pkt) != orig {
		t.Fatalf("verdict %v, packet changed %v; want divert, unchanged", v, string(pkt) != orig)
	}
	// The outside stack answers from the flow's external endpoint.
	e := tab.Flows()[0].External()
	reply := lab.TCPPacket(server, e, header.TCPFlagSyn|header.TCPFlagAck, 1, 1001, nil)
	if v, _ := in(tab, reply, t0); v != nat.Divert {
		t.Errorf("reply verdict %v, want divert", v)
	}
}

// TestUserModeICMPErrors: an ICMP error about a user-mode TCP flow goes
// to the netstack that holds its connection, one about a user-mode UDP
// flow is translated as on the fast path (the user-mode path sends
// datagrams with the flow's translation, and has no socket to hear it).
func TestUserModeICMPErrors(t *testing.T) {
	for _, tt := range []struct {
		name string
		pkt  []byte
		want nat.Verdict
	}{
		{"tcp", syn(client, server), nat.Divert},
		{"udp", lab.UDPPacket(client, server, []byte("request")), nat.Forward},
	} {
		t.Run(tt.name, func(t *testing.T) {
			tab, _ := newTable(t, nat.Config{Decider: userMode{}})
			if v, _ := out(tab, bytes.Clone(tt.pkt), t0); v != nat.Divert {
				t.Fatalf("verdict %v, want divert", v)
			}
			f := tab.Flows()[0]
			sent := nat.Parse(bytes.Clone(tt.pkt))
			sent.SetSource(f.External()) // as the user-mode path sends it
			buf := make([]byte, nat.MaxReplyLen)
			n := nat.BuildICMPError(buf, &sent, server.Addr(), nat.PortUnreachable)
			v, p := in(tab, buf[:n], t0)
			if v != tt.want {
				t.Fatalf("error from the outside: verdict %v, want %v", v, tt.want)
			}
			if v == nat.Forward && (p.Dst.Addr() != client.Addr() || p.Quoted().Src != client) {
				t.Errorf("error to %v quoting %v, want to the client quoting %v", p.Dst.Addr(), p.Quoted().Src, client)
			}
		})
	}
	t.Run("udp, from the inside", func(t *testing.T) {
		tab, _ := newTable(t, nat.Config{Decider: userMode{}})
		if v, _ := out(tab, lab.UDPPacket(client, server, nil), t0); v != nat.Divert {
			t.Fatalf("verdict %v, want divert", v)
		}
		e := tab.Flows()[0].External()
		// The server's answer, as the user-mode path delivers it: the
		// client's port is closed.
		answer := nat.Parse(lab.UDPPacket(server, client, []byte("answer")))
		buf := make([]byte, nat.MaxReplyLen)
		n := nat.BuildICMPError(buf, &answer, client.Addr(), nat.PortUnreachable)
		v, p := out(tab, buf[:n], t0)
		if v != nat.Forward || p.Src.Addr() != e.Addr() || p.Quoted().Dst != e {
			t.Errorf("verdict %v, error from %v quoting %v; want forward, from fwx quoting %v", v, p.Src.Addr(), p.Quoted().Dst, e)
		}
	})
}

type userMode struct{ denyAll }

func (userMode) Outbound(nat.Proto, netip.AddrPort, netip.AddrPort) nat.Decision {
	return nat.Decision{Allow: true, Rule: "ftp", UserMode: true}
}

// TestUnarmedExpectation: an unarmed pinhole lets nothing through and
// drops what would open a flow through it without a reply or a log record
// (its sender retransmits); armed, it admits as usual; cancelled unarmed,
// it refuses as if it had never been.
func TestUnarmedExpectation(t *testing.T) {
	t.Run("inbound", func(t *testing.T) {
		tab, rec := newTable(t, nat.Config{Decider: denyAll{}})
		bound, _ := tab.ReserveBlock(nat.TCP, ext, 1)
		e := &nat.Expectation{Proto: nat.TCP, External: bound, Inside: netip.AddrPortFrom(client.Addr(), 5001),
			Remotes: addrSet{server.Addr()}, Unarmed: true}
		if err := tab.ExpectInbound(e); err != nil {
			t.Fatal(err)
		}
		from := netip.AddrPortFrom(server.Addr(), 20)
		if v, _ := in(tab, syn(from, bound), t0); v != nat.Drop || tab.Len() != 0 || len(rec.denied) != 0 {
			t.Fatalf("unarmed: verdict %v, %d flows, %d denials; want drop, 0, 0", v, tab.Len(), len(rec.denied))
		}
		if n := tab.Stats().Drops[nat.DropUnarmed]; n != 1 {
			t.Errorf("%d drops counted as unarmed, want 1", n)
		}
		// A third party is refused (and logged) as before.
		if v, _ := in(tab, syn(netip.AddrPortFrom(server2.Addr(), 20), bound), t0); v != nat.Drop || len(rec.denied) != 1 {
			t.Errorf("third party: verdict %v, %d denials; want drop, 1", v, len(rec.denied))
		}
		if err := tab.Arm(e, t0); err != nil {
			t.Fatal(err)
		}
		pkt := syn(from, bound)
		v, _ := in(tab, pkt, t0)
		mustVerdict(t, v, nat.Forward, pkt)
		if err := tab.Arm(e, t0); !errors.Is(err, nat.ErrPinholeGone) {
			t.Errorf("arming a used pinhole: %v, want ErrPinholeGone", err)
		}
	})
	t.Run("outbound", func(t *testing.T) {
		tab, rec := newTable(t, nat.Config{Decider: denyAll{}})
		e := &nat.Expectation{Proto: nat.TCP, Client: client.Addr(), Dst: server, Unarmed: true}
		if err := tab.ExpectOutbound(e, t0); err != nil {
			t.Fatal(err)
		}
		if v, _ := out(tab, syn(client, server), t0); v != nat.Drop || len(rec.denied) != 0 {
			t.Fatalf("unarmed: verdict %v, %d denials; want drop, 0", v, len(rec.denied))
		}
		if err := tab.Arm(e, t0); err != nil {
			t.Fatal(err)
		}
		if v, _ := out(tab, syn(client, server), t0); v != nat.Forward {
			t.Errorf("armed: verdict %v, want forward", v)
		}
	})
	t.Run("cancelled", func(t *testing.T) {
		tab, rec := newTable(t, nat.Config{Decider: denyAll{}})
		bound, _ := tab.ReserveBlock(nat.TCP, ext, 1)
		e := &nat.Expectation{Proto: nat.TCP, External: bound, Inside: netip.AddrPortFrom(client.Addr(), 5001), Unarmed: true}
		if err := tab.ExpectInbound(e); err != nil {
			t.Fatal(err)
		}
		tab.Kill(e, t0)
		if err := tab.Arm(e, t0); !errors.Is(err, nat.ErrPinholeGone) {
			t.Errorf("arming a killed pinhole: %v, want ErrPinholeGone", err)
		}
		if v, _ := in(tab, syn(netip.AddrPortFrom(server.Addr(), 20), bound), t0); v != nat.Drop || len(rec.denied) != 1 {
			t.Errorf("after kill: verdict %v, %d denials; want drop, 1", v, len(rec.denied))
		}
	})
}

// TestOnLapse: OnLapse is called once for a pinhole that lapsed unused,
// whoever notices (the sweep, or a Cancel or Kill after the deadline), and
// never for one used or withdrawn in time.
func TestOnLapse(t *testing.T) {
	dl := t0.Add(time.Minute)
	after := dl.Add(time.Second)
	for _, tt := range []struct {
		name    string
		unarmed bool
		run     func(tab *nat.Table, e *nat.Expectation)
		want    int
	}{
		{"swept", false, func(tab *nat.Table, e *nat.Expectation) { tab.Expire(after); tab.Expire(after) }, 1},
		{"swept early", false, func(tab *nat.Table, e *nat.Expectation) { tab.Expire(t0) }, 0},
		{"cancelled late", false, func(tab *nat.Table, e *nat.Expectation) { tab.Cancel(e, after); tab.Expire(after) }, 1},
		{"killed late", false, func(tab *nat.Table, e *nat.Expectation) { tab.Kill(e, after); tab.Expire(after) }, 1},
		{"cancelled in time", false, func(tab *nat.Table, e *nat.Expectation) { tab.Cancel(e, t0); tab.Expire(after); tab.Kill(e, after) }, 0},
		{"used", false, func(tab *nat.Table, e *nat.Expectation) { out(tab, syn(client, server), t0); tab.Expire(after) }, 0},
		{"unarmed", true, func(tab *nat.Table, e *nat.Expectation) { tab.Expire(after) }, 1},
	} {
		t.Run(tt.name, func(t *testing.T) {
			tab, _ := newTable(t, nat.Config{Decider: denyAll{}})
			calls := 0
			e := &nat.Expectation{Proto: nat.TCP, Client: client.Addr(), Dst: server, Deadline: dl, Unarmed: tt.unarmed,
				OnLapse: func() { calls++ }}
			if err := tab.ExpectOutbound(e, t0); err != nil {
				t.Fatal(err)
			}
			tt.run(tab, e)
			if calls != tt.want {
				t.Errorf("OnLapse called %d times, want %d", calls, tt.want)
			}
		})
	}
}
