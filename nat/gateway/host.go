package gateway

import (
	"context"
	"errors"
	"io"
	"net"
	"net/netip"
	"sync/atomic"
	"syscall"
	"time"

	"gvisor.dev/gvisor/pkg/tcpip/header"

	"github.com/fwx-dev/fwx/nat"
	"github.com/fwx-dev/fwx/session"
)

// Host mode's TCP: the client's connection ends in the inside netstack (as
// every TCP flow does in host mode), and its outside is an ordinary host
// socket. No packet of the outside crosses the NAT table, so what the
// socket sees is told to the flow (nat.Flow.Observe), and connections a
// host listener accepts are admitted by the table (nat.Table.Admit) as a
// SYN would have been: pinholes, published servers and their rules apply
// the same.

// dialHost connects to remote from the flow's external endpoint local.
func (u *userPath) dialHost(ctx context.Context, local, remote netip.AddrPort) (session.Conn, error) {
	f := u.table.LookupInbound(nat.TCP, remote, local, u.clock.Now())
	c, err := u.host.DialTCP(ctx, local, remote)
	if err != nil {
		if f != nil && errors.Is(err, syscall.ECONNREFUSED) {
			u.table.Observe(f, false, 0, header.TCPFlagRst, u.clock.Now())
		}
		return nil, err
	}
	return u.hostConn(c, f), nil
}

// listenHost listens on a host port the table holds for a bind or a
// publication.
func (u *userPath) listenHost(local netip.AddrPort) (session.Listener, error) {
	ln, err := u.host.ListenTCP(local)
	if err != nil {
		return nil, err
	}
	return &hostListener{u: u, ln: ln, local: local}, nil
}

// hostListener accepts the connections the table admits and resets the
// others.
type hostListener struct {
	u     *userPath
	ln    *net.TCPListener
	local netip.AddrPort
}

func (l *hostListener) Accept() (session.Conn, error) {
	for {
		c, err := l.ln.AcceptTCP()
		if err != nil {
			return nil, err
		}
		remote := c.RemoteAddr().(*net.TCPAddr).AddrPort()
		remote = netip.AddrPortFrom(remote.Addr().Unmap(), remote.Port())
		l.awaitArmed(remote)
		now := l.u.clock.Now()
		f := l.u.table.Admit(nat.TCP, remote, l.local, now)
		if f == nil {
			// The kernel completed the handshake before fwx could say
			// no: the closest to a refused SYN is a RST now.
			c.SetLinger(0)
			c.Close()
			continue
		}
		l.u.table.Observe(f, false, 0, header.TCPFlagSyn, now)
		return l.u.hostConn(c, f), nil
	}
}

// armWait bounds how long a connection the host accepted waits for its
// pinhole to be armed.
const armWait = 10 * time.Second

// awaitArmed holds a connection the host's kernel accepted for a pinhole
// that is reserved but not armed yet (an FTP PORT before the server's
// 200), as router mode holds its SYN: until the pinhole is armed or gone,
// at most armWait.
func (l *hostListener) awaitArmed(remote netip.AddrPort) {
	deadline := time.Now().Add(armWait)
	for l.u.table.Unarmed(nat.TCP, remote, l.local, l.u.clock.Now()) && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
}

func (l *hostListener) Close() error { return l.ln.Close() }

// hostTCP is a host TCP connection as a session.Conn. Reading from it
// keeps its flow alive and counts the bytes received; its end of stream
// and resets reach the flow's TCP state.
type hostTCP struct {
	*net.TCPConn
	u       *userPath
	flow    *nat.Flow // nil if the flow is already gone
	local   netip.AddrPort
	remote  netip.AddrPort
	aborted atomic.Bool
}

func (u *userPath) hostConn(c *net.TCPConn, f *nat.Flow) *hostTCP {
	unmap := func(a net.Addr) netip.AddrPort {
		ap := a.(*net.TCPAddr).AddrPort()
		return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
	}
	return &hostTCP{TCPConn: c, u: u, flow: f, local: unmap(c.LocalAddr()), remote: unmap(c.RemoteAddr())}
}

func (c *hostTCP) Read(p []byte) (int, error) {
	n, err := c.TCPConn.Read(p)
	if c.flow != nil {
		var flags header.TCPFlags
		switch {
		case err == nil:
		case errors.Is(err, syscall.ECONNRESET):
			flags = header.TCPFlagRst
		case errors.Is(err, io.EOF):
			flags = header.TCPFlagFin
		}
		c.u.table.Observe(c.flow, false, n, flags, c.u.clock.Now())
	}
	if err != nil && c.aborted.Load() {
		// After Abort the socket is closed; say so as a reset, as
		// session.Socket promises.
		return n, syscall.ECONNRESET
	}
	return n, err
}

// Abort resets the connection: a RST to the peer.
func (c *hostTCP) Abort() error {
	c.aborted.Store(true)
	c.SetLinger(0)
	return c.TCPConn.Close()
}

func (c *hostTCP) LocalAddrPort() netip.AddrPort  { return c.local }
func (c *hostTCP) RemoteAddrPort() netip.AddrPort { return c.remote }
