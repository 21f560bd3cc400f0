package hostnet

import (
	"errors"
	"net"
	"net/netip"
	"os"
	"sync"

	"golang.zx2c4.com/wireguard/tun"
	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/checksum"
	"gvisor.dev/gvisor/pkg/tcpip/header"

	"github.com/fwx-dev/fwx/nat"
)

// The host as a tun.Device: the NAT table writes translated UDP and ICMP
// echo packets (source: an external endpoint of fwx's) and the host sends
// their payload from the socket holding that endpoint; what the sockets
// receive comes back from Read as packets addressed to the external
// endpoint, which the table translates in as if they had crossed a wire.

const (
	// BatchSize is how many packets one Read or Write handles.
	BatchSize = 128
	// rxQueue bounds the packets received and not yet read: past it a
	// socket's reader waits, and the host's socket buffer takes the rest.
	rxQueue = 1024
	// maxPayload is the largest datagram a socket reads.
	maxPayload = 65535 - header.IPv4MinimumSize - header.UDPMinimumSize
	ttl        = 64
)

// packet is a received datagram, built into an IPv4 packet in place.
type packet struct {
	b []byte
	n int
}

var packets = sync.Pool{New: func() any {
	return &packet{b: make([]byte, header.IPv4MinimumSize+header.UDPMinimumSize+maxPayload)}
}}

var _ tun.Device = (*Host)(nil)

// receive reads a packet socket until it is closed and queues what it
// reads as packets for Read.
func (h *Host) receive(s *packetSocket) {
	hdr := header.IPv4MinimumSize
	if s.proto == nat.UDP {
		hdr += header.UDPMinimumSize
	}
	for {
		pk := packets.Get().(*packet)
		n, from, err := s.conn.ReadFromUDPAddrPort(pk.b[hdr:])
		if err != nil {
			packets.Put(pk)
			switch {
			case errors.Is(err, net.ErrClosed):
				return
			case s.proto == nat.UDP:
				// An ICMP error for a datagram sent earlier.
				h.drainErrors(s)
			default:
				h.opts.Log.Debug().Err(err).Stringer("port", s.ext).Msg("host socket read failed")
			}
			continue
		}
		if !build(pk, s, from, n) {
			packets.Put(pk)
			continue
		}
		if !h.queue(pk) {
			return
		}
	}
}

// queue hands a received packet to Read, waiting while the queue is full;
// it reports false, dropping the packet, once the host is closed.
func (h *Host) queue(pk *packet) bool {
	select {
	case h.rx <- pk:
		return true
	case <-h.closed:
		packets.Put(pk)
		return false
	}
}

// build makes the n bytes received from remote on s, in pk.b after the
// headers' room, into a packet from remote to s's external endpoint. It
// reports false for what is not to be passed on (an ICMP message other
// than an echo reply).
func build(pk *packet, s *packetSocket, remote netip.AddrPort, n int) bool {
	src, dst := tcpip.AddrFrom4(remote.Addr().Unmap().As4()), tcpip.AddrFrom4(s.ext.Addr().As4())
	ip := header.IPv4(pk.b)
	var l4 []byte
	var proto tcpip.TransportProtocolNumber
	if s.proto == nat.UDP {
		proto = header.UDPProtocolNumber
		l4 = pk.b[header.IPv4MinimumSize : header.IPv4MinimumSize+header.UDPMinimumSize+n]
		u := header.UDP(l4)
		u.Encode(&header.UDPFields{SrcPort: remote.Port(), DstPort: s.ext.Port(), Length: uint16(len(l4))})
		sum := header.PseudoHeaderChecksum(proto, src, dst, uint16(len(l4)))
		sum = checksum.Checksum(l4[header.UDPMinimumSize:], sum)
		u.SetChecksum(^u.CalculateChecksum(sum))
		if u.Checksum() == 0 {
			u.SetChecksum(0xffff)
		}
	} else {
		proto = header.ICMPv4ProtocolNumber
		l4 = pk.b[header.IPv4MinimumSize : header.IPv4MinimumSize+n]
		if n < header.ICMPv4MinimumSize {
			return false
		}
		icmp := header.ICMPv4(l4)
		if icmp.Type() != header.ICMPv4EchoReply {
			return false
		}
		// The kernel matched the reply to the socket by identifier;
		// make sure the packet carries the one the table knows.
		icmp.SetIdent(s.ext.Port())
		icmp.SetChecksum(0)
		icmp.SetChecksum(^checksum.Checksum(l4, 0))
	}
	total := header.IPv4MinimumSize + len(l4)
	ip.Encode(&header.IPv4Fields{
		TotalLength: uint16(total),
		TTL:         ttl,
		Protocol:    uint8(proto),
		SrcAddr:     src,
		DstAddr:     dst,
	})
	ip.SetChecksum(^ip.CalculateChecksum())
	pk.n = total
	return true
}

