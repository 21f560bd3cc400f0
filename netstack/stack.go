package netstack

import (
	"context"
	"fmt"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rs/zerolog"
	"golang.org/x/time/rate"
	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/header"
	"gvisor.dev/gvisor/pkg/tcpip/network/ipv4"
	"gvisor.dev/gvisor/pkg/tcpip/network/ipv6"
	"gvisor.dev/gvisor/pkg/tcpip/stack"
	"gvisor.dev/gvisor/pkg/tcpip/transport/icmp"
	"gvisor.dev/gvisor/pkg/tcpip/transport/tcp"
	"gvisor.dev/gvisor/pkg/tcpip/transport/udp"

	"github.com/fwx-dev/fwx/netstack/vnettun"

	"github.com/fwx-dev/fwx/netstack/internal/seedrand"
)

// nicID is the ID of the stack's only NIC.
const nicID tcpip.NICID = 1

// Tuning for a proxy that terminates TCP (PERF-NOTES 3.C.15).
const (
	// bufferMax caps the TCP send and receive buffers. Auto-tuning grows
	// them up to here for high bandwidth-delay paths; it is gVisor's own
	// ceiling (tcp.MaxBufferSize).
	bufferMax = 4 << 20

	// timeWait is how long a closed connection holds its 4-tuple. Short,
	// because a proxy opens and closes connections at the client's pace
	// (tailscale natc uses 5 s too).
	timeWait = 5 * time.Second

	// forwardWindow is the receive window of connections intercepted by
	// the TCP forwarder, before auto-tuning.
	forwardWindow = 1 << 20

	// defaultMaxInFlight is Options.MaxInFlight's default.
	defaultMaxInFlight = 1024

	// closeAbortEvery is how often Close re-aborts endpoints registered
	// after it started (a handshake an Accept began concurrently) while it
	// waits for handlers.
	closeAbortEvery = 10 * time.Millisecond
)

// Options configures a [Stack]. Output or OutputVectors is required;
// every other field's zero value is usable.
type Options struct {
	// Addrs are the stack's own addresses (for the outside stack, fwx's
	// outside address). May be empty for a Transparent stack.
	Addrs []netip.Addr

	// Transparent makes the stack accept packets to any address and send
	// from any address (promiscuous mode and spoofing on its NIC), as the
	// inside, client-facing stack must: it answers the client as if it
	// were the server the client dialed.
	Transparent bool

	// MTU is the link MTU; TCP's MSS follows it. 0 means 1500.
	MTU int

	// Output receives the packets the stack sends, in batches of up to
	// 128, to write to a TUN device. It is called from one goroutine of
	// the stack, never concurrently; the slices are valid only during the
	// call. Its error is logged and counted, never fatal. While Output
	// runs, the stack's queue fills and then its senders wait: Output
	// must not wait for the stack (for example on Deliver).
	Output func(pkts [][]byte) error

	// OutputVectors, if set, is called instead of Output, as Output is,
	// with each packet in pieces and not copied: pkts[i][0] is
	// OutputOffset bytes of headroom (with GSO ending with the packet's
	// virtio header, as with Output), and pkts[i][1:] are the packet's
	// bytes in the stack's own buffers, which OutputVectors must neither
	// change nor keep after it returns. vnettun.Device.WriteVectors takes
	// such a batch as it is. It saves copying every packet the stack
	// sends.
	OutputVectors func(pkts [][][]byte) error

	// OutputOffset is the headroom before each packet in the slices passed
	// to Output: the packet is pkts[i][OutputOffset:], and the bytes
	// before it are free for the caller to use. It lets Output hand its
	// batch straight to tun.Device.Write(pkts, OutputOffset), which needs
	// headroom for a virtio header, without another copy. 0 means none.
	OutputOffset int

	// GSO says that the device Output writes to takes virtio-net headers
	// and segments superpackets, as a vnettun.Device does: the link
	// advertises host GSO up to 64 KiB, so the stack's TCP sends
	// superpackets of up to 64 KiB with a partial checksum, and every
	// packet passed to Output is preceded by its virtio header, at
	// pkts[i][OutputOffset-vnettun.VirtioHdrLen:OutputOffset] (all zero
	// for a packet with a complete checksum and no segmentation). Output
	// must hand the batch to the device as is, with that offset, and must
	// not clear the header. It requires OutputOffset >=
	// vnettun.VirtioHdrLen. False means no header is written (the headroom
	// is the caller's) and every packet fits the MTU.
	GSO bool

	// ChecksumsChecked says that the caller of Deliver passes only packets
	// whose checksums it has checked, or that the kernel behind a TUN
	// vouches for: the link claims RX checksum offload and the stack does
	// not check the IPv4 header's or the transport checksums again.
	// False means the stack checks them all, as any host does.
	ChecksumsChecked bool

	// MaxInFlight bounds the inbound connection attempts (TCP) and new
	// datagram flows (UDP) being decided by handlers at once; beyond it,
	// new ones are ignored (the client retries). 0 means 1024.
	MaxInFlight int

	// Log receives the stack's diagnostics. The zero value discards them.
	Log zerolog.Logger

	// Seed seeds the stack's random choices (initial sequence numbers,
	// ephemeral ports, IP IDs) for deterministic tests. 0 means random
	// (crypto/rand), as production wants.
	Seed int64
}

