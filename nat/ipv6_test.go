package nat_test

import (
	"bytes"
	"encoding/binary"
	"net/netip"
	"testing"

	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/checksum"
	"gvisor.dev/gvisor/pkg/tcpip/header"

	"github.com/fwx-dev/fwx/nat"
	"github.com/fwx-dev/fwx/netstack/lab"
)

var (
	ext6     = netip.MustParseAddr("2001:db8:ffff::1")
	inner6   = netip.MustParseAddr("fd00::1")
	client6  = netip.MustParseAddrPort("[fd00::2]:40000")
	client6b = netip.MustParseAddrPort("[fd00::3]:40000")
	server6  = netip.MustParseAddrPort("[2001:db8:5::5]:80")
	router6  = netip.MustParseAddr("2001:db8:5::fe")
)

// Extension headers for tests, without their next-header byte (withExt
// sets it).
var (
	hopByHop = extHdr{0, []byte{0, 0, 1, 4, 0, 0, 0, 0}}              // PadN
	destOpts = extHdr{60, []byte{0, 0, 1, 4, 0, 0, 0, 0}}             // PadN
	srh0     = extHdr{43, []byte{0, 0, 4, 0, 0, 0, 0, 0}}             // segment routing, no segment left
	srh2     = extHdr{43, []byte{0, 0, 4, 2, 0, 0, 0, 0}}             // segment routing, 2 segments left
	rh0      = extHdr{43, []byte{0, 0, 0, 0, 0, 0, 0, 0}}             // type 0, deprecated (RFC 5095)
	ah       = extHdr{51, []byte{0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0}} // authentication header
	atomic   = extHdr{44, []byte{0, 0, 0, 0, 0, 0, 0, 9}}             // offset 0, no more fragments
	longDest = extHdr{60, []byte{0, 1, 1, 12, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0}}
)

// extHdr is an IPv6 extension header: its type, and its bytes with room for
// the next-header byte in front.
type extHdr struct {
	typ uint8
	b   []byte
}

// withExt returns the IPv6 packet pkt with extension headers hdrs inserted
// after the fixed header, in order. Transport checksums stay right: they
// do not cover extension headers.
func withExt(pkt []byte, hdrs ...extHdr) []byte {
	out := bytes.Clone(pkt[:header.IPv6MinimumSize])
	nh := pkt[6]
	out[6] = hdrs[0].typ
	for i, h := range hdrs {
		b := bytes.Clone(h.b)
		b[0] = nh
		if i+1 < len(hdrs) {
			b[0] = hdrs[i+1].typ
		}
		out = append(out, b...)
	}
	out = append(out, pkt[header.IPv6MinimumSize:]...)
	binary.BigEndian.PutUint16(out[4:], uint16(len(out)-header.IPv6MinimumSize))
	return out
}

// fragment6 returns the IPv6 packet pkt with a fragment header of the
// given offset (bytes), more flag and identification, its payload left as
// it is.
func fragment6(pkt []byte, off uint16, more bool, id uint32) []byte {
	h := make([]byte, 8)
	v := off
	if more {
		v |= 1
	}
	binary.BigEndian.PutUint16(h[2:], v)
	binary.BigEndian.PutUint32(h[4:], id)
	return withExt(pkt, extHdr{44, h})
}

