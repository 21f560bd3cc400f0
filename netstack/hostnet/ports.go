package hostnet

import (
	"context"
	"fmt"
	"net"
	"net/netip"

	"github.com/fwx-dev/fwx/nat"
)

// An external port is fwx's while a host socket holds it: a UDP socket or
// a ping socket carries a mapping's packets both ways; a TCP listener
// waits for the connections of a bound or published port. A TCP mapping
// needs no socket of its own: each of its connections dials from the port
// ([Host.DialTCP]).

// sockKey names the packet socket of one UDP port or ICMP identifier of
// one family: IPv4 and IPv6 have a port space each.
type sockKey struct {
	proto nat.Proto
	v6    bool
	port  uint16
}

// socket returns the packet socket holding port of family v6, or nil.
func (h *Host) socket(p nat.Proto, v6 bool, port uint16) *packetSocket {
	if v, ok := h.sockets.Load(sockKey{p, v6, port}); ok {
		return v.(*packetSocket)
	}
	return nil
}

// packetSocket is the host socket of one UDP port or ICMP identifier.
type packetSocket struct {
	proto nat.Proto
	ext   netip.AddrPort // the external endpoint it stands for
	conn  *net.UDPConn
}

// heldListener is a TCP listener held for a bound or published port until
// ListenTCP hands it out.
type heldListener struct {
	ln    *net.TCPListener
	taken bool
}

// Hold implements nat.Ports: it binds the host socket that makes ap
// fwx's. Ports on other addresses (fwx's inside address, for redirects)
// are not the host's, and need nothing.
func (h *Host) Hold(p nat.Proto, ap netip.AddrPort, inbound bool) error {
	if !h.owns(ap.Addr()) || (p == nat.TCP && !inbound) {
		return nil
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.isClosed {
		return errClosed
	}
	switch p {
	case nat.TCP:
		ln, err := h.listen(ap)
		if err != nil {
			return err
		}
		h.listeners[ap] = &heldListener{ln: ln}
	case nat.UDP:
		c, err := h.listenUDP(ap)
		if err != nil {
			return err
		}
		s := &packetSocket{proto: p, ext: ap, conn: c}
		if err := recvErr(s); err != nil {
			c.Close()
			return fmt.Errorf("hostnet: UDP %v: IP(V6)_RECVERR: %w", ap, err)
		}
		h.start(s)
	case nat.ICMP:
		c, err := h.listenPing(ap)
		if err != nil {
			return err
		}
		h.start(&packetSocket{proto: p, ext: ap, conn: c})
	}
	return nil
}

// Release implements nat.Ports: it closes the socket that held ap. A
// listener ListenTCP handed out belongs to its taker, who closes it.
func (h *Host) Release(p nat.Proto, ap netip.AddrPort) {
	if !h.owns(ap.Addr()) {
		return
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	switch p {
	case nat.TCP:
		if l := h.listeners[ap]; l != nil {
			if !l.taken {
				l.ln.Close()
			}
			delete(h.listeners, ap)
		}
	case nat.UDP, nat.ICMP:
		if v, ok := h.sockets.LoadAndDelete(sockKey{p, ap.Addr().Is6(), ap.Port()}); ok {
			v.(*packetSocket).conn.Close()
		}
	}
}

// ListenTCP returns a listener on local: the one Hold bound for it, or a
// new one. The caller owns it and closes it.
func (h *Host) ListenTCP(local netip.AddrPort) (*net.TCPListener, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.isClosed {
		return nil, errClosed
	}
	if l := h.listeners[local]; l != nil && !l.taken {
		l.taken = true
		return l.ln, nil
	}
	return h.listen(local)
}

func (h *Host) listen(ap netip.AddrPort) (*net.TCPListener, error) {
	lc := net.ListenConfig{Control: h.control}
	ln, err := lc.Listen(context.Background(), network("tcp", ap.Addr()), ap.String())
	if err != nil {
		if inUse(err) {
			return nil, fmt.Errorf("hostnet: listen on %v: %w: %w", ap, nat.ErrPortInUse, err)
		}
		return nil, fmt.Errorf("hostnet: listen on %v: %w", ap, err)
	}
	return ln.(*net.TCPListener), nil
}

func (h *Host) listenUDP(ap netip.AddrPort) (*net.UDPConn, error) {
	lc := net.ListenConfig{Control: h.control}
	c, err := lc.ListenPacket(context.Background(), network("udp", ap.Addr()), ap.String())
	if err != nil {
		if inUse(err) {
			return nil, fmt.Errorf("hostnet: bind UDP %v: %w: %w", ap, nat.ErrPortInUse, err)
		}
		return nil, fmt.Errorf("hostnet: bind UDP %v: %w", ap, err)
	}
	return c.(*net.UDPConn), nil
}

// start registers a packet socket and starts its reader. h.mu is held.
func (h *Host) start(s *packetSocket) {
	h.sockets.Store(sockKey{s.proto, s.ext.Addr().Is6(), s.ext.Port()}, s)
	h.wg.Add(1)
	go func() {
		defer h.wg.Done()
		h.receive(s)
	}()
}
