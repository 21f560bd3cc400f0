package nat_test

import (
	"bytes"
	"math/rand/v2"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/checksum"
	"gvisor.dev/gvisor/pkg/tcpip/header"

	"github.com/fwx-dev/fwx/nat"
	"github.com/fwx-dev/fwx/netstack/lab"
)

var (
	ext     = netip.MustParseAddr("198.51.100.1")
	inner   = netip.MustParseAddr("10.0.0.1")
	client  = netip.MustParseAddrPort("10.0.0.2:40000")
	client2 = netip.MustParseAddrPort("10.0.0.3:40000")
	server  = netip.MustParseAddrPort("203.0.113.5:80")
	server2 = netip.MustParseAddrPort("203.0.113.6:80")
	t0      = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
)

// recorder is an Observer that keeps what it is told.
type recorder struct {
	mu      sync.Mutex
	started []*nat.Flow
	denied  []nat.Denial
	ended   []*nat.Flow
	endedAt []time.Time
}

func (r *recorder) FlowStarted(f *nat.Flow) {
	r.mu.Lock()
	r.started = append(r.started, f)
	r.mu.Unlock()
}
func (r *recorder) FlowDenied(d nat.Denial) {
	r.mu.Lock()
	r.denied = append(r.denied, d)
	r.mu.Unlock()
}
func (r *recorder) FlowEnded(f *nat.Flow, at time.Time) {
	r.mu.Lock()
	r.ended = append(r.ended, f)
	r.endedAt = append(r.endedAt, at)
	r.mu.Unlock()
}

func newTable(tb testing.TB, cfg nat.Config) (*nat.Table, *recorder) {
	tb.Helper()
	rec := &recorder{}
	if cfg.External == nil {
		cfg.External = []netip.Addr{ext, ext6}
	}
	cfg.Internal = []netip.Addr{inner, inner6}
	if cfg.Observer == nil {
		cfg.Observer = rec
	}
	cfg.Rand = rand.New(rand.NewPCG(7, 7))
	t, err := nat.New(cfg)
	if err != nil {
		tb.Fatal(err)
	}
	return t, rec
}

// out sends pkt through the table from the inside and returns the verdict
// and the parsed result.
func out(t *nat.Table, pkt []byte, now time.Time) (nat.Verdict, nat.Packet) {
	p := nat.Parse(pkt)
	v := t.Outbound(&p, now)
	return v, p
}

func in(t *nat.Table, pkt []byte, now time.Time) (nat.Verdict, nat.Packet) {
	p := nat.Parse(pkt)
	v := t.Inbound(&p, now)
	return v, p
}

func mustVerdict(tb testing.TB, got, want nat.Verdict, pkt []byte) {
	tb.Helper()
	if got != want {
		tb.Fatalf("verdict %v, want %v for %s", got, want, lab.PacketString(pkt))
	}
	if got == nat.Forward || got == nat.Hairpin {
		if err := lab.VerifyChecksums(pkt); err != nil {
			tb.Fatalf("%v in %s", err, lab.PacketString(pkt))
		}
	}
}

func syn(src, dst netip.AddrPort) []byte {
	return lab.TCPPacket(src, dst, header.TCPFlagSyn, 1000, 0, nil)
}

func TestOutboundRewritesSource(t *testing.T) {
	tests := []struct {
		name  string
		pkt   []byte
		reply func(from netip.AddrPort) []byte
	}{
		{"udp", lab.UDPPacket(client, server, []byte("hello")),
			func(to netip.AddrPort) []byte { return lab.UDPPacket(server, to, []byte("world")) }},
		{"tcp", syn(client, server),
			func(to netip.AddrPort) []byte {
				return lab.TCPPacket(server, to, header.TCPFlagSyn|header.TCPFlagAck, 5000, 1001, nil)
			}},
		{"icmp", lab.ICMPEcho(client.Addr(), server.Addr(), header.ICMPv4Echo, 777, 1),
			func(to netip.AddrPort) []byte {
				return lab.ICMPEcho(server.Addr(), to.Addr(), header.ICMPv4EchoReply, to.Port(), 1)
			}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tab, rec := newTable(t, nat.Config{})
			ttl := tt.pkt[8]
			v, p := out(tab, tt.pkt, t0)
			mustVerdict(t, v, nat.Forward, tt.pkt)
			if p.Src.Addr() != ext {
				t.Errorf("source %v, want external address %v", p.Src, ext)
			}
			if tt.pkt[8] != ttl-1 {
				t.Errorf("TTL %d, want %d", tt.pkt[8], ttl-1)
			}
			if len(rec.started) != 1 {
				t.Fatalf("%d flows started, want 1", len(rec.started))
			}
			reply := tt.reply(p.Src)
			v, r := in(tab, reply, t0.Add(time.Second))
			mustVerdict(t, v, nat.Forward, reply)
			wantDst := client
			if tt.name == "icmp" {
				wantDst = netip.AddrPortFrom(client.Addr(), 777)
			}
			if r.Dst != wantDst {
				t.Errorf("reply to %v, want %v", r.Dst, wantDst)
			}
		})
	}
}