// Stack is a gVisor network stack attached to one side of fwx through a
// TUN device: fwx hands it the packets it reads ([Stack.Deliver]), and
// writes what it sends ([Options.Output]). On top of it, fwx intercepts
// connections ([Stack.HandleTCP], [Stack.HandleUDP]) and originates them
// ([Stack.DialTCP], [Stack.ListenTCP], [Stack.DialUDP], [Stack.ListenUDP]).
//
// Create a Stack with [New]; the zero value is not usable. All methods
// are safe for concurrent use.
//
// Lifecycle: open from New until Close. Close cancels request contexts,
// aborts every connection (peers get a RST), waits for handlers, stops
// the output goroutine and gVisor's own goroutines. After Close every
// method fails with [ErrClosed] and Deliver discards.
type Stack struct {
	st          *stack.Stack
	link        *link
	log         zerolog.Logger
	transparent bool
	maxInFlight int

	tcpFwd     *tcp.Forwarder
	tcpHandler atomic.Pointer[func(*TCPRequest)]
	udpHandler atomic.Pointer[func(*UDPRequest)]

	// ctx is done when Close starts; request contexts derive from it.
	ctx    context.Context
	cancel context.CancelFunc

	// handlers counts the goroutines running TCP and UDP handlers.
	handlers sync.WaitGroup

	mu struct {
		sync.Mutex
		closed bool
		open   map[closer]struct{}                       // connections and listeners to abort on Close
		udp    map[stack.TransportEndpointID]*UDPRequest // flows being decided
	}

	stats struct {
		tcpInFlightDrops, udpInFlightDrops, udpPendingDrops atomic.Uint64
	}
}

// closer is a connection or listener the Stack aborts when it closes.
type closer interface{ abort() }

