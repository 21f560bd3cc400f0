package hostnet

import (
	"encoding/binary"
	"net/netip"

	"golang.org/x/sys/unix"
	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/checksum"
	"gvisor.dev/gvisor/pkg/tcpip/header"
)

// ICMP errors for UDP: a host socket with IP_RECVERR gets the ICMP errors
// its datagrams caused (a closed port, an unreachable host) in its error
// queue. Each is turned back into the ICMP error packet the datagram's
// sender would have received behind a router: from the host that sent it,
// to the mapping's external endpoint, quoting the datagram as it left
// that endpoint. The NAT table translates it like any ICMP error from the
// outside, so the client's socket sees ECONNREFUSED instead of waiting.

// quoteLen is how much of a datagram's payload an error quotes: RFC 792
// asks for 8 bytes of the original datagram's data, here the UDP header,
// and the table needs no more.
const quoteLen = 8

// sizeofExtendedErr is the size of struct sock_extended_err, which the
// offender's sockaddr_in (sockaddr_in6) follows in an IP_RECVERR
// (IPV6_RECVERR) message.
const sizeofExtendedErr = 16

// recvErr turns on IP_RECVERR (IPV6_RECVERR) on a UDP socket.
func recvErr(s *packetSocket) error {
	rc, err := s.conn.SyscallConn()
	if err != nil {
		return err
	}
	level, opt := unix.IPPROTO_IP, unix.IP_RECVERR
	if s.ext.Addr().Is6() {
		level, opt = unix.IPPROTO_IPV6, unix.IPV6_RECVERR
	}
	var serr error
	if err := rc.Control(func(fd uintptr) {
		serr = unix.SetsockoptInt(int(fd), level, opt, 1)
	}); err != nil {
		return err
	}
	return serr
}

// drainErrors reads s's error queue and queues each ICMP error in it as a
// packet for Read.
func (h *Host) drainErrors(s *packetSocket) {
	rc, err := s.conn.SyscallConn()
	if err != nil {
		return
	}
	var data [quoteLen]byte
	var oob [128]byte
	rc.Read(func(fd uintptr) bool {
		for {
			n, oobn, _, from, err := unix.Recvmsg(int(fd), data[:], oob[:], unix.MSG_ERRQUEUE)
			if err != nil {
				return true // drained (EAGAIN), or closed
			}
			var to netip.AddrPort
			switch sa := from.(type) {
			case *unix.SockaddrInet4:
				to = netip.AddrPortFrom(netip.AddrFrom4(sa.Addr), uint16(sa.Port))
			case *unix.SockaddrInet6:
				to = netip.AddrPortFrom(netip.AddrFrom16(sa.Addr), uint16(sa.Port))
			default:
				continue
			}
			pk := packets.Get().(*packet)
			if !buildError(pk, s, to, data[:n], oob[:oobn]) {
				packets.Put(pk)
				continue
			}
			if !h.queue(pk) {
				return true
			}
		}
	})
}

// buildError builds the ICMP error in control message oob about a datagram
// s sent to remote (data is the start of its payload). It reports false
// for what is not an ICMP destination-unreachable or time-exceeded error
// (or for IPv6 a Packet Too Big).
func buildError(pk *packet, s *packetSocket, remote netip.AddrPort, data, oob []byte) bool {
	msgs, err := unix.ParseSocketControlMessage(oob)
	if err != nil {
		return false
	}
	v6 := s.ext.Addr().Is6()
	for _, m := range msgs {
		level, typ, origin, sa := unix.IPPROTO_IP, unix.IP_RECVERR, byte(unix.SO_EE_ORIGIN_ICMP), unix.SizeofSockaddrInet4
		if v6 {
			level, typ, origin, sa = unix.IPPROTO_IPV6, unix.IPV6_RECVERR, unix.SO_EE_ORIGIN_ICMP6, unix.SizeofSockaddrInet6
		}
		if int(m.Header.Level) != level || int(m.Header.Type) != typ || len(m.Data) < sizeofExtendedErr+sa || m.Data[4] != origin {
			continue
		}
		// struct sock_extended_err, then the offender's sockaddr_in(6).
		et, code := m.Data[5], m.Data[6]
		info := binary.NativeEndian.Uint32(m.Data[8:12])
		off := m.Data[sizeofExtendedErr:]
		if v6 {
			switch header.ICMPv6Type(et) {
			case header.ICMPv6DstUnreachable, header.ICMPv6PacketTooBig, header.ICMPv6TimeExceeded:
			default:
				return false
			}
			encodeError6(pk, s.ext, remote, netip.AddrFrom16([16]byte(off[8:24])), et, code, info, data)
			return true
		}
		if header.ICMPv4Type(et) != header.ICMPv4DstUnreachable && header.ICMPv4Type(et) != header.ICMPv4TimeExceeded {
			return false
		}
		encodeError(pk, s.ext, remote, netip.AddrFrom4([4]byte(off[4:8])), header.ICMPv4Type(et), header.ICMPv4Code(code), uint16(info), data)
		return true
	}
	return false
}