func TestEndpointIndependentMapping(t *testing.T) {
	tab, _ := newTable(t, nat.Config{})
	_, p1 := out(tab, lab.UDPPacket(client, server, nil), t0)
	_, p2 := out(tab, lab.UDPPacket(client, server2, nil), t0)
	if p1.Src != p2.Src {
		t.Fatalf("mapping differs per destination: %v and %v", p1.Src, p2.Src)
	}
	if p1.Src.Port() != client.Port() {
		t.Errorf("port %d not preserved (want %d)", p1.Src.Port(), client.Port())
	}
	if tab.Len() != 2 {
		t.Errorf("%d flows, want 2", tab.Len())
	}
}

func TestPortCollisionKeepsParity(t *testing.T) {
	for _, port := range []uint16{40000, 40001} {
		tab, _ := newTable(t, nat.Config{})
		a := netip.AddrPortFrom(client.Addr(), port)
		b := netip.AddrPortFrom(client2.Addr(), port)
		_, pa := out(tab, lab.UDPPacket(a, server, nil), t0)
		_, pb := out(tab, lab.UDPPacket(b, server, nil), t0)
		if pa.Src.Port() != port {
			t.Errorf("first mapping %v: port not preserved", pa.Src)
		}
		if pb.Src.Port() == port || pb.Src.Port()%2 != port%2 || pb.Src.Port() < 1024 {
			t.Errorf("second mapping %v for inside port %d: want another port of the same parity above 1023", pb.Src, port)
		}
	}
}

func TestFiltering(t *testing.T) {
	otherPort := netip.AddrPortFrom(server.Addr(), 81)
	third := netip.MustParseAddrPort("203.0.113.77:53")
	tests := []struct {
		name      string
		filtering nat.Filtering
		from      netip.AddrPort
		// others: the client also talks to a third party, so the
		// mapping filters by the addresses of several flows.
		others bool
		// after is how long after the flows the packet comes: past 5
		// minutes their timers have run out (unswept).
		after time.Duration
		admit bool
	}{
		{"EIF third party", nat.EndpointIndependent, server2, false, 0, true},
		{"EIF after the timer ran out", nat.EndpointIndependent, server2, false, 6 * time.Minute, false},
		{"ADF same address other port", nat.AddressDependent, otherPort, false, 0, true},
		{"ADF third party", nat.AddressDependent, server2, false, 0, false},
		{"ADF same address after the timer ran out", nat.AddressDependent, otherPort, false, 6 * time.Minute, false},
		{"ADF several flows, same address other port", nat.AddressDependent, otherPort, true, 0, true},
		{"ADF several flows, third party", nat.AddressDependent, server2, true, 0, false},
		{"APDF same address other port", nat.AddressAndPortDependent, otherPort, false, 0, false},
		{"APDF same endpoint", nat.AddressAndPortDependent, server, false, 0, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tab, rec := newTable(t, nat.Config{Filtering: tt.filtering})
			_, p := out(tab, lab.UDPPacket(client, server, nil), t0)
			if tt.others {
				out(tab, lab.UDPPacket(client, third, nil), t0)
			}
			pkt := lab.UDPPacket(tt.from, p.Src, []byte("x"))
			v, r := in(tab, pkt, t0.Add(tt.after))
			if admit := v == nat.Forward; admit != tt.admit {
				t.Fatalf("verdict %v, want admitted=%v", v, tt.admit)
			}
			if tt.admit && r.Dst != client {
				t.Errorf("delivered to %v, want %v", r.Dst, client)
			}
			if !tt.admit && (len(rec.denied) != 1 || rec.denied[0].Origin != nat.Inbound) {
				t.Errorf("denials %+v, want one inbound", rec.denied)
			}
		})
	}
}

