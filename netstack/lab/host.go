package lab

import (
	"fmt"
	"net/netip"
	"slices"
	"sync"
	"sync/atomic"

	"golang.org/x/time/rate"
	"gvisor.dev/gvisor/pkg/buffer"
	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/header"
	"gvisor.dev/gvisor/pkg/tcpip/network/ipv4"
	"gvisor.dev/gvisor/pkg/tcpip/network/ipv6"
	"gvisor.dev/gvisor/pkg/tcpip/stack"
	"gvisor.dev/gvisor/pkg/tcpip/transport/icmp"
	"gvisor.dev/gvisor/pkg/tcpip/transport/tcp"
	"gvisor.dev/gvisor/pkg/tcpip/transport/udp"

	"github.com/fwx-dev/fwx/netstack/internal/seedrand"
)

// nicID is the ID of a host's only NIC.
const nicID tcpip.NICID = 1

// Host is a virtual machine on a [Segment]: a gVisor network stack (IPv4,
// ICMP, TCP, UDP; IPv6 if [Options.IPv6]) with one NIC on the segment and
// a default route through it, so everything it sends goes to the code
// under test. Its sockets are ordinary net.Conn and net.Listener values.
//
// A Host is created by [Segment.AddHost] and lives until its Network is
// closed. It is safe for concurrent use.
type Host struct {
	net   *Network
	seg   *Segment
	name  string
	index int
	stack *stack.Stack
	link  *link

	received atomic.Uint64

	mu struct {
		sync.Mutex
		addrs []netip.Prefix // addrs[0] is the primary address
	}

	done      chan struct{} // closed to stop the pump
	closeOnce sync.Once
}

// HostStats counts a host's packets.
type HostStats struct {
	// Sent counts packets the host's stack sent and queued for the segment.
	Sent uint64
	// Received counts packets delivered to the host's stack. The stack may
	// still drop them (bad checksum, no socket).
	Received uint64
	// SendDrops counts packets dropped because the host's send queue was
	// full; it stays zero unless the code under test stops reading.
	SendDrops uint64
}

// AddHost adds a host named name to the segment with the address addr
// (address and prefix length, as in 10.0.1.2/24) and a default route via
// gw, which is normally an address the code under test owns on this
// segment. An invalid gw gives a default route with no gateway; the link
// has no address resolution, so the two behave the same.
//
// The segment delivers to the host every packet for one of its addresses.
// Two hosts on one segment cannot share an address; hosts on different
// segments can (overlapping private networks behind a NAT).
func (s *Segment) AddHost(name string, addr netip.Prefix, gw netip.Addr) (*Host, error) {
	n := s.net
	if err := n.checkPrefix(addr); err != nil {
		return nil, fmt.Errorf("lab: host %s: %w", name, err)
	}
	if gw.IsValid() && gw.Is4() != addr.Addr().Is4() {
		return nil, fmt.Errorf("lab: host %s: gateway %v is not in the family of %v", name, gw, addr)
	}

	n.mu.Lock()
	defer n.mu.Unlock()
	if n.mu.closed {
		return nil, fmt.Errorf("lab: host %s: network closed", name)
	}
	h := &Host{
		net:   n,
		seg:   s,
		name:  name,
		index: len(n.mu.hosts),
		done:  make(chan struct{}),
	}
	h.link = newLink(n.opts.MTU, sendQueueLen, func(pkt []byte) {
		n.logPacket(s.name, name, "fwx (send queue full, dropped)", pkt)
	})
	h.stack = h.newStack()
	if err := h.setup(addr, gw); err != nil {
		h.stack.Destroy()
		return nil, fmt.Errorf("lab: host %s: %w", name, err)
	}
	if err := s.claim(addr.Addr(), h); err != nil {
		h.stack.Destroy()
		return nil, err
	}
	h.mu.addrs = []netip.Prefix{addr}
	n.mu.hosts = append(n.mu.hosts, h)
	n.wg.Add(1)
	go h.pump()
	return h, nil
}