// encodeError writes into pk an ICMP error from offender to ext quoting a
// UDP datagram from ext to remote whose payload starts with data; mtu goes
// into a fragmentation-needed error.
func encodeError(pk *packet, ext, remote netip.AddrPort, offender netip.Addr, typ header.ICMPv4Type, code header.ICMPv4Code, mtu uint16, data []byte) {
	const ip, icmp, udp = header.IPv4MinimumSize, header.ICMPv4MinimumSize, header.UDPMinimumSize
	total := ip + icmp + ip + udp + len(data)
	b := pk.b[:total]
	clear(b)
	quoted := header.IPv4(b[ip+icmp:])
	quoted.Encode(&header.IPv4Fields{
		TotalLength: uint16(ip + udp + len(data)),
		TTL:         ttl,
		Protocol:    uint8(header.UDPProtocolNumber),
		SrcAddr:     tcpip.AddrFrom4(ext.Addr().As4()),
		DstAddr:     tcpip.AddrFrom4(remote.Addr().As4()),
	})
	quoted.SetChecksum(^quoted.CalculateChecksum())
	header.UDP(b[ip+icmp+ip:]).Encode(&header.UDPFields{SrcPort: ext.Port(), DstPort: remote.Port(), Length: uint16(udp + len(data))})
	copy(b[ip+icmp+ip+udp:], data)

	e := header.ICMPv4(b[ip:])
	e.SetType(typ)
	e.SetCode(code)
	if typ == header.ICMPv4DstUnreachable && code == header.ICMPv4FragmentationNeeded {
		e.SetMTU(mtu)
	}
	e.SetChecksum(^checksum.Checksum(b[ip:], 0))

	h := header.IPv4(b)
	h.Encode(&header.IPv4Fields{
		TotalLength: uint16(total),
		TTL:         ttl,
		Protocol:    uint8(header.ICMPv4ProtocolNumber),
		SrcAddr:     tcpip.AddrFrom4(offender.As4()),
		DstAddr:     tcpip.AddrFrom4(ext.Addr().As4()),
	})
	h.SetChecksum(^h.CalculateChecksum())
	pk.n = total
}

// encodeError6 is encodeError for IPv6: an ICMPv6 error of type typ and
// code from offender to ext, quoting a UDP datagram from ext to remote;
// info is the MTU of a Packet Too Big.
func encodeError6(pk *packet, ext, remote netip.AddrPort, offender netip.Addr, typ, code uint8, info uint32, data []byte) {
	const ip, icmp, udp = header.IPv6MinimumSize, header.ICMPv6ErrorHeaderSize, header.UDPMinimumSize
	total := ip + icmp + ip + udp + len(data)
	b := pk.b[:total]
	clear(b)
	src, dst := tcpip.AddrFrom16(ext.Addr().As16()), tcpip.AddrFrom16(remote.Addr().As16())
	header.IPv6(b[ip+icmp:]).Encode(&header.IPv6Fields{
		PayloadLength:     uint16(udp + len(data)),
		TransportProtocol: header.UDPProtocolNumber,
		HopLimit:          ttl,
		SrcAddr:           src,
		DstAddr:           dst,
	})
	header.UDP(b[ip+icmp+ip:]).Encode(&header.UDPFields{SrcPort: ext.Port(), DstPort: remote.Port(), Length: uint16(udp + len(data))})
	copy(b[ip+icmp+ip+udp:], data)

	e := b[ip:]
	e[0], e[1] = typ, code
	if header.ICMPv6Type(typ) == header.ICMPv6PacketTooBig {
		binary.BigEndian.PutUint32(e[4:], info)
	}
	from := tcpip.AddrFrom16(offender.As16())
	sum := header.PseudoHeaderChecksum(header.ICMPv6ProtocolNumber, from, src, uint16(len(e)))
	binary.BigEndian.PutUint16(e[2:], ^checksum.Checksum(e, sum))

	header.IPv6(b).Encode(&header.IPv6Fields{
		PayloadLength:     uint16(len(e)),
		TransportProtocol: header.ICMPv6ProtocolNumber,
		HopLimit:          ttl,
		SrcAddr:           from,
		DstAddr:           src,
	})
	pk.n = total
}
