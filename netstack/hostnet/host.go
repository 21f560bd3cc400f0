// Package hostnet is fwx's outside in host mode: the host's own network
// stack, reached through ordinary sockets, so that fwx needs no second
// device and no privilege. TCP leaves through [Host.DialTCP] and arrives
// through [Host.ListenTCP]; UDP and ICMP echo cross as packets: [Host] is
// a tun.Device whose packets are carried by one host socket per external
// port (UDP) or identifier (ICMP echo, through unprivileged ping sockets),
// held for as long as the NAT table's mapping holds the port (it
// implements nat.Ports).
//
//	NAT table ─ Write(packet) ─► host socket of the packet's source port ─► sendto
//	NAT table ◄─ Read(packet) ─ packet built from what a host socket received
//
// No routing loop: when the route to a server goes through fwx's own TUN,
// fwx's sockets must be kept out of it, by binding them to the uplink
// ([Options.Device], SO_BINDTODEVICE, unprivileged since Linux 5.7) or by
// marking them for a policy-routing rule ([Options.Mark], SO_MARK, which
// needs CAP_NET_ADMIN).
package hostnet

import (
	"errors"
	"fmt"
	"net/netip"
	"os"
	"slices"
	"sync"
	"syscall"

	"github.com/rs/zerolog"
	"golang.org/x/sys/unix"
	"golang.zx2c4.com/wireguard/tun"

	"github.com/fwx-dev/fwx/nat"
)

// Options configure a [Host].
type Options struct {
	// Addr is the host address fwx's sockets bind to: the source address
	// servers see and fwx's external address, IPv4 or IPv6. Required:
	// see [Uplink].
	Addr netip.Addr
	// Addr6, if set, is a host IPv6 address fwx's sockets bind to as
	// well, Addr being IPv4: fwx then carries both families (dual stack).
	// See [Uplink6].
	Addr6 netip.Addr
	// Device, if set, binds every socket to this interface.
	Device string
	// Mark, if not zero, marks every socket's packets (SO_MARK).
	Mark uint32
	// Log receives diagnostics. The zero value discards them.
	Log zerolog.Logger
}

// Host is the host's network stack as fwx's outside. It is safe for
// concurrent use.
type Host struct {
	opts   Options
	addrs  []netip.Addr // Addr, and Addr6 if set
	rx     chan *packet // packets built from what the sockets received
	closed chan struct{}
	events chan tun.Event

	// sockets maps a sockKey to its *packetSocket. Write looks sockets
	// up per packet without a lock; mu orders the changes.
	sockets sync.Map

	mu        sync.Mutex
	listeners map[netip.AddrPort]*heldListener
	isClosed  bool
	wg        sync.WaitGroup // socket readers

	pingDenied sync.Once
}

// New returns a host with no sockets open yet.
func New(o Options) (*Host, error) {
	h := &Host{
		opts:      o,
		addrs:     []netip.Addr{o.Addr},
		rx:        make(chan *packet, rxQueue),
		closed:    make(chan struct{}),
		events:    make(chan tun.Event, 1),
		listeners: make(map[netip.AddrPort]*heldListener),
	}
	if o.Addr6.IsValid() {
		if !o.Addr.Is4() || !o.Addr6.Is6() {
			return nil, fmt.Errorf("hostnet: addresses %v and %v: want an IPv4 and an IPv6 address", o.Addr, o.Addr6)
		}
		h.addrs = append(h.addrs, o.Addr6)
	}
	for _, a := range h.addrs {
		if !a.IsValid() || a.Is4In6() || a.Zone() != "" || a.IsUnspecified() || a.IsMulticast() {
			return nil, fmt.Errorf("hostnet: %v is not a unicast host address fwx's sockets can bind to", a)
		}
	}
	h.events <- tun.EventUp
	return h, nil
}

// Addr returns the address fwx's sockets bind to (Options.Addr).
func (h *Host) Addr() netip.Addr { return h.opts.Addr }

// Addrs returns the addresses fwx's sockets bind to: Addr, and Addr6 if
// set.
func (h *Host) Addrs() []netip.Addr { return slices.Clone(h.addrs) }

// owns reports whether a is one of the host addresses fwx binds to.
func (h *Host) owns(a netip.Addr) bool { return slices.Contains(h.addrs, a) }

// addrOf returns fwx's host address of the family of IPv6 (v6) or IPv4.
func (h *Host) addrOf(v6 bool) (netip.Addr, bool) {
	for _, a := range h.addrs {
		if a.Is6() == v6 {
			return a, true
		}
	}
	return netip.Addr{}, false
}

// network returns Go's network name for proto ("tcp" or "udp") over a's
// family.
func network(proto string, a netip.Addr) string {
	if a.Is6() {
		return proto + "6"
	}
	return proto + "4"
}

// control applies the options to a new socket before it binds.
func (h *Host) control(_, _ string, c syscall.RawConn) error {
	if h.opts.Device == "" && h.opts.Mark == 0 {
		return nil
	}
	var err error
	if cerr := c.Control(func(fd uintptr) { err = h.setsockopts(int(fd)) }); cerr != nil {
		return cerr
	}
	return err
}

func (h *Host) setsockopts(fd int) error {
	if d := h.opts.Device; d != "" {
		if err := unix.SetsockoptString(fd, unix.SOL_SOCKET, unix.SO_BINDTODEVICE, d); err != nil {
			return fmt.Errorf("hostnet: bind to device %s: %w", d, err)
		}
	}
	if m := h.opts.Mark; m != 0 {
		if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_MARK, int(m)); err != nil {
			return fmt.Errorf("hostnet: mark %#x (needs CAP_NET_ADMIN): %w", m, err)
		}
	}
	return nil
}

// Close closes every socket the host holds and makes Read return
// os.ErrClosed.
func (h *Host) Close() error {
	h.mu.Lock()
	if h.isClosed {
		h.mu.Unlock()
		return nil
	}
	h.isClosed = true
	close(h.closed)
	h.sockets.Range(func(k, v any) bool {
		v.(*packetSocket).conn.Close()
		h.sockets.Delete(k)
		return true
	})
	for _, l := range h.listeners {
		l.ln.Close()
	}
	clear(h.listeners)
	h.mu.Unlock()
	h.wg.Wait()
	close(h.events)
	return nil
}

// errClosed is returned once the host is closed.
var errClosed = fmt.Errorf("hostnet: %w", os.ErrClosed)

// inUse reports whether err says a bind found its port taken.
func inUse(err error) bool {
	return errors.Is(err, syscall.EADDRINUSE)
}

var _ nat.Ports = (*Host)(nil)