func TestParseIPv6(t *testing.T) {
	udp := lab.UDPPacket(client6, server6, []byte("payload"))
	tcp := lab.TCPPacket(client6, server6, header.TCPFlagSyn, 1, 0, nil)
	echo := lab.ICMPv6Echo(client6.Addr(), server6.Addr(), header.ICMPv6EchoRequest, 77, 1)
	sent := lab.UDPPacket(netip.AddrPortFrom(ext6, 1234), server6, []byte("x"))
	tests := []struct {
		name   string
		pkt    []byte
		kind   nat.Kind
		reason nat.DropReason // for Invalid
		src    netip.AddrPort // for Transport, Query
		quoted netip.AddrPort // the quoted source, for Error
	}{
		{"udp", udp, nat.Transport, 0, client6, netip.AddrPort{}},
		{"tcp", tcp, nat.Transport, 0, client6, netip.AddrPort{}},
		{"tcp after hop-by-hop", withExt(tcp, hopByHop), nat.Transport, 0, client6, netip.AddrPort{}},
		{"udp after three headers", withExt(udp, hopByHop, srh0, longDest), nat.Transport, 0, client6, netip.AddrPort{}},
		{"atomic fragment", withExt(udp, atomic), nat.Transport, 0, client6, netip.AddrPort{}},
		{"echo request", echo, nat.Query, 0, netip.AddrPortFrom(client6.Addr(), 77), netip.AddrPort{}},
		{"echo reply", lab.ICMPv6Echo(server6.Addr(), client6.Addr(), header.ICMPv6EchoReply, 77, 1), nat.Query, 0,
			netip.AddrPortFrom(server6.Addr(), 0), netip.AddrPort{}},
		{"packet too big", lab.ICMPv6Error(router6, ext6, header.ICMPv6PacketTooBig, 0, 1280, sent), nat.Error, 0,
			netip.AddrPort{}, netip.AddrPortFrom(ext6, 1234)},
		{"unreachable quoting options", lab.ICMPv6Error(router6, ext6, header.ICMPv6DstUnreachable, 4, 0, withExt(sent, destOpts)),
			nat.Error, 0, netip.AddrPort{}, netip.AddrPortFrom(ext6, 1234)},
		{"error quoting an echo", lab.ICMPv6Error(router6, client6.Addr(), header.ICMPv6TimeExceeded, 0, 0, echo), nat.Error, 0,
			netip.AddrPort{}, netip.AddrPortFrom(client6.Addr(), 77)},
		{"first fragment", fragment6(udp, 0, true, 1), nat.Fragment, 0, netip.AddrPort{}, netip.AddrPort{}},
		{"later fragment", fragment6(udp, 8, false, 1), nat.Fragment, 0, netip.AddrPort{}, netip.AddrPort{}},

		{"routing type 0", withExt(udp, rh0), nat.Invalid, nat.DropExtHeader, netip.AddrPort{}, netip.AddrPort{}},
		{"authentication header", withExt(udp, ah), nat.Invalid, nat.DropExtHeader, netip.AddrPort{}, netip.AddrPort{}},
		{"hop-by-hop not first", withExt(udp, destOpts, hopByHop), nat.Invalid, nat.DropExtHeader, netip.AddrPort{}, netip.AddrPort{}},
		{"nine headers", withExt(udp, destOpts, destOpts, destOpts, destOpts, destOpts, destOpts, destOpts, destOpts, destOpts),
			nat.Invalid, nat.DropExtHeader, netip.AddrPort{}, netip.AddrPort{}},
		{"two fragment headers", fragment6(fragment6(udp, 0, true, 1), 0, true, 2), nat.Invalid, nat.DropExtHeader, netip.AddrPort{}, netip.AddrPort{}},
		{"header longer than the packet", cut(withExt(lab.UDPPacket(client6, server6, nil), extHdr{60, []byte{0, 3, 1, 4, 0, 0, 0, 0}}), 0),
			nat.Invalid, nat.DropExtHeader, netip.AddrPort{}, netip.AddrPort{}},
		{"no next header", withNext(udp, 59), nat.Invalid, nat.DropInvalid, netip.AddrPort{}, netip.AddrPort{}},
		{"ESP", withNext(udp, 50), nat.Invalid, nat.DropExtHeader, netip.AddrPort{}, netip.AddrPort{}},
		{"ICMPv4 in IPv6", withNext(udp, 1), nat.Invalid, nat.DropInvalid, netip.AddrPort{}, netip.AddrPort{}},
		{"neighbor solicitation", icmp6(135), nat.Invalid, nat.DropInvalid, netip.AddrPort{}, netip.AddrPort{}},
		{"router advertisement", icmp6(134), nat.Invalid, nat.DropInvalid, netip.AddrPort{}, netip.AddrPort{}},
		{"MLD report", icmp6(143), nat.Invalid, nat.DropInvalid, netip.AddrPort{}, netip.AddrPort{}},
		{"jumbo length", withLength(udp, 0), nat.Invalid, nat.DropInvalid, netip.AddrPort{}, netip.AddrPort{}},
		{"truncated", withLength(udp, 400), nat.Invalid, nat.DropInvalid, netip.AddrPort{}, netip.AddrPort{}},
		{"error about an error", lab.ICMPv6Error(router6, ext6, header.ICMPv6DstUnreachable, 4, 0,
			lab.ICMPv6Error(ext6, router6, header.ICMPv6DstUnreachable, 4, 0, sent)), nat.Invalid, nat.DropInvalid, netip.AddrPort{}, netip.AddrPort{}},
		{"error quoting a later fragment", lab.ICMPv6Error(router6, ext6, header.ICMPv6TimeExceeded, 1, 0, fragment6(sent, 8, true, 1)),
			nat.Invalid, nat.DropInvalid, netip.AddrPort{}, netip.AddrPort{}},
		{"error quoting too little", lab.ICMPv6Error(router6, ext6, header.ICMPv6PacketTooBig, 0, 1280, sent[:44]),
			nat.Invalid, nat.DropInvalid, netip.AddrPort{}, netip.AddrPort{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := nat.Parse(tt.pkt)
			if p.Kind != tt.kind {
				t.Fatalf("kind %v, want %v: %s", p.Kind, tt.kind, lab.PacketString(tt.pkt))
			}
			switch tt.kind {
			case nat.Invalid:
				if p.Reason != tt.reason {
					t.Errorf("reason %v, want %v", p.Reason, tt.reason)
				}
				return
			case nat.Transport, nat.Query:
				if p.Src != tt.src {
					t.Errorf("source %v, want %v", p.Src, tt.src)
				}
			case nat.Error:
				if q := p.Quoted(); q.Src != tt.quoted {
					t.Errorf("quoted source %v, want %v", q.Src, tt.quoted)
				}
			}
			if !p.Is6() || p.Len() != len(tt.pkt) {
				t.Errorf("Is6 %v, length %d of %d", p.Is6(), p.Len(), len(tt.pkt))
			}
		})
	}
}

