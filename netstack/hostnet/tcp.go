package hostnet

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"syscall"
)

// DialTCP connects to remote from local, the external endpoint the NAT
// table gave the flow. When the host has that port (another program uses
// it, or a connection from it to the same server lingers in TIME-WAIT), it
// dials from a port the host picks: the server sees another port, as it
// would behind any NAT.
func (h *Host) DialTCP(ctx context.Context, local, remote netip.AddrPort) (*net.TCPConn, error) {
	if !h.owns(local.Addr()) || local.Addr().Is6() != remote.Addr().Is6() {
		a, ok := h.addrOf(remote.Addr().Is6())
		if !ok {
			return nil, fmt.Errorf("hostnet: dial %v: fwx has no host address of its family", remote)
		}
		local = netip.AddrPortFrom(a, local.Port())
	}
	c, err := h.dial(ctx, local, remote)
	if err != nil && local.Port() != 0 && (inUse(err) || errors.Is(err, syscall.EADDRNOTAVAIL)) {
		c, err = h.dial(ctx, netip.AddrPortFrom(local.Addr(), 0), remote)
	}
	return c, err
}

func (h *Host) dial(ctx context.Context, local, remote netip.AddrPort) (*net.TCPConn, error) {
	d := net.Dialer{LocalAddr: net.TCPAddrFromAddrPort(local), Control: h.control}
	c, err := d.DialContext(ctx, network("tcp", remote.Addr()), remote.String())
	if err != nil {
		return nil, fmt.Errorf("hostnet: %w", err)
	}
	return c.(*net.TCPConn), nil
}
