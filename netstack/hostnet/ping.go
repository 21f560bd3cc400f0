package hostnet

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"

	"golang.org/x/sys/unix"

	"github.com/fwx-dev/fwx/nat"
)

// listenPing opens an unprivileged ICMP echo socket (a "ping socket",
// SOCK_DGRAM with IPPROTO_ICMP, or IPPROTO_ICMPV6 for an IPv6 ap) whose
// identifier is ap's port: the kernel
// sends echo requests with that identifier and hands the socket the
// replies that carry it. The kernel allows ping sockets only to the groups
// in the sysctl net.ipv4.ping_group_range.
func (h *Host) listenPing(ap netip.AddrPort) (*net.UDPConn, error) {
	family, proto := unix.AF_INET, unix.IPPROTO_ICMP
	if ap.Addr().Is6() {
		family, proto = unix.AF_INET6, unix.IPPROTO_ICMPV6
	}
	fd, err := unix.Socket(family, unix.SOCK_DGRAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, proto)
	if err != nil {
		if errors.Is(err, unix.EACCES) || errors.Is(err, unix.EPERM) {
			h.pingDenied.Do(func() {
				h.opts.Log.Warn().Err(err).Msg("ICMP echo cannot cross: this user may not open ping sockets (see sysctl net.ipv4.ping_group_range)")
			})
		}
		return nil, fmt.Errorf("hostnet: ping socket: %w", err)
	}
	if err := h.setsockopts(fd); err != nil {
		unix.Close(fd)
		return nil, err
	}
	var sa unix.Sockaddr
	if ap.Addr().Is6() {
		sa = &unix.SockaddrInet6{Addr: ap.Addr().As16(), Port: int(ap.Port())}
	} else {
		sa = &unix.SockaddrInet4{Addr: ap.Addr().As4(), Port: int(ap.Port())}
	}
	if err := unix.Bind(fd, sa); err != nil {
		unix.Close(fd)
		if errors.Is(err, unix.EADDRINUSE) {
			return nil, fmt.Errorf("hostnet: ping identifier %d: %w: %w", ap.Port(), nat.ErrPortInUse, err)
		}
		return nil, fmt.Errorf("hostnet: ping identifier %d: %w", ap.Port(), err)
	}
	f := os.NewFile(uintptr(fd), "ping")
	defer f.Close() // FilePacketConn dups the descriptor
	c, err := net.FilePacketConn(f)
	if err != nil {
		return nil, fmt.Errorf("hostnet: ping socket: %w", err)
	}
	uc, ok := c.(*net.UDPConn)
	if !ok {
		c.Close()
		return nil, fmt.Errorf("hostnet: ping socket is a %T", c)
	}
	return uc, nil
}
