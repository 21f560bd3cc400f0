package lab

import (
	"net"
	"net/netip"
	"os"
	"sync"
	"time"

	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/adapters/gonet"
	"gvisor.dev/gvisor/pkg/tcpip/transport/udp"
	"gvisor.dev/gvisor/pkg/waiter"

	"github.com/fwx-dev/fwx/netstack/deadline"
)

// udpConn is a UDP socket. Writes go through gonet; reads are done here,
// for two behaviours of real sockets that gonet's UDPConn lacks: a Read
// that is waiting when an ICMP error arrives on a connected socket returns
// the error (gonet waits for data only), and Close wakes a waiting Read
// (gonet's UDP endpoint does not notify on Close).
type udpConn struct {
	*gonet.UDPConn // Write, WriteTo, SetWriteDeadline, LocalAddr, RemoteAddr

	ep     tcpip.Endpoint
	wq     *waiter.Queue
	rd     deadline.Deadline
	closed chan struct{}
	once   sync.Once
}

// newUDP opens a UDP socket bound to laddr (if valid) and connected to
// raddr (if valid).
func (h *Host) newUDP(proto tcpip.NetworkProtocolNumber, laddr, raddr netip.AddrPort) (*udpConn, error) {
	wq := new(waiter.Queue)
	ep, terr := h.stack.NewEndpoint(udp.ProtocolNumber, proto, wq)
	if terr != nil {
		return nil, opError("listen", "udp", laddr, tcpipErr(terr))
	}
	if laddr.IsValid() {
		if terr := ep.Bind(fullAddr(laddr)); terr != nil {
			ep.Close()
			return nil, opError("bind", "udp", laddr, tcpipErr(terr))
		}
	}
	if raddr.IsValid() {
		if terr := ep.Connect(fullAddr(raddr)); terr != nil {
			ep.Close()
			return nil, opError("dial", "udp", raddr, tcpipErr(terr))
		}
	}
	return &udpConn{
		UDPConn: gonet.NewUDPConn(wq, ep),
		ep:      ep,
		wq:      wq,
		closed:  make(chan struct{}),
	}, nil
}

// Read implements net.Conn.
func (c *udpConn) Read(b []byte) (int, error) {
	n, _, err := c.read(b, false)
	return n, err
}

// ReadFrom implements net.PacketConn.
func (c *udpConn) ReadFrom(b []byte) (int, net.Addr, error) {
	return c.read(b, true)
}

func (c *udpConn) read(b []byte, wantAddr bool) (int, net.Addr, error) {
	// Register before the first attempt, so that nothing arriving between
	// the attempt and the wait is missed.
	entry, notify := waiter.NewChannelEntry(waiter.ReadableEvents | waiter.EventErr)
	c.wq.EventRegister(&entry)
	defer c.wq.EventUnregister(&entry)
	for {
		w := tcpip.SliceWriter(b)
		res, terr := c.ep.Read(&w, tcpip.ReadOptions{NeedRemoteAddr: wantAddr})
		switch terr.(type) {
		case nil:
			var from net.Addr
			if wantAddr {
				from = net.UDPAddrFromAddrPort(netip.AddrPortFrom(netipAddr(res.RemoteAddr.Addr), res.RemoteAddr.Port))
			}
			return res.Count, from, nil
		case *tcpip.ErrWouldBlock:
		case *tcpip.ErrClosedForReceive:
			return 0, nil, c.readError(net.ErrClosed)
		default:
			return 0, nil, c.readError(tcpipErr(terr))
		}
		select {
		case <-notify:
		case <-c.rd.Done():
			return 0, nil, c.readError(os.ErrDeadlineExceeded)
		case <-c.closed:
			return 0, nil, c.readError(net.ErrClosed)
		}
	}
}

func (c *udpConn) readError(err error) error {
	return &net.OpError{Op: "read", Net: "udp", Source: c.LocalAddr(), Addr: c.RemoteAddr(), Err: err}
}

// Write implements net.Conn.
func (c *udpConn) Write(b []byte) (int, error) {
	n, err := c.UDPConn.Write(b)
	return n, translate(err)
}

// WriteTo implements net.PacketConn.
func (c *udpConn) WriteTo(b []byte, addr net.Addr) (int, error) {
	n, err := c.UDPConn.WriteTo(b, addr)
	return n, translate(err)
}

// Close implements net.Conn. It wakes a waiting Read.
func (c *udpConn) Close() error {
	c.once.Do(func() {
		close(c.closed)
		c.UDPConn.Close()
	})
	return nil
}

// SetDeadline implements net.Conn.
func (c *udpConn) SetDeadline(t time.Time) error {
	c.rd.Set(t)
	return c.UDPConn.SetWriteDeadline(t)
}

// SetReadDeadline implements net.Conn.
func (c *udpConn) SetReadDeadline(t time.Time) error {
	c.rd.Set(t)
	return nil
}
