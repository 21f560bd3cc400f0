package lab

import (
	"bytes"
	"net/netip"
	"strings"
	"testing"

	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/checksum"
	"gvisor.dev/gvisor/pkg/tcpip/header"
)

var (
	aPort = netip.MustParseAddrPort("10.0.1.2:40000")
	bPort = netip.MustParseAddrPort("192.0.2.10:80")
	a6    = netip.MustParseAddrPort("[fd00:1::2]:40000")
	b6    = netip.MustParseAddrPort("[fd00:2::2]:53")
)

// TestBuildersAgainstGVisor checks the builders with gVisor's own header
// parsers and checksum validators, a second implementation.
func TestBuildersAgainstGVisor(t *testing.T) {
	payload := []byte("some payload, odd length")
	t.Run("udp4", func(t *testing.T) {
		p := UDPPacket(aPort, bPort, payload)
		ip := checkIPv4(t, p, header.UDPProtocolNumber)
		u := header.UDP(ip.Payload())
		if u.SourcePort() != aPort.Port() || u.DestinationPort() != bPort.Port() || int(u.Length()) != len(ip.Payload()) {
			t.Errorf("UDP header %x", u[:8])
		}
		xsum := checksum.Checksum(u.Payload(), 0)
		if !u.IsChecksumValid(ip.SourceAddress(), ip.DestinationAddress(), xsum) {
			t.Error("gVisor rejects the UDP checksum")
		}
		if !bytes.Equal(u.Payload(), payload) {
			t.Errorf("payload %q", u.Payload())
		}
	})
	t.Run("tcp4", func(t *testing.T) {
		flags := header.TCPFlagPsh | header.TCPFlagAck
		p := TCPPacket(aPort, bPort, flags, 0xdeadbeef, 0x01020304, payload)
		ip := checkIPv4(t, p, header.TCPProtocolNumber)
		tcp := header.TCP(ip.Payload())
		if tcp.SourcePort() != aPort.Port() || tcp.DestinationPort() != bPort.Port() ||
			tcp.Flags() != flags || tcp.SequenceNumber() != 0xdeadbeef || tcp.AckNumber() != 0x01020304 ||
			tcp.DataOffset() != 20 || tcp.WindowSize() != 65535 {
			t.Errorf("TCP header %x", tcp[:20])
		}
		xsum := checksum.Checksum(tcp.Payload(), 0)
		if !tcp.IsChecksumValid(ip.SourceAddress(), ip.DestinationAddress(), xsum, uint16(len(tcp.Payload()))) {
			t.Error("gVisor rejects the TCP checksum")
		}
		if !bytes.Equal(tcp.Payload(), payload) {
			t.Errorf("payload %q", tcp.Payload())
		}
	})
	t.Run("icmp echo", func(t *testing.T) {
		p := ICMPEcho(aPort.Addr(), bPort.Addr(), header.ICMPv4Echo, 0x1234, 0x5678)
		ip := checkIPv4(t, p, header.ICMPv4ProtocolNumber)
		m := header.ICMPv4(ip.Payload())
		if m.Type() != header.ICMPv4Echo || m.Code() != 0 || m.Ident() != 0x1234 || m.Sequence() != 0x5678 {
			t.Errorf("ICMP header %x", m)
		}
		if header.ICMPv4Checksum(m, 0) != m.Checksum() {
			t.Errorf("ICMP checksum %#x, gVisor computes %#x", m.Checksum(), header.ICMPv4Checksum(m, 0))
		}
	})
	t.Run("icmp error", func(t *testing.T) {
		orig := UDPPacket(aPort, bPort, payload)
		p := ICMPError(bPort.Addr(), aPort.Addr(), header.ICMPv4DstUnreachable, header.ICMPv4PortUnreachable, orig[:28])
		ip := checkIPv4(t, p, header.ICMPv4ProtocolNumber)
		m := header.ICMPv4(ip.Payload())
		if header.ICMPv4Checksum(m[:8], checksum.Checksum(m[8:], 0)) != m.Checksum() {
			t.Error("gVisor rejects the ICMP checksum")
		}
		if !bytes.Equal(m[8:], orig[:28]) {
			t.Errorf("quoted %x, want %x", m[8:], orig[:28])
		}
	})
	t.Run("udp6", func(t *testing.T) {
		p := UDPPacket(a6, b6, payload)
		ip := header.IPv6(p)
		if !ip.IsValid(len(p)) || ip.NextHeader() != uint8(header.UDPProtocolNumber) || ip.HopLimit() != 64 {
			t.Fatalf("gVisor rejects %x", p[:40])
		}
		u := header.UDP(ip.Payload())
		if !u.IsChecksumValid(ip.SourceAddress(), ip.DestinationAddress(), checksum.Checksum(u.Payload(), 0)) {
			t.Error("gVisor rejects the UDP checksum")
		}
	})
	t.Run("tcp6", func(t *testing.T) {
		p := TCPPacket(a6, b6, header.TCPFlagSyn, 1, 0, nil)
		ip := header.IPv6(p)
		tcp := header.TCP(ip.Payload())
		if !tcp.IsChecksumValid(ip.SourceAddress(), ip.DestinationAddress(), 0, 0) {
			t.Error("gVisor rejects the TCP checksum")
		}
	})
}