// New returns a Stack configured by opts, with its NIC up and its output
// goroutine running.
func New(opts Options) (*Stack, error) {
	if opts.Output == nil && opts.OutputVectors == nil {
		return nil, fmt.Errorf("netstack: Options.Output or OutputVectors is required")
	}
	if opts.MTU == 0 {
		opts.MTU = 1500
	}
	if opts.MTU < header.IPv4MinimumMTU || opts.MTU > 65535 {
		return nil, fmt.Errorf("netstack: MTU %d out of range [%d, 65535]", opts.MTU, header.IPv4MinimumMTU)
	}
	if opts.OutputOffset < 0 {
		return nil, fmt.Errorf("netstack: negative OutputOffset %d", opts.OutputOffset)
	}
	if opts.GSO && opts.OutputOffset < vnettun.VirtioHdrLen {
		return nil, fmt.Errorf("netstack: OutputOffset %d leaves no room for a virtio header (GSO needs %d)",
			opts.OutputOffset, vnettun.VirtioHdrLen)
	}
	if opts.MaxInFlight <= 0 {
		opts.MaxInFlight = defaultMaxInFlight
	}
	for _, a := range opts.Addrs {
		if err := checkAddr(a); err != nil || a.IsUnspecified() || a.IsMulticast() {
			return nil, fmt.Errorf("netstack: Options.Addrs: %v: %w", a, ErrAddress)
		}
	}

	sopts := stack.Options{
		// The zero ipv6.Options leave out DAD, router solicitation and
		// MLD: the stack never speaks unless spoken to or asked to dial.
		NetworkProtocols:   []stack.NetworkProtocolFactory{ipv4.NewProtocol, ipv6.NewProtocolWithOptions(ipv6.Options{})},
		TransportProtocols: []stack.TransportProtocolFactory{tcp.NewProtocol, udp.NewProtocol, icmp.NewProtocol4, icmp.NewProtocol6},
	}
	if opts.Seed != 0 {
		sopts.RandSource, sopts.SecureRNG = seedrand.New(opts.Seed, 0x6e6574) // "net"
	}
	s := &Stack{
		st:          stack.New(sopts),
		log:         opts.Log,
		transparent: opts.Transparent,
		maxInFlight: opts.MaxInFlight,
	}
	s.ctx, s.cancel = context.WithCancel(context.Background())
	s.mu.open = make(map[closer]struct{})
	s.mu.udp = make(map[stack.TransportEndpointID]*UDPRequest)

	if err := s.tune(); err != nil {
		s.st.Destroy()
		return nil, err
	}
	s.link = newLink(opts.MTU, opts.OutputOffset, opts.GSO, opts.Output, opts.OutputVectors, opts.Log)
	s.link.rxChecked = opts.ChecksumsChecked
	if err := s.setupNIC(opts.Addrs); err != nil {
		s.link.shutdown()
		s.st.Destroy()
		s.link.wait()
		return nil, err
	}
	// Transport handlers must be set before packets flow (gVisor does not
	// lock them); they consult the handler set later by HandleTCP/UDP.
	s.tcpFwd = tcp.NewForwarder(s.st, forwardWindow, s.maxInFlight, s.forwardTCP)
	s.st.SetTransportProtocolHandler(tcp.ProtocolNumber, s.handleTCPPacket)
	s.st.SetTransportProtocolHandler(udp.ProtocolNumber, s.handleUDPPacket)
	s.log.Debug().Bool("transparent", opts.Transparent).Int("mtu", opts.MTU).Bool("gso", opts.GSO).Msg("netstack: stack up")
	return s, nil
}

// tune sets the TCP options a terminating proxy wants (PERF-NOTES 3.C.15).
// This gVisor has the 2026 RACK and CUBIC fixes (CUBIC works on floats),
// so both are on, as on Linux.
func (s *Stack) tune() error {
	sack := tcpip.TCPSACKEnabled(true)
	rcv := tcpip.TCPReceiveBufferSizeRangeOption{Min: tcp.MinBufferSize, Default: tcp.DefaultReceiveBufferSize, Max: bufferMax}
	snd := tcpip.TCPSendBufferSizeRangeOption{Min: tcp.MinBufferSize, Default: tcp.DefaultSendBufferSize, Max: bufferMax}
	moderate := tcpip.TCPModerateReceiveBufferOption(true)
	tw := tcpip.TCPTimeWaitTimeoutOption(timeWait)
	cc := tcpip.CongestionControlOption("cubic")
	rack := tcpip.TCPRACKLossDetection
	for _, o := range []struct {
		name string
		opt  tcpip.SettableTransportProtocolOption
	}{
		{"SACK", &sack}, {"receive buffer", &rcv}, {"send buffer", &snd},
		{"moderate receive buffer", &moderate}, {"TIME-WAIT", &tw}, {"congestion control", &cc}, {"recovery", &rack},
	} {
		if terr := s.st.SetTransportProtocolOption(tcp.ProtocolNumber, o.opt); terr != nil {
			return fmt.Errorf("netstack: set TCP %s option: %w", o.name, goError(terr))
		}
	}
	// Never rate-limit ICMP errors: a port-unreachable or a reset must not
	// depend on how busy the stack is; fwx limits what reaches it.
	s.st.SetICMPLimit(rate.Inf)
	return nil
}

