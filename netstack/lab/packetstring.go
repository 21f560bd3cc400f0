package lab

import (
	"encoding/binary"
	"fmt"
	"net/netip"
	"strings"

	"gvisor.dev/gvisor/pkg/tcpip/header"
)

// PacketString decodes an IP packet to one line for logs and test
// failures, for example:
//
//	IPv4 TCP 10.0.1.2:40000 → 10.0.2.2:80 SYN|ACK seq=1 ack=2 win=65535 len=0 ttl=64 id=0 ipcsum=ok csum=ok
//	IPv4 UDP 10.0.1.2:5353 → 10.0.2.2:53 len=12 ttl=64 id=7 ipcsum=ok csum=BAD(0x1234,want 0x5678)
//	IPv4 ICMP 10.0.2.2 → 10.0.1.2 dest-unreachable/port code=3 len=36 inner=[UDP 10.0.1.2:5353 → 10.0.2.2:53] ttl=64 id=0 ipcsum=ok csum=ok
//
// "len" is the transport payload length (the whole message for ICMP);
// "inner" is the packet an ICMP error quotes. Fragments after the first
// show only the IP header. Checksums read "ok", "BAD(got,want want)" or
// "truncated"; other defects read "bad-..." or "truncated". PacketString
// never fails: for input that is not a valid packet it says what is wrong
// and shows the first bytes in hex.
func PacketString(pkt []byte) string {
	var b strings.Builder
	ip, err := parseIP(pkt)
	if err != nil {
		fmt.Fprintf(&b, "%v: % x", err, pkt[:min(len(pkt), 40)])
		return b.String()
	}
	if ip.v4 {
		b.WriteString("IPv4 ")
	} else {
		b.WriteString("IPv6 ")
	}
	b.WriteString(protoName(ip.proto, ip.v4))
	b.WriteByte(' ')
	frag := ip.fragOff != 0
	if !frag {
		writeTransport(&b, ip)
	} else {
		fmt.Fprintf(&b, "%v → %v len=%d", ip.src, ip.dst, len(ip.payload))
	}
	if ip.v4 {
		fmt.Fprintf(&b, " ttl=%d id=%d", ip.ttl, ip.id)
		if ip.df {
			b.WriteString(" DF")
		}
		if frag || ip.more {
			fmt.Fprintf(&b, " frag=%d", ip.fragOff)
			if ip.more {
				b.WriteString("+MF")
			}
		}
	} else {
		fmt.Fprintf(&b, " hlim=%d", ip.ttl)
	}
	if ip.total != len(pkt) {
		fmt.Fprintf(&b, " trailing=%d", len(pkt)-ip.total)
	}
	sums := checkSums(pkt, ip)
	if ip.v4 {
		b.WriteString(" ipcsum=" + sums.ip.String())
	}
	if sums.l4.name != "" {
		b.WriteString(" csum=" + sums.l4.String())
	}
	return b.String()
}

// writeTransport writes the addresses and transport header of ip.
func writeTransport(b *strings.Builder, ip ipInfo) {
	l4 := ip.payload
	switch {
	case ip.proto == protoTCP && len(l4) >= header.TCPMinimumSize:
		t := header.TCP(l4)
		fmt.Fprintf(b, "%v → %v %s seq=%d ack=%d win=%d",
			netip.AddrPortFrom(ip.src, t.SourcePort()), netip.AddrPortFrom(ip.dst, t.DestinationPort()),
			tcpFlagsString(t.Flags()), t.SequenceNumber(), t.AckNumber(), t.WindowSize())
		if off := int(t.DataOffset()); off < header.TCPMinimumSize || off > len(l4) {
			fmt.Fprintf(b, " bad-data-offset=%d", off)
		} else {
			if off > header.TCPMinimumSize {
				fmt.Fprintf(b, " opts=%d", off-header.TCPMinimumSize)
			}
			fmt.Fprintf(b, " len=%d", len(l4)-off)
		}
	case ip.proto == protoUDP && len(l4) >= header.UDPMinimumSize:
		u := header.UDP(l4)
		fmt.Fprintf(b, "%v → %v len=%d",
			netip.AddrPortFrom(ip.src, u.SourcePort()), netip.AddrPortFrom(ip.dst, u.DestinationPort()),
			len(l4)-header.UDPMinimumSize)
		if int(u.Length()) != len(l4) {
			fmt.Fprintf(b, " bad-udp-length=%d", u.Length())
		}
	case ip.proto == protoICMPv4 && ip.v4 && len(l4) >= header.ICMPv4MinimumSize:
		fmt.Fprintf(b, "%v → %v ", ip.src, ip.dst)
		writeICMPv4(b, header.ICMPv4(l4))
	case ip.proto == protoICMPv6 && !ip.v4 && len(l4) >= header.ICMPv6MinimumSize:
		fmt.Fprintf(b, "%v → %v type=%d code=%d", ip.src, ip.dst, l4[0], l4[1])
		if (l4[0] == 128 || l4[0] == 129) && len(l4) >= 8 {
			fmt.Fprintf(b, " id=%d seq=%d", binary.BigEndian.Uint16(l4[4:]), binary.BigEndian.Uint16(l4[6:]))
		}
		fmt.Fprintf(b, " len=%d", len(l4))
	default:
		fmt.Fprintf(b, "%v → %v len=%d", ip.src, ip.dst, len(l4))
		if ip.proto == protoTCP || ip.proto == protoUDP || ip.proto == protoICMPv4 || ip.proto == protoICMPv6 {
			b.WriteString(" truncated")
		}
	}
}