func checkIPv4(t *testing.T, p []byte, proto tcpip.TransportProtocolNumber) header.IPv4 {
	t.Helper()
	ip := header.IPv4(p)
	if !ip.IsValid(len(p)) || !ip.IsChecksumValid() {
		t.Fatalf("gVisor rejects the IPv4 header %x", p[:20])
	}
	if ip.TransportProtocol() != proto || ip.TTL() != 64 || int(ip.TotalLength()) != len(p) {
		t.Fatalf("IPv4 header %x: protocol %d, TTL %d, length %d", p[:20], ip.TransportProtocol(), ip.TTL(), ip.TotalLength())
	}
	return ip
}

func TestBuildersPanicOnMixedFamilies(t *testing.T) {
	for name, f := range map[string]func(){
		"udp 4to6": func() { UDPPacket(aPort, b6, nil) },
		"tcp zero": func() { TCPPacket(netip.AddrPort{}, bPort, 0, 0, 0, nil) },
		"echo v6":  func() { ICMPEcho(a6.Addr(), b6.Addr(), header.ICMPv4Echo, 0, 0) },
		"error v6": func() { ICMPError(a6.Addr(), b6.Addr(), header.ICMPv4DstUnreachable, 0, nil) },
		"4in6 mix": func() { UDPPacket(netip.MustParseAddrPort("[::ffff:10.0.0.1]:1"), b6, nil) },
	} {
		t.Run(name, func(t *testing.T) {
			defer func() {
				if recover() == nil {
					t.Error("no panic")
				}
			}()
			f()
		})
	}
}

// corrupt returns a copy of p with byte i flipped.
func corrupt(p []byte, i int) []byte {
	c := bytes.Clone(p)
	c[i] ^= 0x40
	return c
}

func TestVerifyChecksums(t *testing.T) {
	udp := UDPPacket(aPort, bPort, []byte("x"))
	tcp := TCPPacket(aPort, bPort, header.TCPFlagSyn, 1, 0, nil)
	echo := ICMPEcho(aPort.Addr(), bPort.Addr(), header.ICMPv4Echo, 1, 1)
	noSum := bytes.Clone(udp)
	noSum[26], noSum[27] = 0, 0
	frag := corrupt(udp, 28) // corrupt payload ...
	frag[6] = 0x20           // ... but mark it a first fragment: the transport is not checked
	frag[10], frag[11] = 0, 0
	binChecksum(frag)
	tests := []struct {
		name    string
		pkt     []byte
		wantErr string // substring; empty for no error
	}{
		{"udp", udp, ""},
		{"tcp", tcp, ""},
		{"echo", echo, ""},
		{"udp6", UDPPacket(a6, b6, []byte("x")), ""},
		{"udp without checksum", noSum, ""},
		{"fragment", frag, ""},
		{"bad ip header", corrupt(udp, 8), "bad IPv4 header checksum"},
		{"bad udp", corrupt(udp, 28), "bad UDP checksum"},
		{"bad tcp", corrupt(tcp, 24), "bad TCP checksum"},
		{"bad icmp", corrupt(echo, 24), "bad ICMPv4 checksum"},
		{"bad udp6", corrupt(UDPPacket(a6, b6, []byte("x")), 48), "bad UDP checksum"},
		{"truncated", udp[:len(udp)-1], "total length"},
		{"short", udp[:10], "truncated"},
		{"empty", nil, "not an IPv4 or IPv6"},
		{"not ip", []byte{0x12, 0x34}, "not an IPv4 or IPv6"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := VerifyChecksums(tt.pkt)
			switch {
			case tt.wantErr == "" && err != nil:
				t.Errorf("VerifyChecksums(%s) = %v", PacketString(tt.pkt), err)
			case tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)):
				t.Errorf("VerifyChecksums(%s) = %v, want error containing %q", PacketString(tt.pkt), err, tt.wantErr)
			}
		})
	}
}

// binChecksum sets the IPv4 header checksum of p.
func binChecksum(p []byte) {
	p[10], p[11] = 0, 0
	s := ^checksum.Checksum(p[:20], 0)
	p[10], p[11] = byte(s>>8), byte(s)
}

