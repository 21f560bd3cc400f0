package hostnet

import (
	"encoding/binary"
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
	// maxPayload is the largest datagram a socket reads: a UDP payload
	// over IPv6 (over IPv4 it is 20 bytes less).
	maxPayload = 65535 - header.UDPMinimumSize
	ttl        = 64
)

// packet is a received datagram, built into an IPv4 or IPv6 packet in
// place.
type packet struct {
	b []byte
	n int
}

var packets = sync.Pool{New: func() any {
	return &packet{b: make([]byte, header.IPv6MinimumSize+header.UDPMinimumSize+maxPayload)}
}}

// ipHeader returns the length of the IP header fwx builds for a's family.
func ipHeader(a netip.Addr) int {
	if a.Is6() {
		return header.IPv6MinimumSize
	}
	return header.IPv4MinimumSize
}

var _ tun.Device = (*Host)(nil)

// receive reads a packet socket until it is closed and queues what it
// reads as packets for Read.
func (h *Host) receive(s *packetSocket) {
	hdr := ipHeader(s.ext.Addr())
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
	remote = netip.AddrPortFrom(remote.Addr().Unmap(), remote.Port())
	hl := ipHeader(s.ext.Addr())
	if s.proto == nat.UDP {
		// The payload is in place already; the builder writes the
		// headers around it.
		payload := pk.b[hl+header.UDPMinimumSize : hl+header.UDPMinimumSize+n]
		pk.n = nat.BuildUDP(pk.b, remote, s.ext, ttl, payload)
		return pk.n > 0
	}
	l4 := pk.b[hl : hl+n]
	if n < header.ICMPv4MinimumSize {
		return false
	}
	// The kernel matched the reply to the socket by identifier; make sure
	// the packet carries the one the table knows.
	binary.BigEndian.PutUint16(l4[4:], s.ext.Port())
	l4[2], l4[3] = 0, 0
	src, dst := tcpAddr(remote.Addr()), tcpAddr(s.ext.Addr())
	if s.ext.Addr().Is6() {
		if header.ICMPv6Type(l4[0]) != header.ICMPv6EchoReply {
			return false
		}
		header.IPv6(pk.b).Encode(&header.IPv6Fields{
			PayloadLength:     uint16(n),
			TransportProtocol: header.ICMPv6ProtocolNumber,
			HopLimit:          ttl,
			SrcAddr:           src,
			DstAddr:           dst,
		})
		sum := header.PseudoHeaderChecksum(header.ICMPv6ProtocolNumber, src, dst, uint16(n))
		binary.BigEndian.PutUint16(l4[2:], ^checksum.Checksum(l4, sum))
	} else {
		if header.ICMPv4Type(l4[0]) != header.ICMPv4EchoReply {
			return false
		}
		binary.BigEndian.PutUint16(l4[2:], ^checksum.Checksum(l4, 0))
		ip := header.IPv4(pk.b)
		ip.Encode(&header.IPv4Fields{
			TotalLength: uint16(hl + n),
			TTL:         ttl,
			Protocol:    uint8(header.ICMPv4ProtocolNumber),
			SrcAddr:     src,
			DstAddr:     dst,
		})
		ip.SetChecksum(^ip.CalculateChecksum())
	}
	pk.n = hl + n
	return true
}

// tcpAddr converts a for gVisor's header code.
func tcpAddr(a netip.Addr) tcpip.Address {
	if a.Is4() {
		return tcpip.AddrFrom4(a.As4())
	}
	return tcpip.AddrFrom16(a.As16())
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
	p := nat.Parse(pkt)
	var s *packetSocket
	var to netip.AddrPort
	var payload []byte
	switch {
	case p.Kind == nat.Transport && p.Proto == nat.UDP:
		s = h.socket(nat.UDP, p.Is6(), p.Src.Port())
		to, payload = p.Dst, p.Payload()
	case p.Kind == nat.Query && p.Dst.Port() == 0: // an echo request
		s = h.socket(nat.ICMP, p.Is6(), p.Src.Port())
		to, payload = netip.AddrPortFrom(p.Dst.Addr(), 0), p.L4()
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
