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

// sockKey names the packet socket of one UDP port or ICMP identifier.
type sockKey struct {
	proto nat.Proto
	port  uint16
}

// socket returns the packet socket holding port, or nil.
func (h *Host) socket(p nat.Proto, port uint16) *packetSocket {
	if v, ok := h.sockets.Load(sockKey{p, port}); ok {
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
	if ap.Addr() != h.opts.Addr || (p == nat.TCP && !inbound) {
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
		h.listeners[ap.Port()] = &heldListener{ln: ln}
	case nat.UDP:
		c, err := h.listenUDP(ap)
		if err != nil {
			return err
		}
		s := &packetSocket{proto: p, ext: ap, conn: c}
		if err := recvErr(s); err != nil {
			c.Close()
			return fmt.Errorf("hostnet: UDP %v: IP_RECVERR: %w", ap, err)
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
	if ap.Addr() != h.opts.Addr {
		return
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	port := ap.Port()
	switch p {
	case nat.TCP:
		if l := h.listeners[port]; l != nil {
			if !l.taken {
				l.ln.Close()
			}
			delete(h.listeners, port)
		}
	case nat.UDP, nat.ICMP:
		if v, ok := h.sockets.LoadAndDelete(sockKey{p, port}); ok {
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
	if l := h.listeners[local.Port()]; l != nil && local.Addr() == h.opts.Addr && !l.taken {
		l.taken = true
		return l.ln, nil
	}
	return h.listen(local)
}

func (h *Host) listen(ap netip.AddrPort) (*net.TCPListener, error) {
	lc := net.ListenConfig{Control: h.control}
	ln, err := lc.Listen(context.Background(), "tcp4", ap.String())
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
	c, err := lc.ListenPacket(context.Background(), "udp4", ap.String())
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
	h.sockets.Store(sockKey{s.proto, s.ext.Port()}, s)
	h.wg.Add(1)
	go func() {
		defer h.wg.Done()
		h.receive(s)
	}()
}
