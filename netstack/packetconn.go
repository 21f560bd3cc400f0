package netstack

import (
	"bytes"
	"net"
	"net/netip"
	"os"
	"sync"
	"time"

	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/waiter"

	"github.com/fwx-dev/fwx/netstack/deadline"
)

var _ net.Conn = (*PacketConn)(nil)

// PacketConn is a UDP socket of a [Stack]. A connected one (from
// [UDPRequest.Accept] or [Stack.DialUDP]) is a net.Conn: Read and Write
// carry one datagram each. An unconnected one (from [Stack.ListenUDP])
// uses [PacketConn.ReadFromAddrPort] and [PacketConn.WriteToAddrPort].
//
// A Read into a buffer shorter than the datagram returns the first
// len(b) bytes and discards the rest, as on Linux. On a connected socket,
// an ICMP port unreachable from the peer makes the next Read or Write
// fail with ECONNREFUSED. Errors are *net.OpError values as for [Conn].
//
// The zero value is not usable. Methods are safe for concurrent use.
type PacketConn struct {
	s             *Stack
	ep            tcpip.Endpoint
	wq            *waiter.Queue
	local, remote netip.AddrPort // remote is zero when unconnected

	readable, writable     waiter.Entry
	readableCh, writableCh chan struct{}

	rd, wd deadline.Deadline

	readMu sync.Mutex
	rbuf   tcpip.SliceWriter // guarded by readMu

	writeMu sync.Mutex
	wbuf    bytes.Reader // guarded by writeMu

	closeOnce sync.Once
	closed    chan struct{}
}

// newPacketConn wraps a UDP endpoint and registers it with the stack. If
// the stack is closed, it closes the endpoint and fails.
func newPacketConn(s *Stack, ep tcpip.Endpoint, wq *waiter.Queue) (*PacketConn, error) {
	c := &PacketConn{s: s, ep: ep, wq: wq, closed: make(chan struct{})}
	if a, terr := ep.GetLocalAddress(); terr == nil {
		c.local = addrPort(a.Addr, a.Port)
	}
	if a, terr := ep.GetRemoteAddress(); terr == nil {
		c.remote = addrPort(a.Addr, a.Port)
	}
	c.readable, c.readableCh = waiter.NewChannelEntry(waiter.ReadableEvents | waiter.EventErr)
	c.writable, c.writableCh = waiter.NewChannelEntry(waiter.WritableEvents | waiter.EventErr)
	wq.EventRegister(&c.readable)
	wq.EventRegister(&c.writable)
	if err := s.track(c); err != nil {
		c.abort()
		return nil, err
	}
	return c, nil
}

// Read implements net.Conn: it returns the next datagram.
func (c *PacketConn) Read(b []byte) (int, error) {
	n, _, err := c.read(b, false)
	return n, err
}

// ReadFromAddrPort returns the next datagram and its sender.
func (c *PacketConn) ReadFromAddrPort(b []byte) (int, netip.AddrPort, error) {
	return c.read(b, true)
}

func (c *PacketConn) read(b []byte, wantAddr bool) (int, netip.AddrPort, error) {
	c.readMu.Lock()
	defer c.readMu.Unlock()
	for {
		select {
		case <-c.closed:
			return 0, netip.AddrPort{}, c.opError("read", c.remote, ErrClosed)
		case <-c.rd.Done():
			return 0, netip.AddrPort{}, c.opError("read", c.remote, os.ErrDeadlineExceeded)
		default:
		}
		c.rbuf = b
		res, terr := c.ep.Read(&c.rbuf, tcpip.ReadOptions{NeedRemoteAddr: wantAddr})
		c.rbuf = nil
		switch terr.(type) {
		case nil:
			var from netip.AddrPort
			if wantAddr {
				from = addrPort(res.RemoteAddr.Addr, res.RemoteAddr.Port)
			}
			return res.Count, from, nil
		case *tcpip.ErrWouldBlock:
		case *tcpip.ErrClosedForReceive:
			return 0, netip.AddrPort{}, c.opError("read", c.remote, ErrClosed)
		default:
			return 0, netip.AddrPort{}, c.opError("read", c.remote, goError(terr))
		}
		select {
		case <-c.readableCh:
		case <-c.rd.Done():
		case <-c.closed:
		}
	}
}