// Read implements tun.Device: it returns the packets the host's sockets
// received, at least one, blocking until there is one.
func (h *Host) Read(bufs [][]byte, sizes []int, offset int) (int, error) {
	var pk *packet
	select {
	case pk = <-h.rx:
	case <-h.closed:
		return 0, errClosed
	}
	n := 0
	for {
		sizes[n] = copy(bufs[n][offset:], pk.b[:pk.n])
		packets.Put(pk)
		n++
		if n == len(bufs) {
			return n, nil
		}
		select {
		case pk = <-h.rx:
		default:
			return n, nil
		}
	}
}

// Write implements tun.Device: it sends each packet's payload from the
// socket that holds its source endpoint. Packets no socket holds, or of
// other kinds, are dropped: the NAT table only writes what it translated.
func (h *Host) Write(bufs [][]byte, offset int) (int, error) {
	for _, b := range bufs {
		h.send(b[offset:])
	}
	select {
	case <-h.closed:
		return 0, errClosed
	default:
	}
	return len(bufs), nil
}

func (h *Host) send(pkt []byte) {
	ip := header.IPv4(pkt)
	if len(pkt) < header.IPv4MinimumSize || !ip.IsValid(len(pkt)) || ip.More() || ip.FragmentOffset() != 0 {
		return
	}
	payload := ip.Payload()
	dst := netip.AddrFrom4(ip.DestinationAddress().As4())
	var s *packetSocket
	var to netip.AddrPort
	switch ip.TransportProtocol() {
	case header.UDPProtocolNumber:
		if len(payload) < header.UDPMinimumSize {
			return
		}
		u := header.UDP(payload)
		s = h.socket(nat.UDP, u.SourcePort())
		to, payload = netip.AddrPortFrom(dst, u.DestinationPort()), payload[header.UDPMinimumSize:]
	case header.ICMPv4ProtocolNumber:
		if len(payload) < header.ICMPv4MinimumSize || header.ICMPv4(payload).Type() != header.ICMPv4Echo {
			return
		}
		s = h.socket(nat.ICMP, header.ICMPv4(payload).Ident())
		to = netip.AddrPortFrom(dst, 0)
	}
	if s == nil {
		return
	}
	if _, err := s.conn.WriteToUDPAddrPort(payload, to); err != nil && !errors.Is(err, net.ErrClosed) {
		h.opts.Log.Debug().Err(err).Stringer("from", s.ext).Stringer("to", to).Msg("host socket send failed")
	}
}

// File implements tun.Device: the host has no device file.
func (h *Host) File() *os.File { return nil }

// MTU implements tun.Device: the host takes any datagram a socket can.
func (h *Host) MTU() (int, error) { return 65535, nil }

// Name implements tun.Device.
func (h *Host) Name() (string, error) { return "host", nil }

// Events implements tun.Device.
func (h *Host) Events() <-chan tun.Event { return h.events }

// BatchSize implements tun.Device.
func (h *Host) BatchSize() int { return BatchSize }
