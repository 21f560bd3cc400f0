package lab

import (
	"errors"
	"net"
	"net/netip"
	"syscall"

	"gvisor.dev/gvisor/pkg/tcpip"
)

// gVisor reports socket errors as tcpip.Error values, which are not Go
// errors, and its gonet adapter flattens them into strings. The lab turns
// the common ones into the syscall.Errno a real socket would report, so a
// test can write errors.Is(err, syscall.ECONNREFUSED) and the same check
// holds against the operating system's sockets.
var errnos = map[string]syscall.Errno{}

func init() {
	for _, e := range []struct {
		err   tcpip.Error
		errno syscall.Errno
	}{
		{&tcpip.ErrConnectionRefused{}, syscall.ECONNREFUSED},
		{&tcpip.ErrConnectionReset{}, syscall.ECONNRESET},
		{&tcpip.ErrConnectionAborted{}, syscall.ECONNABORTED},
		{&tcpip.ErrTimeout{}, syscall.ETIMEDOUT},
		{&tcpip.ErrHostUnreachable{}, syscall.EHOSTUNREACH},
		{&tcpip.ErrHostDown{}, syscall.EHOSTDOWN},
		{&tcpip.ErrNetworkUnreachable{}, syscall.ENETUNREACH},
		{&tcpip.ErrNoPortAvailable{}, syscall.EAGAIN},
		{&tcpip.ErrAlreadyBound{}, syscall.EINVAL},
		{&tcpip.ErrAddressFamilyNotSupported{}, syscall.EAFNOSUPPORT},
		{&tcpip.ErrPortInUse{}, syscall.EADDRINUSE},
		{&tcpip.ErrBadLocalAddress{}, syscall.EADDRNOTAVAIL},
		{&tcpip.ErrClosedForSend{}, syscall.EPIPE},
		{&tcpip.ErrNotConnected{}, syscall.ENOTCONN},
		{&tcpip.ErrAlreadyConnected{}, syscall.EISCONN},
		{&tcpip.ErrMessageTooLong{}, syscall.EMSGSIZE},
		{&tcpip.ErrInvalidEndpointState{}, syscall.EINVAL},
	} {
		errnos[e.err.String()] = e.errno
	}
}

// tcpipErr converts a gVisor error to a Go error: the matching
// syscall.Errno when there is one.
func tcpipErr(err tcpip.Error) error {
	if errno, ok := errnos[err.String()]; ok {
		return errno
	}
	return errors.New(err.String())
}

// opError returns the *net.OpError a real socket operation would.
func opError(op, network string, addr netip.AddrPort, err error) error {
	var a net.Addr
	if addr.IsValid() {
		if network == "tcp" {
			a = net.TCPAddrFromAddrPort(addr)
		} else {
			a = net.UDPAddrFromAddrPort(addr)
		}
	}
	return &net.OpError{Op: op, Net: network, Addr: a, Err: err}
}

// translate rewrites an error from gonet so that its flattened gVisor
// error becomes a syscall.Errno. Other errors (io.EOF, timeouts) are
// returned as they are.
func translate(err error) error {
	var op *net.OpError
	if err == nil || !errors.As(err, &op) || op.Err == nil {
		return err
	}
	errno, ok := errnos[op.Err.Error()]
	if !ok {
		return err
	}
	c := *op
	c.Err = errno
	return &c
}
