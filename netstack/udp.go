package netstack

import (
	"context"
	"net/netip"

	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/stack"
	"gvisor.dev/gvisor/pkg/tcpip/transport/udp"
	"gvisor.dev/gvisor/pkg/waiter"
)

// udpPending is how many datagrams of a flow being decided are kept, in
// order, to be delivered to its socket on Accept; later ones are dropped
// (and counted) until the handler decides. QUIC, for one, sends its first
// flight as several datagrams at once.
const udpPending = 16

// HandleUDP sets the function that decides new UDP flows: the first
// datagram from a (source, destination) pair that no socket takes. On a
// Transparent stack that is every flow a client starts through fwx.
//
// h runs in a goroutine of its own for each new flow, at most
// [Options.MaxInFlight] at once; until it decides, the flow's datagrams
// are held (up to 16). h must call exactly one of [UDPRequest.Accept] and
// [UDPRequest.Drop] before it returns, or the flow is dropped; it must
// return once the request's Context is done. The socket Accept returns
// takes the flow's later datagrams until it is closed, so the caller must
// close it when the flow goes idle: then a later datagram starts a new
// request.
//
// Without a handler (or with h nil), datagrams to no socket get an ICMP
// port unreachable, as from any host.
func (s *Stack) HandleUDP(h func(r *UDPRequest)) {
	if h == nil {
		s.udpHandler.Store(nil)
		return
	}
	s.udpHandler.Store(&h)
}

// UDPRequest is the first datagram of a new UDP flow, waiting for its
// handler's decision. It is valid while its handler runs; its methods are
// safe for concurrent use.
type UDPRequest struct {
	// Src is the client's address and port.
	Src netip.AddrPort
	// Dst is the address and port the client sent to.
	Dst netip.AddrPort

	s   *Stack
	id  stack.TransportEndpointID
	ctx context.Context

	// Guarded by s.mu: the datagrams held (references owned by the
	// request) and whether Accept or Drop was called.
	pkts    []*stack.PacketBuffer
	decided bool
}