func TestUnsolicitedInboundIsDropped(t *testing.T) {
	tab, rec := newTable(t, nat.Config{Filtering: nat.EndpointIndependent})
	for _, pkt := range [][]byte{
		lab.UDPPacket(server, netip.AddrPortFrom(ext, 5000), nil),
		syn(server, netip.AddrPortFrom(ext, 22)),
		lab.ICMPEcho(server.Addr(), ext, header.ICMPv4EchoReply, 9, 1),
	} {
		if v, _ := in(tab, pkt, t0); v != nat.Drop {
			t.Errorf("%s: verdict %v, want drop", lab.PacketString(pkt), v)
		}
	}
	if len(rec.denied) != 2 {
		t.Errorf("%d denials logged, want 2 (UDP and SYN; a stray echo reply is not a flow)", len(rec.denied))
	}
}

// TestOnlySYNOpensTCP: a TCP segment other than a SYN opens no flow; it
// belongs to a connection fwx does not know, and is answered with a RST
// (a RST itself is dropped).
func TestOnlySYNOpensTCP(t *testing.T) {
	tab, _ := newTable(t, nat.Config{})
	for _, c := range []struct {
		flags header.TCPFlags
		want  nat.Verdict
	}{
		{header.TCPFlagAck, nat.Reset},
		{header.TCPFlagSyn | header.TCPFlagAck, nat.Reset},
		{header.TCPFlagRst, nat.Drop},
		{header.TCPFlagFin | header.TCPFlagAck, nat.Reset},
	} {
		if v, _ := out(tab, lab.TCPPacket(client, server, c.flags, 1, 1, nil), t0); v != c.want {
			t.Errorf("flags %v: verdict %v, want %v", c.flags, v, c.want)
		}
		if v, _ := in(tab, lab.TCPPacket(server, netip.AddrPortFrom(ext, 40000), c.flags, 1, 1, nil), t0); v != c.want {
			t.Errorf("flags %v from the outside: verdict %v, want %v", c.flags, v, c.want)
		}
	}
	if tab.Len() != 0 {
		t.Errorf("%d flows, want none", tab.Len())
	}
}

