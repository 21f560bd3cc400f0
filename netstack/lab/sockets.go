package lab

import (
	"bytes"
	"context"
	"net"
	"net/netip"

	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/adapters/gonet"
	"gvisor.dev/gvisor/pkg/tcpip/header"
	"gvisor.dev/gvisor/pkg/tcpip/network/ipv4"
	"gvisor.dev/gvisor/pkg/tcpip/network/ipv6"
	"gvisor.dev/gvisor/pkg/tcpip/transport/tcp"
	"gvisor.dev/gvisor/pkg/waiter"
)

// Sockets. Everything here returns net package types whose errors are
// *net.OpError values wrapping a syscall.Errno where a real socket would
// have one (see errors.go).

// listenBacklog is the accept queue length of ListenTCP.
const listenBacklog = 128

// DialTCP connects to dst from the host's address and an ephemeral port.
// Connection refused (an RST in reply to the SYN) is reported as an error
// wrapping syscall.ECONNREFUSED.
func (h *Host) DialTCP(ctx context.Context, dst netip.AddrPort) (net.Conn, error) {
	return h.dialTCP(ctx, netip.AddrPort{}, dst)
}

// DialTCPFrom connects to dst from src, a fixed local address and port,
// for tests that check that the code under test keeps (or changes) the
// source port. An unspecified src address means the host's own; port 0
// means an ephemeral port. SO_REUSEADDR is set, so one src may be used for
// several destinations at once (as in RFC 4787 mapping tests). As on
// Linux, dialing the same dst from the same src again fails with
// EADDRNOTAVAIL while the earlier connection holds the 4-tuple, including
// the 60 s of TIME-WAIT when this side closed first.
func (h *Host) DialTCPFrom(ctx context.Context, src, dst netip.AddrPort) (net.Conn, error) {
	return h.dialTCP(ctx, src, dst)
}

func (h *Host) dialTCP(ctx context.Context, src, dst netip.AddrPort) (net.Conn, error) {
	var wq waiter.Queue
	ep, terr := h.stack.NewEndpoint(tcp.ProtocolNumber, netProto(dst.Addr()), &wq)
	if terr != nil {
		return nil, opError("dial", "tcp", dst, tcpipErr(terr))
	}
	entry, notify := waiter.NewChannelEntry(waiter.WritableEvents)
	wq.EventRegister(&entry)
	defer wq.EventUnregister(&entry)

	if src.IsValid() {
		ep.SocketOptions().SetReuseAddress(true)
		if terr := ep.Bind(fullAddr(src)); terr != nil {
			ep.Close()
			return nil, opError("bind", "tcp", src, tcpipErr(terr))
		}
	}
	terr = ep.Connect(fullAddr(dst))
	if _, ok := terr.(*tcpip.ErrConnectStarted); ok {
		select {
		case <-ctx.Done():
			ep.Close()
			return nil, opError("dial", "tcp", dst, ctx.Err())
		case <-notify:
		}
		terr = ep.LastError()
	}
	if terr != nil {
		ep.Close()
		return nil, opError("dial", "tcp", dst, tcpipErr(terr))
	}
	return newTCPConn(gonet.NewTCPConn(&wq, ep)), nil
}

// ListenTCP listens on port on all the host's IPv4 addresses. Port 0 picks
// an ephemeral port; the listener's Addr tells which.
func (h *Host) ListenTCP(port uint16) (net.Listener, error) {
	return h.ListenTCPOn(netip.AddrPortFrom(netip.IPv4Unspecified(), port))
}

// ListenTCPOn listens on addr: one of the host's addresses, or the
// unspecified address of a family (all the host's addresses of it).
func (h *Host) ListenTCPOn(addr netip.AddrPort) (net.Listener, error) {
	var wq waiter.Queue
	ep, terr := h.stack.NewEndpoint(tcp.ProtocolNumber, netProto(addr.Addr()), &wq)
	if terr != nil {
		return nil, opError("listen", "tcp", addr, tcpipErr(terr))
	}
	ep.SocketOptions().SetReuseAddress(true)
	if terr := ep.Bind(fullAddr(addr)); terr != nil {
		ep.Close()
		return nil, opError("listen", "tcp", addr, tcpipErr(terr))
	}
	if terr := ep.Listen(listenBacklog); terr != nil {
		ep.Close()
		return nil, opError("listen", "tcp", addr, tcpipErr(terr))
	}
	return &tcpListener{gonet.NewTCPListener(h.stack, &wq, ep)}, nil
}

// ListenUDP opens an unconnected UDP socket on port on all the host's IPv4
// addresses (port 0: ephemeral). Use ReadFrom and WriteTo; the addresses
// are *net.UDPAddr.
func (h *Host) ListenUDP(port uint16) (net.PacketConn, error) {
	return h.ListenUDPOn(netip.AddrPortFrom(netip.IPv4Unspecified(), port))
}

// ListenUDPOn opens an unconnected UDP socket on addr, as ListenTCPOn.
func (h *Host) ListenUDPOn(addr netip.AddrPort) (net.PacketConn, error) {
	return h.newUDP(netProto(addr.Addr()), addr, netip.AddrPort{})
}