// Write implements net.Conn: it sends b as one datagram to the connected
// peer.
func (c *PacketConn) Write(b []byte) (int, error) {
	return c.write(b, nil, c.remote)
}

// WriteToAddrPort sends b as one datagram to addr. On a Transparent stack
// the source is the socket's address, whatever it is.
func (c *PacketConn) WriteToAddrPort(b []byte, addr netip.AddrPort) (int, error) {
	if checkAddr(addr.Addr()) != nil || addr.Port() == 0 {
		return 0, c.opError("write", addr, ErrAddress)
	}
	to := fullAddr(addr)
	return c.write(b, &to, addr)
}

func (c *PacketConn) write(b []byte, to *tcpip.FullAddress, dst netip.AddrPort) (int, error) {
	c.writeMu.Lock()
	defer c.writeMu.Unlock()
	for {
		select {
		case <-c.closed:
			return 0, c.opError("write", dst, ErrClosed)
		case <-c.wd.Done():
			return 0, c.opError("write", dst, os.ErrDeadlineExceeded)
		default:
		}
		c.wbuf.Reset(b)
		n, terr := c.ep.Write(&c.wbuf, tcpip.WriteOptions{To: to})
		c.wbuf.Reset(nil)
		switch terr.(type) {
		case nil:
			return int(n), nil
		case *tcpip.ErrWouldBlock:
		default:
			return 0, c.opError("write", dst, goError(terr))
		}
		select {
		case <-c.writableCh:
		case <-c.wd.Done():
		case <-c.closed:
		}
	}
}

// Close implements net.Conn. It wakes a waiting Read or Write, which
// returns [ErrClosed]; later datagrams of the flow are no longer taken by
// this socket. A second Close returns ErrClosed.
func (c *PacketConn) Close() error {
	if !c.close() {
		return c.opError("close", c.remote, ErrClosed)
	}
	return nil
}

// abort implements closer.
func (c *PacketConn) abort() { c.close() }

func (c *PacketConn) close() bool {
	did := false
	c.closeOnce.Do(func() {
		did = true
		close(c.closed)
		c.ep.Close()
		c.wq.EventUnregister(&c.readable)
		c.wq.EventUnregister(&c.writable)
		c.rd.Stop()
		c.wd.Stop()
		c.s.untrack(c)
	})
	return did
}

// LocalAddrPort returns the socket's address: for a socket from
// [UDPRequest.Accept], the address the client sent to.
func (c *PacketConn) LocalAddrPort() netip.AddrPort { return c.local }

// RemoteAddrPort returns the connected peer's address, or the zero
// AddrPort for an unconnected socket.
func (c *PacketConn) RemoteAddrPort() netip.AddrPort { return c.remote }

// LocalAddr implements net.Conn. It is a *net.UDPAddr.
func (c *PacketConn) LocalAddr() net.Addr { return net.UDPAddrFromAddrPort(c.local) }

// RemoteAddr implements net.Conn. It is a *net.UDPAddr, or nil when
// unconnected.
func (c *PacketConn) RemoteAddr() net.Addr { return netAddr("udp", c.remote) }

// SetDeadline implements net.Conn.
func (c *PacketConn) SetDeadline(t time.Time) error {
	c.rd.Set(t)
	c.wd.Set(t)
	return nil
}

// SetReadDeadline implements net.Conn.
func (c *PacketConn) SetReadDeadline(t time.Time) error {
	c.rd.Set(t)
	return nil
}

// SetWriteDeadline implements net.Conn.
func (c *PacketConn) SetWriteDeadline(t time.Time) error {
	c.wd.Set(t)
	return nil
}

func (c *PacketConn) opError(op string, dst netip.AddrPort, err error) error {
	return opError(op, "udp", c.local, dst, err)
}