// TestTimers checks each flow timer on the caller's clock: a reply one
// second before the timer runs out gets through, one second after it does
// not, and the end is reported once.
func TestTimers(t *testing.T) {
	to := nat.Timeouts{UDP: 3 * time.Minute, TCPSynSent: 100 * time.Second, TCPSynRecv: 50 * time.Second,
		TCPEstablished: 2*time.Hour + 5*time.Minute, TCPTransitory: 5 * time.Minute, TCPRST: 6 * time.Minute,
		ICMP: 70 * time.Second}
	ack := header.TCPFlagAck
	// handshake opens a TCP flow and takes it as far as steps say:
	// 1 = SYN, 2 = + SYN-ACK, 3 = + the client's ACK.
	handshake := func(tab *nat.Table, steps int) netip.AddrPort {
		_, p := out(tab, syn(client, server), t0)
		if steps > 1 {
			in(tab, lab.TCPPacket(server, p.Src, header.TCPFlagSyn|ack, 1, 1001, nil), t0)
		}
		if steps > 2 {
			out(tab, lab.TCPPacket(client, server, ack, 1001, 2, nil), t0)
		}
		return p.Src
	}
	tests := []struct {
		name    string
		timeout time.Duration
		open    func(tab *nat.Table) netip.AddrPort // returns the external endpoint
		reply   func(ext netip.AddrPort) []byte
	}{
		{"udp", to.UDP, func(tab *nat.Table) netip.AddrPort {
			_, p := out(tab, lab.UDPPacket(client, server, nil), t0)
			return p.Src
		}, func(e netip.AddrPort) []byte { return lab.UDPPacket(server, e, nil) }},
		{"icmp", to.ICMP, func(tab *nat.Table) netip.AddrPort {
			_, p := out(tab, lab.ICMPEcho(client.Addr(), server.Addr(), header.ICMPv4Echo, 5, 1), t0)
			return p.Src
		}, func(e netip.AddrPort) []byte {
			return lab.ICMPEcho(server.Addr(), e.Addr(), header.ICMPv4EchoReply, e.Port(), 2)
		}},
		{"tcp syn-sent", to.TCPSynSent, func(tab *nat.Table) netip.AddrPort { return handshake(tab, 1) },
			func(e netip.AddrPort) []byte { return lab.TCPPacket(server, e, header.TCPFlagSyn|ack, 1, 1001, nil) }},
		{"tcp syn-received", to.TCPSynRecv, func(tab *nat.Table) netip.AddrPort { return handshake(tab, 2) },
			func(e netip.AddrPort) []byte { return lab.TCPPacket(server, e, header.TCPFlagSyn|ack, 1, 1001, nil) }},
		{"tcp established", to.TCPEstablished, func(tab *nat.Table) netip.AddrPort { return handshake(tab, 3) },
			func(e netip.AddrPort) []byte { return lab.TCPPacket(server, e, ack, 2, 1001, []byte("x")) }},
		{"tcp closing", to.TCPTransitory, func(tab *nat.Table) netip.AddrPort {
			e := handshake(tab, 3)
			out(tab, lab.TCPPacket(client, server, header.TCPFlagFin|ack, 1001, 2, nil), t0)
			return e
		}, func(e netip.AddrPort) []byte { return lab.TCPPacket(server, e, ack, 2, 1002, []byte("x")) }},
		{"tcp time-wait", to.TCPTransitory, func(tab *nat.Table) netip.AddrPort {
			e := handshake(tab, 3)
			out(tab, lab.TCPPacket(client, server, header.TCPFlagFin|ack, 1001, 2, nil), t0)
			in(tab, lab.TCPPacket(server, e, header.TCPFlagFin|ack, 2, 1002, nil), t0)
			out(tab, lab.TCPPacket(client, server, ack, 1002, 3, nil), t0)
			return e
		}, func(e netip.AddrPort) []byte { return lab.TCPPacket(server, e, header.TCPFlagFin|ack, 2, 1002, nil) }},
		{"tcp after rst", to.TCPRST, func(tab *nat.Table) netip.AddrPort {
			e := handshake(tab, 2)
			out(tab, lab.TCPPacket(client, server, header.TCPFlagRst, 1001, 0, nil), t0)
			return e
		}, func(e netip.AddrPort) []byte { return lab.TCPPacket(server, e, ack, 2, 1001, nil) }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for _, c := range []struct {
				after time.Duration
				want  nat.Verdict
			}{{tt.timeout - time.Second, nat.Forward}, {tt.timeout + time.Second, nat.Drop}} {
				tab, rec := newTable(t, nat.Config{Timeouts: to})
				e := tt.open(tab)
				pkt := tt.reply(e)
				want := c.want
				if want == nat.Drop && strings.HasPrefix(tt.name, "tcp") {
					want = nat.Reset // a segment of no connection fwx knows
				}
				if v, _ := in(tab, pkt, t0.Add(c.after)); v != want {
					t.Errorf("after %v: verdict %v, want %v", c.after, v, want)
				}
				if c.want == nat.Drop && (len(rec.ended) != 1 || tab.Len() != 0) {
					t.Errorf("after expiry: %d flows ended, %d live; want 1 and 0", len(rec.ended), tab.Len())
				}
			}
		})
	}
}

func TestExpireFreesMappings(t *testing.T) {
	tab, rec := newTable(t, nat.Config{})
	_, p := out(tab, lab.UDPPacket(client, server, nil), t0)
	out(tab, lab.UDPPacket(client, server2, nil), t0)
	// Another client wants the same port while the mapping lives.
	_, q := out(tab, lab.UDPPacket(client2, server, nil), t0)
	if q.Src.Port() == p.Src.Port() {
		t.Fatal("two live mappings share a port")
	}
	if n := tab.Expire(t0.Add(4 * time.Minute)); n != 0 {
		t.Fatalf("expired %d flows early", n)
	}
	if n := tab.Expire(t0.Add(6 * time.Minute)); n != 3 || len(rec.ended) != 3 {
		t.Fatalf("expired %d flows (%d reported), want 3", n, len(rec.ended))
	}
	// The port is free again: the other client now gets it preserved.
	_, q = out(tab, lab.UDPPacket(client2, server, nil), t0.Add(7*time.Minute))
	if q.Src.Port() != client2.Port() {
		t.Errorf("port %d not reused after expiry", client2.Port())
	}
}