// setupNIC creates the NIC, its addresses and default routes.
func (s *Stack) setupNIC(addrs []netip.Addr) error {
	if terr := s.st.CreateNICWithOptions(nicID, s.link, stack.NICOptions{Name: "fwx"}); terr != nil {
		return fmt.Errorf("netstack: create NIC: %w", goError(terr))
	}
	for _, a := range addrs {
		pa := tcpip.ProtocolAddress{
			Protocol:          netProto(a),
			AddressWithPrefix: tcpip.AddressWithPrefix{Address: tcpipAddr(a), PrefixLen: a.BitLen()},
		}
		if terr := s.st.AddProtocolAddress(nicID, pa, stack.AddressProperties{}); terr != nil {
			return fmt.Errorf("netstack: add address %v: %w", a, goError(terr))
		}
	}
	if s.transparent {
		if terr := s.st.SetPromiscuousMode(nicID, true); terr != nil {
			return fmt.Errorf("netstack: promiscuous mode: %w", goError(terr))
		}
		if terr := s.st.SetSpoofing(nicID, true); terr != nil {
			return fmt.Errorf("netstack: spoofing: %w", goError(terr))
		}
	}
	// Everything goes to fwx: the link is point to point.
	s.st.SetRouteTable([]tcpip.Route{
		{Destination: header.IPv4EmptySubnet, NIC: nicID},
		{Destination: header.IPv6EmptySubnet, NIC: nicID},
	})
	return nil
}

// Deliver hands packets read from the device to the stack, synchronously
// on the caller's goroutine (fwx's reader). Each packet is copied, so pkts
// may be reused when Deliver returns. Packets that are not IPv4 or IPv6
// are counted and dropped. Deliver may be called from several goroutines
// (one per device queue), and after Close, when it discards.
//
// With [Options.ChecksumsChecked] the stack does not check checksums:
// the caller passes only packets whose checksums it checked, or that the
// kernel behind a TUN vouches for (a partial checksum it left to the
// hardware, NEEDS_CSUM, in which case the field's value is no matter, or
// one it verified, DATA_VALID). That saves a pass over every byte, which
// the caller may already have made.
//
// Deliver does not wait for connections' readers: TCP segments are queued
// to gVisor's processor goroutines. It waits only when a reply sent inline
// (a RST, an ICMP error, a UDP datagram to an unbound port) finds the
// output queue full, until Output catches up.
func (s *Stack) Deliver(pkts [][]byte) {
	s.link.deliver(pkts)
}

// Stats counts a Stack's packets and refusals. Counters only grow.
type Stats struct {
	// PacketsIn counts packets handed to the stack by Deliver.
	PacketsIn uint64
	// InvalidIn counts packets Deliver dropped as not IP.
	InvalidIn uint64
	// PacketsOut counts packets passed to Output, in OutputBatches calls.
	PacketsOut, OutputBatches uint64
	// SuperpacketsOut counts the packets passed to Output (included in
	// PacketsOut) that were GSO superpackets for the device to segment.
	// Always 0 without Options.GSO.
	SuperpacketsOut uint64
	// OutputErrors counts Output calls that returned an error.
	OutputErrors uint64
	// TCPInFlightDrops counts SYNs ignored because MaxInFlight attempts
	// were being decided.
	TCPInFlightDrops uint64
	// UDPInFlightDrops counts datagrams of new flows ignored because
	// MaxInFlight flows were being decided; UDPPendingDrops counts
	// datagrams of a flow being decided beyond the few kept for it.
	UDPInFlightDrops, UDPPendingDrops uint64
}