// withNext returns the IPv6 packet pkt with its next header set to nh.
func withNext(pkt []byte, nh uint8) []byte {
	pkt = bytes.Clone(pkt)
	pkt[6] = nh
	return pkt
}

// withLength returns the IPv6 packet pkt with its payload length set to n.
func withLength(pkt []byte, n uint16) []byte {
	pkt = bytes.Clone(pkt)
	binary.BigEndian.PutUint16(pkt[4:], n)
	return pkt
}

// cut returns pkt without its last n bytes, its length fields unchanged.
func cut(pkt []byte, n int) []byte { return pkt[:len(pkt)-n] }

// icmp6 returns an ICMPv6 message of type typ from the client to a
// link-local neighbour, as neighbor discovery and MLD send.
func icmp6(typ uint8) []byte {
	pkt := lab.ICMPv6Echo(netip.MustParseAddr("fe80::2"), netip.MustParseAddr("ff02::1"), header.ICMPv6Type(typ), 0, 0)
	return pkt
}

// TestRewriteIPv6 checks that rewriting an IPv6 packet's endpoints keeps
// its transport checksum right (no header checksum, but a pseudo-header
// for TCP, UDP and ICMPv6 alike), with extension headers in the way.
func TestRewriteIPv6(t *testing.T) {
	newSrc := netip.AddrPortFrom(ext6, 61000)
	newDst := netip.MustParseAddrPort("[2001:db8:7::7]:8080")
	for _, tt := range []struct {
		name string
		pkt  []byte
	}{
		{"udp", lab.UDPPacket(client6, server6, []byte("some payload"))},
		{"tcp", lab.TCPPacket(client6, server6, header.TCPFlagAck, 9, 9, []byte("data"))},
		{"udp after options", withExt(lab.UDPPacket(client6, server6, []byte("odd")), hopByHop, destOpts)},
		{"echo request", lab.ICMPv6Echo(client6.Addr(), server6.Addr(), header.ICMPv6EchoRequest, 1, 2)},
	} {
		t.Run(tt.name, func(t *testing.T) {
			p := nat.Parse(tt.pkt)
			hl := p.TTL()
			p.SetSource(newSrc)
			if !p.DecrementTTL() || p.TTL() != hl-1 {
				t.Errorf("hop limit %d, want %d", p.TTL(), hl-1)
			}
			if p.Kind == nat.Transport {
				p.SetDestination(newDst)
			}
			if err := lab.VerifyChecksums(tt.pkt); err != nil {
				t.Fatalf("%v: %s", err, lab.PacketString(tt.pkt))
			}
			again := nat.Parse(tt.pkt)
			if again.Src != p.Src || again.Dst != p.Dst {
				t.Errorf("reparsed %v → %v, want %v → %v", again.Src, again.Dst, p.Src, p.Dst)
			}
		})
	}
	t.Run("partial checksum", func(t *testing.T) {
		// As TestPartialChecksum, for IPv6: the checksum field holds the
		// pseudo-header sum, which only the addresses change.
		pkt := lab.UDPPacket(client6, server6, []byte("partial"))
		l4 := pkt[header.IPv6MinimumSize:]
		psum := header.PseudoHeaderChecksum(header.UDPProtocolNumber, tcpip.AddrFrom16(client6.Addr().As16()), tcpip.AddrFrom16(server6.Addr().As16()), uint16(len(l4)))
		binary.BigEndian.PutUint16(l4[6:], psum)
		p := nat.Parse(pkt)
		p.SetPartialChecksum(true)
		p.SetSource(newSrc)
		binary.BigEndian.PutUint16(l4[6:], ^checksum.Checksum(l4, 0))
		if err := lab.VerifyChecksums(pkt); err != nil {
			t.Errorf("after completing the rewritten partial sum: %v", err)
		}
	})
	t.Run("time exceeded", func(t *testing.T) {
		pkt := lab.UDPPacket(client6, server6, nil)
		pkt[7] = 1
		if p := nat.Parse(pkt); p.DecrementTTL() {
			t.Error("forwarded a packet with hop limit 1")
		}
	})
}