func TestHairpin(t *testing.T) {
	for _, filtering := range []nat.Filtering{nat.EndpointIndependent, nat.AddressDependent} {
		t.Run(filtering.String(), func(t *testing.T) {
			tab, _ := newTable(t, nat.Config{Filtering: filtering})
			// Both clients talk to the outside first, creating their mappings.
			_, pa := out(tab, lab.UDPPacket(client, server, nil), t0)
			_, pb := out(tab, lab.UDPPacket(client2, server, nil), t0)
			if filtering == nat.AddressDependent {
				// b's mapping admits only addresses b sent to: b punches
				// a hole first, and a's mapping filters that packet out.
				if v, _ := out(tab, lab.UDPPacket(client2, pa.Src, nil), t0); v != nat.Drop {
					t.Fatalf("first packet into a's mapping: verdict %v, want drop", v)
				}
			}
			pkt := lab.UDPPacket(client, pb.Src, []byte("to b"))
			v, r := out(tab, pkt, t0)
			mustVerdict(t, v, nat.Hairpin, pkt)
			// The packet arrives from a's external endpoint (RFC 4787 REQ-9a).
			if r.Src != pa.Src || r.Dst != client2 {
				t.Errorf("hairpinned %v -> %v, want %v -> %v", r.Src, r.Dst, pa.Src, client2)
			}
			back := lab.UDPPacket(client2, pa.Src, []byte("to a"))
			v, r = out(tab, back, t0)
			mustVerdict(t, v, nat.Hairpin, back)
			if r.Src != pb.Src || r.Dst != client {
				t.Errorf("hairpinned %v -> %v, want %v -> %v", r.Src, r.Dst, pb.Src, client)
			}
		})
	}
}

type publishPolicy struct{}

func (publishPolicy) Outbound(nat.Proto, netip.AddrPort, netip.AddrPort) nat.Decision {
	return nat.Decision{Allow: true, Rule: "out"}
}
func (publishPolicy) Inbound(_ nat.Proto, src, _ netip.AddrPort) nat.Decision {
	return nat.Decision{Allow: src.Addr() != server2.Addr(), Rule: "www"}
}

func TestPublish(t *testing.T) {
	tab, rec := newTable(t, nat.Config{Decider: publishPolicy{}})
	inside := netip.MustParseAddrPort("10.0.0.5:80")
	public := netip.AddrPortFrom(ext, 8080)
	if err := tab.Publish(nat.TCP, public, inside); err != nil {
		t.Fatal(err)
	}
	if err := tab.Publish(nat.TCP, public, netip.MustParseAddrPort("10.0.0.6:80")); err == nil {
		t.Error("second publication of the same port succeeded")
	}
	pkt := syn(server, public)
	v, p := in(tab, pkt, t0)
	mustVerdict(t, v, nat.Forward, pkt)
	if p.Dst != inside {
		t.Fatalf("published SYN to %v, want %v", p.Dst, inside)
	}
	replyPkt := lab.TCPPacket(inside, server, header.TCPFlagSyn|header.TCPFlagAck, 9, 1001, nil)
	v, r := out(tab, replyPkt, t0)
	mustVerdict(t, v, nat.Forward, replyPkt)
	if r.Src != public {
		t.Errorf("server reply from %v, want %v", r.Src, public)
	}
	if v, _ := in(tab, syn(server2, public), t0); v != nat.Drop {
		t.Errorf("source the policy refuses: verdict %v, want drop", v)
	}
	if len(rec.started) != 1 || rec.started[0].Origin() != nat.Inbound || len(rec.denied) != 1 {
		t.Errorf("started %d (want 1 inbound), denied %d (want 1)", len(rec.started), len(rec.denied))
	}
}