// writeICMPv4 writes an ICMPv4 message's type, code, and either its echo
// fields or the packet it is about.
func writeICMPv4(b *strings.Builder, m header.ICMPv4) {
	typ, code := m.Type(), m.Code()
	b.WriteString(icmpv4TypeName(typ, code))
	fmt.Fprintf(b, " code=%d", code)
	switch typ {
	case header.ICMPv4Echo, header.ICMPv4EchoReply:
		fmt.Fprintf(b, " id=%d seq=%d", m.Ident(), m.Sequence())
	}
	fmt.Fprintf(b, " len=%d", len(m))
	switch typ {
	case header.ICMPv4DstUnreachable, header.ICMPv4TimeExceeded, header.ICMPv4ParamProblem, header.ICMPv4SrcQuench, header.ICMPv4Redirect:
		b.WriteString(" inner=[" + innerString(m[header.ICMPv4MinimumSize:]) + "]")
	}
}

// innerString describes the start of the packet quoted in an ICMP error:
// its IP header and the first 8 bytes of its payload, which is all an ICMP
// error is required to carry (RFC 792).
func innerString(pkt []byte) string {
	if len(pkt) < header.IPv4MinimumSize || pkt[0]>>4 != 4 {
		return fmt.Sprintf("% x", pkt[:min(len(pkt), 28)])
	}
	hl := int(pkt[0]&0xf) * 4
	src := netip.AddrFrom4([4]byte(pkt[12:16]))
	dst := netip.AddrFrom4([4]byte(pkt[16:20]))
	proto := pkt[9]
	name := protoName(proto, true)
	if hl < header.IPv4MinimumSize || len(pkt) < hl+4 || (proto != protoTCP && proto != protoUDP) {
		return fmt.Sprintf("%s %v → %v", name, src, dst)
	}
	sp := binary.BigEndian.Uint16(pkt[hl:])
	dp := binary.BigEndian.Uint16(pkt[hl+2:])
	return fmt.Sprintf("%s %v → %v", name, netip.AddrPortFrom(src, sp), netip.AddrPortFrom(dst, dp))
}

func protoName(p uint8, v4 bool) string {
	switch {
	case p == protoTCP:
		return "TCP"
	case p == protoUDP:
		return "UDP"
	case p == protoICMPv4 && v4:
		return "ICMP"
	case p == protoICMPv6 && !v4:
		return "ICMPv6"
	}
	return fmt.Sprintf("proto-%d", p)
}

// tcpFlagNames are in header bit order, FIN first.
var tcpFlagNames = [...]string{"FIN", "SYN", "RST", "PSH", "ACK", "URG", "ECE", "CWR"}

func tcpFlagsString(f header.TCPFlags) string {
	var parts []string
	for i, name := range tcpFlagNames {
		if f&(1<<i) != 0 {
			parts = append(parts, name)
		}
	}
	if len(parts) == 0 {
		return "none"
	}
	return strings.Join(parts, "|")
}

func icmpv4TypeName(t header.ICMPv4Type, c header.ICMPv4Code) string {
	switch t {
	case header.ICMPv4EchoReply:
		return "echo-reply"
	case header.ICMPv4Echo:
		return "echo-request"
	case header.ICMPv4DstUnreachable:
		switch c {
		case header.ICMPv4NetUnreachable:
			return "dest-unreachable/net"
		case header.ICMPv4HostUnreachable:
			return "dest-unreachable/host"
		case header.ICMPv4ProtoUnreachable:
			return "dest-unreachable/proto"
		case header.ICMPv4PortUnreachable:
			return "dest-unreachable/port"
		case header.ICMPv4FragmentationNeeded:
			return "dest-unreachable/frag-needed"
		case header.ICMPv4AdminProhibited:
			return "dest-unreachable/admin-prohibited"
		}
		return "dest-unreachable"
	case header.ICMPv4TimeExceeded:
		return "time-exceeded"
	case header.ICMPv4ParamProblem:
		return "param-problem"
	case header.ICMPv4SrcQuench:
		return "source-quench"
	case header.ICMPv4Redirect:
		return "redirect"
	}
	return fmt.Sprintf("type-%d", t)
}