// newStack returns the host's stack, its random sources seeded from the
// network's seed and the host's index.
func (h *Host) newStack() *stack.Stack {
	rnd, secure := seedrand.New(h.net.opts.Seed, uint64(h.index))
	opts := stack.Options{
		NetworkProtocols:   []stack.NetworkProtocolFactory{ipv4.NewProtocol},
		TransportProtocols: []stack.TransportProtocolFactory{tcp.NewProtocol, udp.NewProtocol, icmp.NewProtocol4},
		RandSource:         rnd,
		SecureRNG:          secure,
	}
	if c := h.net.opts.Clock; c != nil {
		opts.Clock = c
	}
	if h.net.opts.IPv6 {
		// The zero ipv6.Options turn off DAD, router solicitation and MLD:
		// a lab host speaks only when spoken to, and an address is
		// usable as soon as it is added.
		opts.NetworkProtocols = append(opts.NetworkProtocols, ipv6.NewProtocolWithOptions(ipv6.Options{}))
		opts.TransportProtocols = append(opts.TransportProtocols, icmp.NewProtocol6)
	}
	st := stack.New(opts)
	// Like Linux, use SACK. And never rate-limit ICMP errors: whether a
	// port-unreachable is sent must not depend on how fast a test runs.
	sack := tcpip.TCPSACKEnabled(true)
	st.SetTransportProtocolOption(tcp.ProtocolNumber, &sack)
	st.SetICMPLimit(rate.Inf)
	if h.net.opts.Clock != nil {
		fixWindow(st)
	}
	return st
}

// fixedWindow is the receive buffer of a deterministic lab's hosts: the
// largest that a window scale of 12 describes. gVisor advertises a quarter
// of the free buffer, scaled, so the field reads 16383 while less than
// 16 KiB are in use.
const fixedWindow = 65535<<12 + 1<<12 - 1

// fixWindow makes the window a host advertises independent of when its
// applications read: the window in an ACK reflects how much of the
// receive buffer is in use when the ACK is built, and whether an
// application that was woken up has read by then is a matter of goroutine
// scheduling. The buffer is only an allowance: nothing is allocated for it.
func fixWindow(st *stack.Stack) {
	st.SetOption(tcpip.ReceiveBufferSizeOption{Min: 4096, Default: fixedWindow, Max: fixedWindow})
	opt := tcpip.TCPReceiveBufferSizeRangeOption{Min: 4096, Default: fixedWindow, Max: fixedWindow}
	st.SetTransportProtocolOption(tcp.ProtocolNumber, &opt)
}

// setup creates the NIC, adds the first address and the default routes.
func (h *Host) setup(addr netip.Prefix, gw netip.Addr) error {
	if err := h.stack.CreateNICWithOptions(nicID, h.link, stack.NICOptions{Name: h.name}); err != nil {
		return fmt.Errorf("create NIC: %s", err)
	}
	if err := h.addProtocolAddress(addr); err != nil {
		return err
	}
	routes := []tcpip.Route{{Destination: header.IPv4EmptySubnet, NIC: nicID}}
	if h.net.opts.IPv6 {
		routes = append(routes, tcpip.Route{Destination: header.IPv6EmptySubnet, NIC: nicID})
	}
	if gw.IsValid() {
		i := 0
		if gw.Is6() {
			i = 1
		}
		routes[i].Gateway = tcpipAddr(gw)
	}
	h.stack.SetRouteTable(routes)
	return nil
}

func (h *Host) addProtocolAddress(p netip.Prefix) error {
	proto := header.IPv4ProtocolNumber
	if p.Addr().Is6() {
		proto = header.IPv6ProtocolNumber
	}
	err := h.stack.AddProtocolAddress(nicID, tcpip.ProtocolAddress{
		Protocol: proto,
		AddressWithPrefix: tcpip.AddressWithPrefix{
			Address:   tcpipAddr(p.Addr()),
			PrefixLen: p.Bits(),
		},
	}, stack.AddressProperties{})
	if err != nil {
		return fmt.Errorf("add address %v: %s", p, err)
	}
	return nil
}

