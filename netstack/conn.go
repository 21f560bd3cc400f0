package netstack

import (
	"bytes"
	"io"
	"net"
	"net/netip"
	"os"
	"sync"
	"time"

	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/waiter"

	"github.com/fwx-dev/fwx/netstack/deadline"
)

var _ net.Conn = (*Conn)(nil)

// Conn is a TCP connection of a [Stack]: a net.Conn with half-close
// ([Conn.CloseWrite], [Conn.CloseRead]), abort ([Conn.Abort]) and netip
// addresses. Its errors are *net.OpError values wrapping the
// syscall.Errno a Linux socket would give (ECONNRESET, EPIPE...),
// os.ErrDeadlineExceeded, or [ErrClosed]; Read returns io.EOF after the
// peer's FIN.
//
// A Conn comes from [TCPRequest.Accept], [Stack.DialTCP] or
// [Listener.Accept]; the zero value is not usable. Its methods are safe
// for concurrent use; concurrent Reads (and concurrent Writes) are
// serialised, so the bytes of one Write are never interleaved with
// another's.
type Conn struct {
	s             *Stack
	ep            tcpip.Endpoint
	wq            *waiter.Queue
	local, remote netip.AddrPort

	// readable and writable are registered on wq for the Conn's life:
	// their channels hold one pending wake-up each.
	readable, writable     waiter.Entry
	readableCh, writableCh chan struct{}

	rd, wd deadline.Deadline

	readMu sync.Mutex
	rbuf   tcpip.SliceWriter // guarded by readMu; kept here so Read does not allocate

	writeMu sync.Mutex
	wbuf    bytes.Reader // guarded by writeMu

	closeOnce sync.Once
	closed    chan struct{}
}

// newConn wraps a connected endpoint and registers it with the stack. If
// the stack is closed, it aborts the endpoint and fails.
func newConn(s *Stack, ep tcpip.Endpoint, wq *waiter.Queue) (*Conn, error) {
	c := &Conn{s: s, ep: ep, wq: wq, closed: make(chan struct{})}
	if a, terr := ep.GetLocalAddress(); terr == nil {
		c.local = addrPort(a.Addr, a.Port)
	}
	if a, terr := ep.GetRemoteAddress(); terr == nil {
		c.remote = addrPort(a.Addr, a.Port)
	}
	c.readable, c.readableCh = waiter.NewChannelEntry(waiter.ReadableEvents | waiter.EventHUp | waiter.EventErr)
	c.writable, c.writableCh = waiter.NewChannelEntry(waiter.WritableEvents | waiter.EventHUp | waiter.EventErr)
	wq.EventRegister(&c.readable)
	wq.EventRegister(&c.writable)
	if err := s.track(c); err != nil {
		c.abort()
		return nil, err
	}
	return c, nil
}

// Read implements net.Conn. It waits until data, the peer's FIN (io.EOF),
// an error, the read deadline or Close.
func (c *Conn) Read(b []byte) (int, error) {
	c.readMu.Lock()
	defer c.readMu.Unlock()
	if len(b) == 0 {
		return 0, nil
	}
	for {
		select {
		case <-c.closed:
			return 0, c.opError("read", ErrClosed)
		case <-c.rd.Done():
			return 0, c.opError("read", os.ErrDeadlineExceeded)
		default:
		}
		c.rbuf = b
		res, terr := c.ep.Read(&c.rbuf, tcpip.ReadOptions{})
		c.rbuf = nil
		switch terr.(type) {
		case nil:
			// Tell auto-tuning how fast the application reads, as gonet
			// does; it grows the receive window from this.
			c.ep.ModerateRecvBuf(res.Count)
			return res.Count, nil
		case *tcpip.ErrWouldBlock:
		case *tcpip.ErrClosedForReceive:
			return 0, io.EOF
		default:
			return 0, c.opError("read", goError(terr))
		}
		select {
		case <-c.readableCh:
		case <-c.rd.Done():
		case <-c.closed:
		}
	}
}