func TestPacketString(t *testing.T) {
	udp := UDPPacket(aPort, bPort, []byte("hello"))
	badUDP := bytes.Clone(udp)
	badUDP[26] ^= 0xff
	tests := []struct {
		name string
		pkt  []byte
		want string
	}{
		{"tcp", TCPPacket(aPort, bPort, header.TCPFlagSyn|header.TCPFlagAck, 1, 2, nil),
			"IPv4 TCP 10.0.1.2:40000 → 192.0.2.10:80 SYN|ACK seq=1 ack=2 win=65535 len=0 ttl=64 id=0 ipcsum=ok csum=ok"},
		{"udp", udp,
			"IPv4 UDP 10.0.1.2:40000 → 192.0.2.10:80 len=5 ttl=64 id=0 ipcsum=ok csum=ok"},
		{"bad udp checksum", badUDP,
			"IPv4 UDP 10.0.1.2:40000 → 192.0.2.10:80 len=5 ttl=64 id=0 ipcsum=ok csum=BAD(" + hex16(badUDP[26:]) + ",want " + hex16(udp[26:]) + ")"},
		{"echo", ICMPEcho(aPort.Addr(), bPort.Addr(), header.ICMPv4Echo, 7, 9),
			"IPv4 ICMP 10.0.1.2 → 192.0.2.10 echo-request code=0 id=7 seq=9 len=8 ttl=64 id=0 ipcsum=ok csum=ok"},
		{"port unreachable", ICMPError(bPort.Addr(), aPort.Addr(), header.ICMPv4DstUnreachable, header.ICMPv4PortUnreachable, udp[:28]),
			"IPv4 ICMP 192.0.2.10 → 10.0.1.2 dest-unreachable/port code=3 len=36 inner=[UDP 10.0.1.2:40000 → 192.0.2.10:80] ttl=64 id=0 ipcsum=ok csum=ok"},
		{"udp6", UDPPacket(a6, b6, nil),
			"IPv6 UDP [fd00:1::2]:40000 → [fd00:2::2]:53 len=0 hlim=64 csum=ok"},
		{"trailing bytes", append(bytes.Clone(udp), 0, 0),
			"IPv4 UDP 10.0.1.2:40000 → 192.0.2.10:80 len=5 ttl=64 id=0 trailing=2 ipcsum=ok csum=ok"},
		{"truncated tcp", ipOnly(aPort.Addr(), bPort.Addr(), protoTCP, 10),
			"IPv4 TCP 10.0.1.2 → 192.0.2.10 len=10 truncated ttl=64 id=0 ipcsum=ok csum=truncated"},
		{"other protocol", ipOnly(aPort.Addr(), bPort.Addr(), 47, 4),
			"IPv4 proto-47 10.0.1.2 → 192.0.2.10 len=4 ttl=64 id=0 ipcsum=ok"},
		{"garbage", []byte{0x45, 0, 0},
			"lab: IPv4 packet truncated (3 bytes): 45 00 00"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := PacketString(tt.pkt); got != tt.want {
				t.Errorf("PacketString =\n  %s\nwant\n  %s", got, tt.want)
			}
		})
	}
}

func hex16(b []byte) string {
	const digits = "0123456789abcdef"
	v := uint16(b[0])<<8 | uint16(b[1])
	return "0x" + string([]byte{digits[v>>12], digits[v>>8&0xf], digits[v>>4&0xf], digits[v&0xf]})
}

// ipOnly returns an IPv4 packet of protocol proto with n zero bytes of
// payload.
func ipOnly(src, dst netip.Addr, proto uint8, n int) []byte {
	p, _ := ipPacket(src, dst, proto, n)
	return p
}

// FuzzPacketString checks that PacketString and VerifyChecksums accept any
// bytes without panicking, describe them on one line, and agree with each
// other about checksums.
func FuzzPacketString(f *testing.F) {
	udp := UDPPacket(aPort, bPort, []byte("hello"))
	// Seeds: one valid packet of each kind the lab builds, and the
	// malformed shapes the decoder has special cases for.
	for _, p := range [][]byte{
		udp,
		TCPPacket(aPort, bPort, header.TCPFlagSyn, 1, 0, []byte("data")),
		ICMPEcho(aPort.Addr(), bPort.Addr(), header.ICMPv4EchoReply, 1, 2),
		ICMPError(bPort.Addr(), aPort.Addr(), header.ICMPv4DstUnreachable, header.ICMPv4PortUnreachable, udp[:28]),
		ICMPError(bPort.Addr(), aPort.Addr(), header.ICMPv4TimeExceeded, 0, udp[:10]), // short quote
		UDPPacket(a6, b6, []byte("v6")),
		ipOnly(aPort.Addr(), bPort.Addr(), protoTCP, 10), // truncated TCP
		{0x46, 0, 0, 20}, // header length beyond total length
		{0x60},           // short IPv6
		{},
	} {
		f.Add(p)
	}
	f.Fuzz(func(t *testing.T, pkt []byte) {
		s := PacketString(pkt)
		if strings.ContainsAny(s, "\n\r") {
			t.Fatalf("PacketString is not one line: %q", s)
		}
		err := VerifyChecksums(pkt)
		if err == nil && strings.Contains(s, "BAD(") {
			t.Fatalf("VerifyChecksums accepts a packet PacketString calls bad: %s", s)
		}
		if err != nil && strings.Contains(err.Error(), "checksum") && !strings.Contains(s, "BAD(") {
			t.Fatalf("VerifyChecksums says %v, PacketString says %s", err, s)
		}
	})
}