// DialUDP opens a UDP socket connected to dst. src fixes the local address
// and port; the zero AddrPort, an unspecified address or port 0 leave the
// choice to the host.
//
// A connected socket learns of ICMP port-unreachable replies (RFC 1122
// 4.1.3.3): after one arrives, the next Read or Write fails with an error
// wrapping syscall.ECONNREFUSED, once, as on Linux; a Read already waiting
// returns that error when the ICMP message arrives. (gVisor's own gonet
// UDPConn would keep waiting; the lab's does not.)
func (h *Host) DialUDP(src, dst netip.AddrPort) (net.Conn, error) {
	if src.IsValid() && src.Port() == 0 && src.Addr().IsUnspecified() {
		src = netip.AddrPort{} // let Connect choose both
	}
	return h.newUDP(netProto(dst.Addr()), src, dst)
}

// Ping sends an ICMP echo request to dst with the given identifier,
// sequence number and payload, and waits until the matching echo reply
// arrives or ctx is done. It returns the address the reply came from.
//
// The identifier doubles as the ICMP socket's port, as in Linux's
// unprivileged ping sockets: id 0 picks one, and two Pings with the same
// nonzero id cannot run at once on one host. Replies with another sequence
// number are ignored.
func (h *Host) Ping(ctx context.Context, dst netip.Addr, id, seq uint16, payload []byte) (netip.Addr, error) {
	p := netip.AddrPortFrom(dst, 0)
	var wq waiter.Queue
	ep, terr := h.stack.NewEndpoint(icmpProto(dst), netProto(dst), &wq)
	if terr != nil {
		return netip.Addr{}, opError("ping", "ip", p, tcpipErr(terr))
	}
	defer ep.Close()
	entry, notify := waiter.NewChannelEntry(waiter.ReadableEvents)
	wq.EventRegister(&entry)
	defer wq.EventUnregister(&entry)
	if terr := ep.Bind(tcpip.FullAddress{Port: id}); terr != nil {
		return netip.Addr{}, opError("ping", "ip", p, tcpipErr(terr))
	}

	req := make([]byte, header.ICMPv4MinimumSize+len(payload))
	replyType := byte(header.ICMPv4EchoReply)
	if dst.Is4() {
		header.ICMPv4(req).SetType(header.ICMPv4Echo)
	} else {
		header.ICMPv6(req).SetType(header.ICMPv6EchoRequest)
		replyType = byte(header.ICMPv6EchoReply)
	}
	header.ICMPv4(req).SetSequence(seq) // same offset in ICMPv6
	copy(req[header.ICMPv4MinimumSize:], payload)
	to := fullAddr(p)
	if _, terr := ep.Write(bytes.NewReader(req), tcpip.WriteOptions{To: &to}); terr != nil {
		return netip.Addr{}, opError("ping", "ip", p, tcpipErr(terr))
	}

	buf := make([]byte, len(req)+64)
	for {
		w := tcpip.SliceWriter(buf)
		res, terr := ep.Read(&w, tcpip.ReadOptions{NeedRemoteAddr: true})
		if _, ok := terr.(*tcpip.ErrWouldBlock); ok {
			select {
			case <-ctx.Done():
				return netip.Addr{}, opError("ping", "ip", p, ctx.Err())
			case <-notify:
			}
			continue
		}
		if terr != nil {
			return netip.Addr{}, opError("ping", "ip", p, tcpipErr(terr))
		}
		reply := buf[:res.Count]
		if len(reply) >= header.ICMPv4MinimumSize && reply[0] == replyType &&
			header.ICMPv4(reply).Sequence() == seq {
			return netipAddr(res.RemoteAddr.Addr), nil
		}
	}
}

// tcpConn translates gonet's errors.
type tcpConn struct {
	*gonet.TCPConn
	// The addresses as they were when the connection was made: gonet's own
	// return nil once the endpoint is reset, and a test that looks at a
	// connection its peer already closed should not crash on that.
	local, remote net.Addr
}

func newTCPConn(c *gonet.TCPConn) *tcpConn {
	tc := &tcpConn{TCPConn: c, local: c.LocalAddr(), remote: c.RemoteAddr()}
	// Reset before it was even handed out: keep the types callers expect.
	if tc.local == nil {
		tc.local = &net.TCPAddr{}
	}
	if tc.remote == nil {
		tc.remote = &net.TCPAddr{}
	}
	return tc
}

// LocalAddr implements net.Conn; it is the address when the connection was
// made.
func (c *tcpConn) LocalAddr() net.Addr { return c.local }

// RemoteAddr implements net.Conn; it is the address when the connection was
// made.
func (c *tcpConn) RemoteAddr() net.Addr { return c.remote }

func (c *tcpConn) Read(b []byte) (int, error) {
	n, err := c.TCPConn.Read(b)
	return n, translate(err)
}

func (c *tcpConn) Write(b []byte) (int, error) {
	n, err := c.TCPConn.Write(b)
	return n, translate(err)
}

// tcpListener returns tcpConns.
type tcpListener struct{ *gonet.TCPListener }

func (l *tcpListener) Accept() (net.Conn, error) {
	c, err := l.TCPListener.Accept()
	if err != nil {
		return nil, translate(err)
	}
	return newTCPConn(c.(*gonet.TCPConn)), nil
}

func fullAddr(ap netip.AddrPort) tcpip.FullAddress {
	return tcpip.FullAddress{Addr: tcpipAddr(ap.Addr()), Port: ap.Port()}
}

func netProto(a netip.Addr) tcpip.NetworkProtocolNumber {
	if a.Is4() || a.Is4In6() {
		return ipv4.ProtocolNumber
	}
	return ipv6.ProtocolNumber
}

func icmpProto(a netip.Addr) tcpip.TransportProtocolNumber {
	if a.Is4() || a.Is4In6() {
		return header.ICMPv4ProtocolNumber
	}
	return header.ICMPv6ProtocolNumber
}
