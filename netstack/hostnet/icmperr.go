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
// offender's sockaddr_in follows in an IP_RECVERR message.
const sizeofExtendedErr = 16

// recvErr turns on IP_RECVERR on a UDP socket.
func recvErr(s *packetSocket) error {
	rc, err := s.conn.SyscallConn()
	if err != nil {
		return err
	}
	var serr error
	if err := rc.Control(func(fd uintptr) {
		serr = unix.SetsockoptInt(int(fd), unix.IPPROTO_IP, unix.IP_RECVERR, 1)
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
			to, ok := from.(*unix.SockaddrInet4)
			if !ok {
				continue
			}
			pk := packets.Get().(*packet)
			if !buildError(pk, s, netip.AddrPortFrom(netip.AddrFrom4(to.Addr), uint16(to.Port)), data[:n], oob[:oobn]) {
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
// for what is not an ICMP destination-unreachable or time-exceeded error.
func buildError(pk *packet, s *packetSocket, remote netip.AddrPort, data, oob []byte) bool {
	msgs, err := unix.ParseSocketControlMessage(oob)
	if err != nil {
		return false
	}
	for _, m := range msgs {
		if m.Header.Level != unix.IPPROTO_IP || m.Header.Type != unix.IP_RECVERR || len(m.Data) < sizeofExtendedErr+unix.SizeofSockaddrInet4 {
			continue
		}
		// struct sock_extended_err, then the offender's sockaddr_in.
		origin, typ, code := m.Data[4], m.Data[5], m.Data[6]
		info := binary.NativeEndian.Uint32(m.Data[8:12])
		off := m.Data[sizeofExtendedErr:]
		offender := netip.AddrFrom4([4]byte(off[4:8]))
		if origin != unix.SO_EE_ORIGIN_ICMP || (header.ICMPv4Type(typ) != header.ICMPv4DstUnreachable && header.ICMPv4Type(typ) != header.ICMPv4TimeExceeded) {
			return false
		}
		encodeError(pk, s.ext, remote, offender, header.ICMPv4Type(typ), header.ICMPv4Code(code), uint16(info), data)
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