// TestQuotedRewriteIPv6 checks the rewrite of an ICMPv6 error on its way
// back to a client: the quoted packet's source becomes the client's again,
// its UDP checksum still matches it, and the error's own checksum (which
// covers the whole quote and the outer pseudo-header) is right.
func TestQuotedRewriteIPv6(t *testing.T) {
	sent := lab.UDPPacket(netip.AddrPortFrom(ext6, 61000), server6, []byte("the quoted datagram"))
	errPkt := lab.ICMPv6Error(router6, ext6, header.ICMPv6PacketTooBig, 0, 1400, sent)
	p := nat.Parse(errPkt)
	if p.Kind != nat.Error {
		t.Fatalf("kind %v", p.Kind)
	}
	p.SetQuotedSource(client6)
	p.SetDestination(netip.AddrPortFrom(client6.Addr(), 0))
	if err := lab.VerifyChecksums(errPkt); err != nil {
		t.Fatalf("outer: %v (%s)", err, lab.PacketString(errPkt))
	}
	quote := errPkt[header.IPv6MinimumSize+header.ICMPv6ErrorHeaderSize:]
	if err := lab.VerifyChecksums(quote); err != nil {
		t.Errorf("quoted: %v (%s)", err, lab.PacketString(quote))
	}
	if q := nat.Parse(quote); q.Src != client6 || q.Dst != server6 {
		t.Errorf("quoted %v → %v, want %v → %v", q.Src, q.Dst, client6, server6)
	}
	if mtu := binary.BigEndian.Uint32(errPkt[header.IPv6MinimumSize+4:]); mtu != 1400 {
		t.Errorf("MTU %d, want 1400 unchanged", mtu)
	}
}

func TestRepliesIPv6(t *testing.T) {
	buf := make([]byte, nat.MaxReplyLen)
	t.Run("rst", func(t *testing.T) {
		p := nat.Parse(lab.TCPPacket(client6, server6, header.TCPFlagSyn, 1000, 0, nil))
		n := nat.BuildRST(buf, &p)
		if err := lab.VerifyChecksums(buf[:n]); err != nil {
			t.Fatal(err)
		}
		rst := nat.Parse(buf[:n])
		if !rst.Is6() || rst.Src != server6 || rst.Dst != client6 || rst.TCPFlags != header.TCPFlagRst|header.TCPFlagAck {
			t.Errorf("RST %s", lab.PacketString(buf[:n]))
		}
	})
	t.Run("echo", func(t *testing.T) {
		e := nat.Parse(lab.ICMPv6Echo(client6.Addr(), inner6, header.ICMPv6EchoRequest, 3, 4))
		nat.EchoReply(&e)
		if err := lab.VerifyChecksums(e.Bytes()); err != nil {
			t.Fatal(err)
		}
		if e.Src.Addr() != inner6 || e.Dst.Addr() != client6.Addr() || e.ICMPType != uint8(header.ICMPv6EchoReply) {
			t.Errorf("echo reply %s", lab.PacketString(e.Bytes()))
		}
	})
	t.Run("error quotes up to 1280 bytes", func(t *testing.T) {
		big := lab.UDPPacket(client6, server6, make([]byte, 3000))
		p := nat.Parse(big)
		n := nat.BuildICMPError(buf, &p, inner6, nat.AdminProhibited)
		if n != header.IPv6MinimumMTU {
			t.Fatalf("error of %d bytes, want %d", n, header.IPv6MinimumMTU)
		}
		if err := lab.VerifyChecksums(buf[:n]); err != nil {
			t.Fatal(err)
		}
		e := nat.Parse(buf[:n])
		if e.Kind != nat.Error || e.ICMPType != uint8(header.ICMPv6DstUnreachable) || e.ICMPCode != uint8(header.ICMPv6Prohibited) ||
			e.Dst.Addr() != client6.Addr() || e.Quoted().Src != client6 {
			t.Errorf("error %s", lab.PacketString(buf[:n]))
		}
	})
	t.Run("time exceeded", func(t *testing.T) {
		p := nat.Parse(lab.UDPPacket(client6, server6, nil))
		n := nat.BuildICMPError(buf, &p, inner6, nat.TTLExceeded)
		if e := nat.Parse(buf[:n]); e.ICMPType != uint8(header.ICMPv6TimeExceeded) || e.ICMPCode != 0 {
			t.Errorf("error %s", lab.PacketString(buf[:n]))
		}
	})
	for _, tt := range []struct {
		name string
		pkt  []byte
		from netip.Addr
	}{
		{"to multicast", lab.UDPPacket(client6, netip.MustParseAddrPort("[ff02::fb]:5353"), nil), inner6},
		{"about an error", lab.ICMPv6Error(server6.Addr(), client6.Addr(), header.ICMPv6DstUnreachable, 4, 0,
			lab.UDPPacket(client6, server6, nil)), inner6},
		{"later fragment", fragment6(lab.UDPPacket(client6, server6, nil), 8, false, 5), inner6},
		{"from an IPv4 address", lab.UDPPacket(client6, server6, nil), inner},
	} {
		t.Run("no error "+tt.name, func(t *testing.T) {
			p := nat.Parse(tt.pkt)
			if n := nat.BuildICMPError(buf, &p, tt.from, nat.PortUnreachable); n != 0 {
				t.Errorf("built %s", lab.PacketString(buf[:n]))
			}
		})
	}
	t.Run("udp", func(t *testing.T) {
		n := nat.BuildUDP(buf, client6, server6, 9, []byte("datagram"))
		if err := lab.VerifyChecksums(buf[:n]); err != nil {
			t.Fatal(err)
		}
		if p := nat.Parse(buf[:n]); p.Src != client6 || p.Dst != server6 || p.TTL() != 9 || string(p.Payload()) != "datagram" {
			t.Errorf("built %s", lab.PacketString(buf[:n]))
		}
		if n := nat.BuildUDP(buf, client6, server, 9, nil); n != 0 {
			t.Error("built a datagram between two families")
		}
	})
}