// checkPrefix reports whether p may be a host address in n.
func (n *Network) checkPrefix(p netip.Prefix) error {
	switch a := p.Addr(); {
	case !p.IsValid():
		return fmt.Errorf("invalid address %v", p)
	case a.Is4In6():
		return fmt.Errorf("address %v is IPv4-mapped; use the IPv4 form", p)
	case a.Zone() != "":
		return fmt.Errorf("address %v has a zone", p)
	case a.IsUnspecified() || a.IsMulticast():
		return fmt.Errorf("address %v is not unicast", p)
	case a.Is6() && !n.opts.IPv6:
		return fmt.Errorf("address %v is IPv6 but Options.IPv6 is off", p)
	}
	return nil
}

// AddAddress gives the host another address; the segment then delivers
// packets for it to this host too. Replies to packets sent to it come from
// it.
func (h *Host) AddAddress(p netip.Prefix) error {
	if err := h.net.checkPrefix(p); err != nil {
		return fmt.Errorf("lab: host %s: %w", h.name, err)
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if err := h.seg.claim(p.Addr(), h); err != nil {
		return err
	}
	if err := h.addProtocolAddress(p); err != nil {
		h.seg.release(p.Addr())
		return fmt.Errorf("lab: host %s: %w", h.name, err)
	}
	h.mu.addrs = append(h.mu.addrs, p)
	return nil
}

// Name returns the host's name.
func (h *Host) Name() string { return h.name }

// Addr returns the host's first address.
func (h *Host) Addr() netip.Addr {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.mu.addrs[0].Addr()
}

// Addrs returns all the host's addresses, the first one first.
func (h *Host) Addrs() []netip.Prefix {
	h.mu.Lock()
	defer h.mu.Unlock()
	return slices.Clone(h.mu.addrs)
}

// Segment returns the segment the host is on.
func (h *Host) Segment() *Segment { return h.seg }

// Stack returns the host's gVisor stack, for what the Host methods do not
// cover (socket options, IPv6 listeners, statistics). The Network owns it:
// do not Close it.
func (h *Host) Stack() *stack.Stack { return h.stack }

// Stats returns the host's packet counters.
func (h *Host) Stats() HostStats {
	return HostStats{
		Sent:      h.link.sent.Load(),
		Received:  h.received.Load(),
		SendDrops: h.link.drops.Load(),
	}
}

// pump moves the packets the stack sends to the segment device, in order.
// It waits when the device's queue is full, so the code under test sees
// every packet. If the code under test has closed the device, packets are
// counted in SegmentStats.ClosedDrops and discarded. pump ends when the
// host is closed.
func (h *Host) pump() {
	defer h.net.wg.Done()
	for {
		select {
		case p := <-h.link.out:
			if err := h.seg.inject(*p, h.name); err != nil {
				h.seg.stats.closedDrops.Add(1)
			}
			h.link.putBuf(p)
		case <-h.done:
			return
		}
	}
}

// deliver hands pkt, which the code under test wrote to the segment, to the
// host's stack. It reports false if the host is closed. pkt is copied.
func (h *Host) deliver(pkt []byte) bool {
	d := h.link.Dispatcher()
	if d == nil {
		return false
	}
	proto := header.IPv4ProtocolNumber
	if pkt[0]>>4 == 6 {
		proto = header.IPv6ProtocolNumber
	}
	pb := stack.NewPacketBuffer(stack.PacketBufferOptions{Payload: buffer.MakeWithData(pkt)})
	d.DeliverNetworkPacket(proto, pb)
	pb.DecRef()
	h.received.Add(1)
	return true
}

// close destroys the host's stack and stops its pump.
func (h *Host) close() {
	h.closeOnce.Do(func() {
		h.stack.Destroy()
		close(h.done)
	})
}

// tcpipAddr converts a to gVisor's form; the unspecified and invalid
// addresses become the empty Address, which gVisor reads as "any".
func tcpipAddr(a netip.Addr) tcpip.Address {
	if !a.IsValid() || a.IsUnspecified() {
		return tcpip.Address{}
	}
	a = a.Unmap()
	if a.Is4() {
		return tcpip.AddrFrom4(a.As4())
	}
	return tcpip.AddrFrom16(a.As16())
}

// netipAddr converts a gVisor address to netip.
func netipAddr(a tcpip.Address) netip.Addr {
	addr, _ := netip.AddrFromSlice(a.AsSlice())
	return addr
}