// Write implements net.Conn. It waits while the send buffer is full (the
// peer reads slowly), until everything is queued, an error, the write
// deadline or Close.
func (c *Conn) Write(b []byte) (int, error) {
	c.writeMu.Lock()
	defer c.writeMu.Unlock()
	n := 0
	for {
		select {
		case <-c.closed:
			return n, c.opError("write", ErrClosed)
		case <-c.wd.Done():
			return n, c.opError("write", os.ErrDeadlineExceeded)
		default:
		}
		if n == len(b) {
			return n, nil
		}
		c.wbuf.Reset(b[n:])
		m, terr := c.ep.Write(&c.wbuf, tcpip.WriteOptions{})
		c.wbuf.Reset(nil)
		n += int(m)
		switch terr.(type) {
		case nil:
			continue // a partial write: try the rest at once
		case *tcpip.ErrWouldBlock:
		default:
			return n, c.opError("write", goError(terr))
		}
		select {
		case <-c.writableCh:
		case <-c.wd.Done():
		case <-c.closed:
		}
	}
}

// CloseWrite sends a FIN: the peer reads io.EOF once it has read what was
// written, and may go on sending (TCP half-close).
func (c *Conn) CloseWrite() error {
	if terr := c.ep.Shutdown(tcpip.ShutdownWrite); terr != nil {
		return c.opError("close", goError(terr))
	}
	return nil
}

// CloseRead shuts the reading side: Read returns io.EOF and data that
// arrives later is discarded.
func (c *Conn) CloseRead() error {
	if terr := c.ep.Shutdown(tcpip.ShutdownRead); terr != nil {
		return c.opError("close", goError(terr))
	}
	return nil
}

// Close implements net.Conn: an orderly close (FIN after the data still
// queued). A Read or Write waiting in another goroutine returns
// [ErrClosed]. A second Close returns ErrClosed.
func (c *Conn) Close() error {
	if !c.close(false) {
		return c.opError("close", ErrClosed)
	}
	return nil
}

// Abort closes the connection with a RST instead of a FIN (as SO_LINGER 0
// does), discarding data not yet sent; the peer's next read fails with
// ECONNRESET. It returns ErrClosed if the Conn was already closed.
func (c *Conn) Abort() error {
	if !c.close(true) {
		return c.opError("close", ErrClosed)
	}
	return nil
}

// abort implements closer.
func (c *Conn) abort() { c.close(true) }

// close closes the connection once, with a RST if reset; it reports
// whether this call closed it.
func (c *Conn) close(reset bool) bool {
	did := false
	c.closeOnce.Do(func() {
		did = true
		close(c.closed)
		if reset {
			c.ep.SocketOptions().SetLinger(tcpip.LingerOption{Enabled: true, Timeout: 0})
		}
		c.ep.Close()
		c.wq.EventUnregister(&c.readable)
		c.wq.EventUnregister(&c.writable)
		c.rd.Stop()
		c.wd.Stop()
		c.s.untrack(c)
	})
	return did
}

// LocalAddrPort returns the connection's local address: for a connection
// accepted from a Transparent stack's [TCPRequest], the address the
// client dialed.
func (c *Conn) LocalAddrPort() netip.AddrPort { return c.local }

// RemoteAddrPort returns the peer's address.
func (c *Conn) RemoteAddrPort() netip.AddrPort { return c.remote }

// LocalAddr implements net.Conn. It is a *net.TCPAddr.
func (c *Conn) LocalAddr() net.Addr { return net.TCPAddrFromAddrPort(c.local) }

// RemoteAddr implements net.Conn. It is a *net.TCPAddr.
func (c *Conn) RemoteAddr() net.Addr { return net.TCPAddrFromAddrPort(c.remote) }

// SetDeadline implements net.Conn.
func (c *Conn) SetDeadline(t time.Time) error {
	c.rd.Set(t)
	c.wd.Set(t)
	return nil
}

// SetReadDeadline implements net.Conn.
func (c *Conn) SetReadDeadline(t time.Time) error {
	c.rd.Set(t)
	return nil
}

// SetWriteDeadline implements net.Conn.
func (c *Conn) SetWriteDeadline(t time.Time) error {
	c.wd.Set(t)
	return nil
}

func (c *Conn) opError(op string, err error) error {
	return opError(op, "tcp", c.local, c.remote, err)
}