// FuzzParse feeds arbitrary bytes to the parser, as an IPv4 or IPv6
// packet. Properties: nothing panics; what parses is within the input; and
// rewriting the endpoints of a packet that arrived with correct checksums
// leaves them correct, whatever extension headers or quotes it holds.
func FuzzParse(f *testing.F) {
	udp := lab.UDPPacket(client6, server6, []byte("x"))
	sent := lab.UDPPacket(netip.AddrPortFrom(ext6, 1234), server6, []byte("y"))
	for _, seed := range [][]byte{
		udp,
		lab.TCPPacket(client6, server6, header.TCPFlagSyn, 1, 0, nil),
		lab.ICMPv6Echo(client6.Addr(), server6.Addr(), header.ICMPv6EchoRequest, 1, 1),
		lab.ICMPv6Error(router6, ext6, header.ICMPv6PacketTooBig, 0, 1280, sent),
		lab.ICMPv6Error(router6, ext6, header.ICMPv6PacketTooBig, 0, 1280, withExt(sent, destOpts)),
		withExt(udp, hopByHop, srh0, destOpts),
		withExt(udp, srh2),
		withExt(udp, atomic),
		fragment6(udp, 0, true, 7),
		fragment6(udp, 16, false, 7),
		lab.UDPPacket(client, server, []byte("v4")),
		lab.ICMPError(server.Addr(), ext, header.ICMPv4DstUnreachable, header.ICMPv4PortUnreachable, lab.UDPPacket(netip.AddrPortFrom(ext, 1), server, nil)),
	} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, pkt []byte) {
		valid := lab.VerifyChecksums(pkt) == nil
		p := nat.Parse(pkt)
		if p.Kind == nat.Invalid {
			return
		}
		if p.Len() > len(pkt) || p.Is6() != (pkt[0]>>4 == 6) {
			t.Fatalf("parsed %d bytes of %d, Is6 %v", p.Len(), len(pkt), p.Is6())
		}
		src, dst := netip.AddrPortFrom(ext, 1111), netip.AddrPortFrom(inner, 2222)
		if p.Is6() {
			src, dst = netip.AddrPortFrom(ext6, 1111), netip.AddrPortFrom(inner6, 2222)
		}
		switch p.Kind {
		case nat.Error:
			p.SetQuotedSource(src)
			p.SetDestination(netip.AddrPortFrom(dst.Addr(), 0))
		case nat.Transport, nat.Query:
			p.SetSource(src)
			p.SetDestination(dst)
		default:
			return
		}
		p.DecrementTTL()
		if valid {
			if err := lab.VerifyChecksums(p.Bytes()); err != nil {
				t.Fatalf("%v after rewriting %s", err, lab.PacketString(p.Bytes()))
			}
		}
	})
}