// handleUDPPacket is the stack's fallback for datagrams no socket took.
// It runs inline on the delivering goroutine, so it never waits: the
// handler runs in a goroutine of its own (PERF-NOTES §4: a blocking UDP
// forwarder handler stalls dispatch).
func (s *Stack) handleUDPPacket(id stack.TransportEndpointID, pkt *stack.PacketBuffer) bool {
	h := s.udpHandler.Load()
	if h == nil {
		return false
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	switch r, ok := s.mu.udp[id]; {
	case s.mu.closed:
	case ok:
		if len(r.pkts) < udpPending {
			r.pkts = append(r.pkts, pkt.Clone())
		} else {
			s.stats.udpPendingDrops.Add(1)
		}
	case len(s.mu.udp) >= s.maxInFlight:
		s.stats.udpInFlightDrops.Add(1)
	default:
		r := &UDPRequest{
			Src:  addrPort(id.RemoteAddress, id.RemotePort),
			Dst:  addrPort(id.LocalAddress, id.LocalPort),
			s:    s,
			id:   id,
			pkts: []*stack.PacketBuffer{pkt.Clone()},
		}
		s.mu.udp[id] = r
		s.handlers.Add(1)
		go s.forwardUDP(r, *h)
	}
	return true
}

// forwardUDP runs the handler for one new flow and drops the flow if the
// handler did not decide.
func (s *Stack) forwardUDP(r *UDPRequest, h func(*UDPRequest)) {
	defer s.handlers.Done()
	ctx, cancel := context.WithCancel(s.ctx)
	r.ctx = ctx
	defer func() {
		cancel()
		r.Drop()
	}()
	h(r)
}

// Context returns a context that is done when the handler returns or the
// stack closes.
func (r *UDPRequest) Context() context.Context { return r.ctx }

// Accept returns a socket bound to Dst and connected to Src, holding the
// datagrams received so far. It fails with [ErrDecided] if the request
// was already decided, and with [ErrClosed] if the stack is closing.
func (r *UDPRequest) Accept() (*PacketConn, error) {
	s := r.s
	fail := func(err error) (*PacketConn, error) { return nil, opError("accept", "udp", r.Dst, r.Src, err) }

	// The request stays in s.mu.udp until its endpoint is registered, so
	// that datagrams arriving meanwhile are held rather than starting a
	// second request for the same flow.
	s.mu.Lock()
	if r.decided {
		s.mu.Unlock()
		return fail(ErrDecided)
	}
	r.decided = true
	closed := s.mu.closed
	first := r.pkts[0]
	s.mu.Unlock()

	var (
		ep   tcpip.Endpoint
		terr tcpip.Error
		wq   = new(waiter.Queue)
	)
	if !closed {
		ep, terr = udp.NewForwarderRequest(s.st, r.id, first).CreateEndpoint(wq)
	}

	s.mu.Lock()
	if s.mu.udp[r.id] == r {
		delete(s.mu.udp, r.id)
	}
	pkts := r.pkts
	r.pkts = nil
	s.mu.Unlock()
	defer func() {
		for _, p := range pkts {
			p.DecRef()
		}
	}()

	switch {
	case closed:
		return fail(ErrClosed)
	case terr != nil:
		return fail(goError(terr))
	}
	// CreateEndpoint delivered the first datagram; deliver those held
	// since, in order.
	if te, ok := ep.(stack.TransportEndpoint); ok {
		for _, p := range pkts[1:] {
			te.HandlePacket(r.id, p)
		}
	}
	c, err := newPacketConn(s, ep, wq)
	if err != nil {
		return fail(err)
	}
	return c, nil
}

// Drop discards the flow's datagrams, silently (no ICMP error, as a
// firewall that drops). The next datagram of the flow starts a new
// request. Drop does nothing if the request was already decided.
func (r *UDPRequest) Drop() {
	s := r.s
	s.mu.Lock()
	if r.decided {
		s.mu.Unlock()
		return
	}
	r.decided = true
	if s.mu.udp[r.id] == r {
		delete(s.mu.udp, r.id)
	}
	pkts := r.pkts
	r.pkts = nil
	s.mu.Unlock()
	for _, p := range pkts {
		p.DecRef()
	}
}

// DialUDP opens a UDP socket connected to remote, from local: the zero
// AddrPort, an unspecified address or port 0 leave the choice to the
// stack. A Transparent stack may send from any address.
func (s *Stack) DialUDP(local, remote netip.AddrPort) (*PacketConn, error) {
	fail := func(err error) (*PacketConn, error) { return nil, opError("dial", "udp", local, remote, err) }
	if err := checkAddr(remote.Addr()); err != nil || remote.Addr().IsUnspecified() || remote.Port() == 0 {
		return fail(ErrAddress)
	}
	if local.IsValid() && (checkAddr(local.Addr()) != nil || local.Addr().Is4() != remote.Addr().Is4()) {
		return fail(ErrAddress)
	}
	if local.IsValid() && local.Port() == 0 && local.Addr().IsUnspecified() {
		local = netip.AddrPort{}
	}
	return s.openUDP("dial", netProto(remote.Addr()), local, remote)
}

// ListenUDP opens an unconnected UDP socket bound to local (port 0: an
// ephemeral port; an unspecified address: all of the family's
// addresses). Use [PacketConn.ReadFromAddrPort] and
// [PacketConn.WriteToAddrPort].
func (s *Stack) ListenUDP(local netip.AddrPort) (*PacketConn, error) {
	if !local.IsValid() || checkAddr(local.Addr()) != nil {
		return nil, opError("listen", "udp", netip.AddrPort{}, local, ErrAddress)
	}
	return s.openUDP("listen", netProto(local.Addr()), local, netip.AddrPort{})
}

// openUDP opens a UDP socket bound to local if valid and connected to
// remote if valid.
func (s *Stack) openUDP(op string, proto tcpip.NetworkProtocolNumber, local, remote netip.AddrPort) (*PacketConn, error) {
	fail := func(err error) (*PacketConn, error) { return nil, opError(op, "udp", local, remote, err) }
	if s.isClosed() {
		return fail(ErrClosed)
	}
	wq := new(waiter.Queue)
	ep, terr := s.st.NewEndpoint(udp.ProtocolNumber, proto, wq)
	if terr != nil {
		return fail(goError(terr))
	}
	if local.IsValid() {
		if terr := ep.Bind(fullAddr(local)); terr != nil {
			ep.Close()
			return fail(goError(terr))
		}
	}
	if remote.IsValid() {
		if terr := ep.Connect(fullAddr(remote)); terr != nil {
			ep.Close()
			return fail(goError(terr))
		}
	}
	c, err := newPacketConn(s, ep, wq)
	if err != nil {
		return fail(err)
	}
	return c, nil
}