// Stats returns the stack's counters.
func (s *Stack) Stats() Stats {
	l := &s.link.stats
	return Stats{
		PacketsIn:        l.in.Load(),
		InvalidIn:        l.invalidIn.Load(),
		PacketsOut:       l.out.Load(),
		OutputBatches:    l.outBatches.Load(),
		SuperpacketsOut:  l.superpacketsOut.Load(),
		OutputErrors:     l.outputErrors.Load(),
		TCPInFlightDrops: s.st.Stats().TCP.ForwardMaxInFlightDrop.Value(),
		UDPInFlightDrops: s.stats.udpInFlightDrops.Load(),
		UDPPendingDrops:  s.stats.udpPendingDrops.Load(),
	}
}

// Close aborts every connection, listener and pending request (peers get
// a RST), cancels request contexts, waits for the handlers to return,
// stops the output goroutine (after it has passed on what was queued,
// such as those RSTs) and gVisor's goroutines. It is idempotent; later
// calls return nil at once.
//
// Close waits for handlers: a handler must return once its request's
// Context is done.
func (s *Stack) Close() error {
	s.mu.Lock()
	if s.mu.closed {
		s.mu.Unlock()
		return nil
	}
	s.mu.closed = true
	open := make([]closer, 0, len(s.mu.open))
	for c := range s.mu.open {
		open = append(open, c)
	}
	clear(s.mu.open)
	s.mu.Unlock()

	s.log.Debug().Int("open", len(open)).Msg("netstack: closing")
	s.cancel() // handlers deciding UDP flows return and drop them
	for _, c := range open {
		c.abort()
	}
	s.st.Close() // aborts every registered endpoint, including handshakes

	// An Accept that raced with Close may register its handshake after
	// st.Close: abort again until every handler has returned.
	done := make(chan struct{})
	go func() { s.handlers.Wait(); close(done) }()
	tick := time.NewTicker(closeAbortEvery)
	for waiting := true; waiting; {
		select {
		case <-done:
			waiting = false
		case <-tick.C:
			for _, ep := range s.st.RegisteredEndpoints() {
				ep.Abort()
			}
		}
	}
	tick.Stop()

	s.link.shutdown()
	s.st.Wait() // gVisor's goroutines; removes the NIC
	s.link.wait()
	s.log.Debug().Msg("netstack: closed")
	return nil
}

// track registers c to be aborted by Close. It fails once the stack is
// closed; the caller then aborts c itself.
func (s *Stack) track(c closer) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.mu.closed {
		return ErrClosed
	}
	s.mu.open[c] = struct{}{}
	return nil
}

// untrack undoes track.
func (s *Stack) untrack(c closer) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.mu.open, c)
}

// enterHandler counts a handler goroutine that is about to start; it
// reports false once the stack is closed.
func (s *Stack) enterHandler() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.mu.closed {
		return false
	}
	s.handlers.Add(1)
	return true
}

// isClosed reports whether Close has started.
func (s *Stack) isClosed() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.mu.closed
}

// checkAddr reports whether a is an address the stack can use.
func checkAddr(a netip.Addr) error {
	if !a.IsValid() || a.Is4In6() || a.Zone() != "" {
		return ErrAddress
	}
	return nil
}

// tcpipAddr converts a to gVisor's form; the unspecified and invalid
// addresses become the empty Address, which gVisor reads as "any".
func tcpipAddr(a netip.Addr) tcpip.Address {
	if !a.IsValid() || a.IsUnspecified() {
		return tcpip.Address{}
	}
	if a.Is4() {
		return tcpip.AddrFrom4(a.As4())
	}
	return tcpip.AddrFrom16(a.As16())
}

// fullAddr converts ap to gVisor's form.
func fullAddr(ap netip.AddrPort) tcpip.FullAddress {
	return tcpip.FullAddress{Addr: tcpipAddr(ap.Addr()), Port: ap.Port()}
}

// addrPort converts a gVisor address and port to netip.
func addrPort(a tcpip.Address, port uint16) netip.AddrPort {
	addr, _ := netip.AddrFromSlice(a.AsSlice())
	return netip.AddrPortFrom(addr, port)
}

// netProto returns the network protocol of a.
func netProto(a netip.Addr) tcpip.NetworkProtocolNumber {
	if a.Is4() {
		return ipv4.ProtocolNumber
	}
	return ipv6.ProtocolNumber
}
