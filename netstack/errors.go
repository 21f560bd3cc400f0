package netstack

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"syscall"

	"gvisor.dev/gvisor/pkg/tcpip"
)

// Errors a caller may test for with errors.Is. Socket errors that a Linux
// socket would report as an errno (connection refused, reset, timed out...)
// wrap the matching syscall.Errno instead, so that one check works against
// this package and the operating system alike:
//
//	if errors.Is(err, syscall.ECONNREFUSED) { ... }
var (
	// ErrClosed is returned by every operation on a closed [Stack], and by
	// operations on a closed [Conn], [PacketConn] or [Listener]. It wraps
	// net.ErrClosed.
	ErrClosed = fmt.Errorf("netstack: %w", net.ErrClosed)

	// ErrDecided is returned by Accept on a [TCPRequest] or [UDPRequest]
	// that was already accepted, reset or dropped, or whose handler has
	// returned.
	ErrDecided = errors.New("netstack: request already decided")

	// ErrAddress is returned when an address given to the Stack is not
	// usable (invalid, IPv4-mapped IPv6, or of no family the stack has).
	ErrAddress = errors.New("netstack: invalid address")
)

// goError converts a gVisor error, which is deliberately not a Go error,
// to one: the syscall.Errno a Linux socket would report where there is a
// natural one, else an error carrying gVisor's description. It returns nil
// for nil.
func goError(terr tcpip.Error) error {
	if terr == nil {
		return nil
	}
	if errno := errnoOf(terr); errno != 0 {
		return errno
	}
	return &stackError{msg: terr.String()}
}

// errnoOf returns the errno matching terr, or 0. The table follows what
// gVisor's own sentry reports to applications (pkg/syserr).
func errnoOf(terr tcpip.Error) syscall.Errno {
	switch terr.(type) {
	case *tcpip.ErrConnectionRefused:
		return syscall.ECONNREFUSED
	case *tcpip.ErrConnectionReset:
		return syscall.ECONNRESET
	case *tcpip.ErrConnectionAborted, *tcpip.ErrAborted:
		return syscall.ECONNABORTED
	case *tcpip.ErrTimeout:
		return syscall.ETIMEDOUT
	case *tcpip.ErrHostUnreachable:
		return syscall.EHOSTUNREACH
	case *tcpip.ErrHostDown:
		return syscall.EHOSTDOWN
	case *tcpip.ErrNetworkUnreachable, *tcpip.ErrNoNet:
		return syscall.ENETUNREACH
	case *tcpip.ErrNoPortAvailable:
		return syscall.EAGAIN
	case *tcpip.ErrPortInUse:
		return syscall.EADDRINUSE
	case *tcpip.ErrBadLocalAddress:
		return syscall.EADDRNOTAVAIL
	case *tcpip.ErrAddressFamilyNotSupported:
		return syscall.EAFNOSUPPORT
	case *tcpip.ErrClosedForSend:
		return syscall.EPIPE
	case *tcpip.ErrNotConnected:
		return syscall.ENOTCONN
	case *tcpip.ErrAlreadyConnected:
		return syscall.EISCONN
	case *tcpip.ErrAlreadyConnecting:
		return syscall.EALREADY
	case *tcpip.ErrMessageTooLong:
		return syscall.EMSGSIZE
	case *tcpip.ErrNoBufferSpace:
		return syscall.ENOBUFS
	case *tcpip.ErrWouldBlock:
		return syscall.EWOULDBLOCK
	case *tcpip.ErrDestinationRequired:
		return syscall.EDESTADDRREQ
	case *tcpip.ErrNotPermitted:
		return syscall.EPERM
	case *tcpip.ErrNotSupported:
		return syscall.EOPNOTSUPP
	case *tcpip.ErrAlreadyBound, *tcpip.ErrInvalidEndpointState, *tcpip.ErrInvalidOptionValue:
		return syscall.EINVAL
	}
	return 0
}

// stackError is a gVisor error with no errno equivalent.
type stackError struct{ msg string }

func (e *stackError) Error() string { return "netstack: " + e.msg }

// opError returns the *net.OpError a real socket operation would: op is
// "dial", "listen", "read"..., network "tcp" or "udp"; src and dst may be
// the zero AddrPort.
func opError(op, network string, src, dst netip.AddrPort, err error) error {
	return &net.OpError{Op: op, Net: network, Source: netAddr(network, src), Addr: netAddr(network, dst), Err: err}
}

// netAddr returns ap as a *net.TCPAddr or *net.UDPAddr, or nil (a nil
// interface, not a typed nil) for the zero AddrPort.
func netAddr(network string, ap netip.AddrPort) net.Addr {
	if !ap.IsValid() {
		return nil
	}
	if network == "udp" {
		return net.UDPAddrFromAddrPort(ap)
	}
	return net.TCPAddrFromAddrPort(ap)
}