// TestICMPErrorTranslation checks RFC 5508 REQ-4/5: an error from the
// outside about a translated packet reaches the inside host with the quoted
// header reverted and every checksum correct.
func TestICMPErrorTranslation(t *testing.T) {
	tests := []struct {
		name string
		pkt  []byte
	}{
		{"udp", lab.UDPPacket(client, server, []byte("payload"))},
		{"tcp", syn(client, server)},
		{"echo", lab.ICMPEcho(client.Addr(), server.Addr(), header.ICMPv4Echo, 4242, 1)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tab, _ := newTable(t, nat.Config{})
			orig := nat.Parse(bytes.Clone(tt.pkt))
			v, sent := out(tab, tt.pkt, t0)
			mustVerdict(t, v, nat.Forward, tt.pkt)
			// The server answers with port unreachable, from a router
			// on the way: its source is not the flow's remote.
			buf := make([]byte, nat.MaxReplyLen)
			n := nat.BuildICMPError(buf, &sent, netip.AddrFrom4([4]byte{203, 0, 113, 254}), nat.PortUnreachable)
			errPkt := buf[:n]
			v, p := in(tab, errPkt, t0.Add(time.Second))
			mustVerdict(t, v, nat.Forward, errPkt)
			if p.Dst.Addr() != client.Addr() {
				t.Errorf("error sent to %v, want %v", p.Dst.Addr(), client.Addr())
			}
			q := p.Quoted()
			if q.Src != orig.Src || q.Dst != orig.Dst {
				t.Errorf("quoted %v -> %v, want the original %v -> %v", q.Src, q.Dst, orig.Src, orig.Dst)
			}
			if p.ICMPType != uint8(header.ICMPv4DstUnreachable) || p.ICMPCode != uint8(header.ICMPv4PortUnreachable) {
				t.Errorf("type/code %d/%d changed", p.ICMPType, p.ICMPCode)
			}
			quoted := errPkt[header.IPv4MinimumSize+header.ICMPv4MinimumSize:]
			if !header.IPv4(quoted).IsChecksumValid() {
				t.Error("quoted IP header checksum is wrong")
			}
			if tab.Len() != 1 {
				t.Error("the error ended the flow")
			}
		})
	}
	t.Run("no flow", func(t *testing.T) {
		tab, _ := newTable(t, nat.Config{})
		stray := nat.Parse(lab.UDPPacket(netip.AddrPortFrom(ext, 999), server, nil))
		buf := make([]byte, nat.MaxReplyLen)
		n := nat.BuildICMPError(buf, &stray, server.Addr(), nat.PortUnreachable)
		if v, _ := in(tab, buf[:n], t0); v != nat.Drop {
			t.Errorf("error about no flow: verdict %v, want drop (RFC 5508 REQ-4)", v)
		}
	})
}

func TestLocalAndTTL(t *testing.T) {
	tab, _ := newTable(t, nat.Config{})
	for _, tt := range []struct {
		name string
		pkt  []byte
		in   bool
		want nat.Verdict
	}{
		{"ping inside address", lab.ICMPEcho(client.Addr(), inner, header.ICMPv4Echo, 1, 1), false, nat.Local},
		{"ping external address from inside", lab.ICMPEcho(client.Addr(), ext, header.ICMPv4Echo, 1, 1), false, nat.Local},
		{"ping external address from outside", lab.ICMPEcho(server.Addr(), ext, header.ICMPv4Echo, 1, 1), true, nat.Local},
		{"tcp to fwx", syn(client, netip.AddrPortFrom(inner, 22)), false, nat.Local},
		{"outside packet not for fwx", lab.UDPPacket(server, client, nil), true, nat.Drop},
		{"garbage", []byte{0x45, 0, 0}, false, nat.Drop},
	} {
		t.Run(tt.name, func(t *testing.T) {
			var v nat.Verdict
			if tt.in {
				v, _ = in(tab, tt.pkt, t0)
			} else {
				v, _ = out(tab, tt.pkt, t0)
			}
			if v != tt.want {
				t.Errorf("verdict %v, want %v", v, tt.want)
			}
		})
	}
	t.Run("ttl 1", func(t *testing.T) {
		pkt := lab.UDPPacket(client, server, nil)
		pkt[8] = 1
		header.IPv4(pkt).SetChecksum(0)
		header.IPv4(pkt).SetChecksum(^header.IPv4(pkt).CalculateChecksum())
		if v, _ := out(tab, pkt, t0); v != nat.TimeExceeded {
			t.Errorf("verdict %v, want time-exceeded", v)
		}
	})
}

func TestReplies(t *testing.T) {
	p := nat.Parse(syn(client, server))
	buf := make([]byte, nat.MaxReplyLen)
	n := nat.BuildRST(buf, &p)
	rst := nat.Parse(buf[:n])
	if err := lab.VerifyChecksums(buf[:n]); err != nil {
		t.Fatal(err)
	}
	if rst.Src != server || rst.Dst != client || rst.TCPFlags != header.TCPFlagRst|header.TCPFlagAck {
		t.Errorf("RST %s", lab.PacketString(buf[:n]))
	}
	if ack := header.TCP(buf[header.IPv4MinimumSize:n]).AckNumber(); ack != 1001 {
		t.Errorf("RST acks %d, want 1001", ack)
	}
	if n := nat.BuildRST(buf, &rst); n != 0 {
		t.Error("answered a RST with a RST")
	}
	e := nat.Parse(lab.ICMPEcho(client.Addr(), inner, header.ICMPv4Echo, 3, 4))
	nat.EchoReply(&e)
	if err := lab.VerifyChecksums(e.Bytes()); err != nil {
		t.Fatal(err)
	}
	if e.Src.Addr() != inner || e.Dst.Addr() != client.Addr() || header.ICMPv4(e.Bytes()[20:]).Type() != header.ICMPv4EchoReply {
		t.Errorf("echo reply %s", lab.PacketString(e.Bytes()))
	}
}

// TestDenialEveryAttempt checks that each retransmission of a refused
// connection is reported: the observer counts the attempts (fwx's log
// makes one record of them).
func TestDenialEveryAttempt(t *testing.T) {
	tab, rec := newTable(t, nat.Config{})
	pkt := syn(server, netip.AddrPortFrom(ext, 22))
	for _, at := range []time.Duration{0, time.Second, 3 * time.Second, 7 * time.Second} {
		in(tab, bytes.Clone(pkt), t0.Add(at))
	}
	if len(rec.denied) != 4 {
		t.Fatalf("%d denials for one connection's 4 SYNs, want 4", len(rec.denied))
	}
}

// TestPartialChecksum checks the rule for packets whose TCP or UDP checksum
// is a partial pseudo-header sum (virtio NEEDS_CSUM): a rewrite updates it
// for the addresses only, so that completing it afterwards gives the right
// checksum for the rewritten packet.
func TestPartialChecksum(t *testing.T) {
	for _, tt := range []struct {
		name string
		pkt  []byte
		off  int
	}{
		{"tcp", lab.TCPPacket(client, server, header.TCPFlagAck, 1, 1, []byte("partial")), 16},
		{"udp", lab.UDPPacket(client, server, []byte("partial")), 6},
	} {
		t.Run(tt.name, func(t *testing.T) {
			tab, _ := newTable(t, nat.Config{Decider: publishPolicy{}})
			// client2 takes the port first, so the rewrite changes the
			// port too, which the partial sum must not see.
			if tt.name == "tcp" {
				out(tab, syn(client2, server), t0)
				out(tab, syn(client, server), t0)
			} else {
				out(tab, lab.UDPPacket(client2, server, nil), t0)
			}
			// Make the checksum field partial, as a sender with checksum
			// offload leaves it: the pseudo-header sum, not complemented.
			pkt := tt.pkt
			l4 := pkt[20:]
			l4len := len(l4)
			proto := tcpip.TransportProtocolNumber(pkt[9])
			psum := header.PseudoHeaderChecksum(proto, tcpip.AddrFrom4(client.Addr().As4()), tcpip.AddrFrom4(server.Addr().As4()), uint16(l4len))
			l4[tt.off], l4[tt.off+1] = byte(psum>>8), byte(psum)
			p := nat.Parse(pkt)
			p.SetPartialChecksum(true)
			if v := tab.Outbound(&p, t0); v != nat.Forward {
				t.Fatalf("verdict %v", v)
			}
			if p.Src.Port() == client.Port() {
				t.Fatal("the port did not change; the test proves less than it should")
			}
			// Complete it as the kernel would: sum from the L4 header on.
			sum := ^checksum.Checksum(l4, 0)
			l4[tt.off], l4[tt.off+1] = byte(sum>>8), byte(sum)
			if err := lab.VerifyChecksums(pkt); err != nil {
				t.Errorf("after completing the rewritten partial sum: %v (%s)", err, lab.PacketString(pkt))
			}
		})
	}
}
