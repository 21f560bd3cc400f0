package netstack

import (
	"context"
	"net/netip"
	"sync"
	"time"

	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/stack"
	"gvisor.dev/gvisor/pkg/tcpip/transport/tcp"
	"gvisor.dev/gvisor/pkg/waiter"
)

// defaultBacklog is ListenTCP's accept queue length when backlog is 0.
const defaultBacklog = 128

// HandleTCP sets the function that decides inbound TCP connection
// attempts that no listener takes: on a Transparent stack, every
// connection a client makes through fwx. h runs in a goroutine of its own
// for each attempt (a SYN), at most [Options.MaxInFlight] at once; it
// must call exactly one of [TCPRequest.Accept] and [TCPRequest.Reset]
// before it returns, or the attempt is reset. h must return once the
// request's Context is done.
//
// The usual h dials the real server first and accepts only if that
// worked, so that a refused or unreachable server reaches the client as
// a refused connection:
//
//	inside.HandleTCP(func(r *netstack.TCPRequest) {
//		// natAddr: fwx's outside address and the port its NAT allocated.
//		up, err := outside.DialTCP(r.Context(), natAddr, r.Dst)
//		if err != nil {
//			r.Reset()
//			return
//		}
//		c, err := r.Accept()
//		...
//	})
//
// Without a handler (or with h nil), attempts are refused with a RST as
// by any host with no listener.
func (s *Stack) HandleTCP(h func(r *TCPRequest)) {
	if h == nil {
		s.tcpHandler.Store(nil)
		return
	}
	s.tcpHandler.Store(&h)
}

// handleTCPPacket is the stack's fallback for TCP segments no endpoint
// took. SYNs go to the forwarder, which starts a forwardTCP goroutine;
// without a handler, false lets gVisor answer with a RST.
func (s *Stack) handleTCPPacket(id stack.TransportEndpointID, pkt *stack.PacketBuffer) bool {
	if s.tcpHandler.Load() == nil {
		return false
	}
	return s.tcpFwd.HandlePacket(id, pkt)
}

// forwardTCP runs in the forwarder's goroutine for one SYN and calls the
// handler. Every path completes the gVisor request (PERF-NOTES §4
// "Forwarder usage"): a request never completed holds an in-flight slot
// for ever.
func (s *Stack) forwardTCP(fr *tcp.ForwarderRequest) {
	h := s.tcpHandler.Load()
	if h == nil || !s.enterHandler() {
		fr.Complete(true)
		return
	}
	defer s.handlers.Done()
	id := fr.ID()
	ctx, cancel := context.WithCancel(s.ctx)
	r := &TCPRequest{
		Src: addrPort(id.RemoteAddress, id.RemotePort),
		Dst: addrPort(id.LocalAddress, id.LocalPort),
		s:   s,
		ctx: ctx,
	}
	r.mu.fr = fr
	defer func() {
		cancel()
		r.Reset() // no-op if the handler decided
	}()
	(*h)(r)
}

// TCPRequest is an inbound TCP connection attempt (a SYN) waiting for its
// handler's decision. The client has sent a SYN and waits for the reply:
// [TCPRequest.Accept] completes the handshake, [TCPRequest.Reset] refuses.
//
// A TCPRequest is valid while its handler runs; its methods are safe for
// concurrent use.
type TCPRequest struct {
	// Src is the client's address and port.
	Src netip.AddrPort
	// Dst is the address and port the client dialed (on a Transparent
	// stack, the real server's).
	Dst netip.AddrPort

	s   *Stack
	ctx context.Context

	mu struct {
		sync.Mutex
		fr *tcp.ForwarderRequest // nil once decided
	}
}

// Context returns a context that is done when the handler returns or the
// stack closes; use it to bound the work done before deciding (dialing
// the real server).
func (r *TCPRequest) Context() context.Context { return r.ctx }

// Accept completes the handshake (SYN-ACK, then the client's ACK) and
// returns the connection; its local address is Dst. It waits for the
// client's ACK. It fails with [ErrDecided] if the request was already
// decided, with [ErrClosed] if the stack is closing (the client gets a
// RST), and with ECONNRESET or ETIMEDOUT if the handshake fails.
func (r *TCPRequest) Accept() (*Conn, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	fr := r.mu.fr
	if fr == nil {
		return nil, opError("accept", "tcp", r.Dst, r.Src, ErrDecided)
	}
	r.mu.fr = nil
	if r.s.isClosed() {
		fr.Complete(true)
		return nil, opError("accept", "tcp", r.Dst, r.Src, ErrClosed)
	}
	wq := new(waiter.Queue)
	ep, terr := fr.CreateEndpoint(wq)
	if terr != nil {
		fr.Complete(true)
		return nil, opError("accept", "tcp", r.Dst, r.Src, goError(terr))
	}
	fr.Complete(false)
	c, err := newConn(r.s, ep, wq)
	if err != nil {
		return nil, opError("accept", "tcp", r.Dst, r.Src, err)
	}
	return c, nil
}

// Reset refuses the connection: the client gets a RST and its dial fails
// with ECONNREFUSED. It does nothing if the request was already decided.
func (r *TCPRequest) Reset() {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.mu.fr != nil {
		r.mu.fr.Complete(true)
		r.mu.fr = nil
	}
}

// DialTCP connects to remote from local. local may be the zero AddrPort
// (any address, an ephemeral port), have an unspecified address (the
// stack picks) or port 0 (ephemeral). A fixed local port may be shared by
// connections to different remotes, as fwx's NAT mappings need; the same
// 4-tuple twice fails with EADDRNOTAVAIL, except that a connection in
// TIME-WAIT gives way to the new one.
// A Transparent stack may dial from any address; other stacks only from
// their Addrs.
//
// A refused connection fails with an error wrapping
// syscall.ECONNREFUSED. If ctx ends first, the attempt is abandoned and
// ctx's error returned.
func (s *Stack) DialTCP(ctx context.Context, local, remote netip.AddrPort) (*Conn, error) {
	fail := func(err error) (*Conn, error) { return nil, opError("dial", "tcp", local, remote, err) }
	if s.isClosed() {
		return fail(ErrClosed)
	}
	if err := checkAddr(remote.Addr()); err != nil || remote.Addr().IsUnspecified() || remote.Port() == 0 {
		return fail(ErrAddress)
	}
	if local.IsValid() && (checkAddr(local.Addr()) != nil || local.Addr().Is4() != remote.Addr().Is4()) {
		return fail(ErrAddress)
	}

	wq := new(waiter.Queue)
	ep, terr := s.st.NewEndpoint(tcp.ProtocolNumber, netProto(remote.Addr()), wq)
	if terr != nil {
		return fail(goError(terr))
	}
	entry, notify := waiter.NewChannelEntry(waiter.WritableEvents | waiter.EventHUp | waiter.EventErr)
	wq.EventRegister(&entry)
	defer wq.EventUnregister(&entry)

	if local.IsValid() && (local.Port() != 0 || !local.Addr().IsUnspecified()) {
		if local.Port() != 0 {
			s.endTimeWait(local, remote)
		}
		ep.SocketOptions().SetReuseAddress(true)
		if terr := ep.Bind(fullAddr(local)); terr != nil {
			ep.Close()
			return fail(goError(terr))
		}
	}
	terr = ep.Connect(fullAddr(remote))
	if _, ok := terr.(*tcpip.ErrConnectStarted); ok {
		select {
		case <-notify:
			terr = ep.LastError()
		case <-ctx.Done():
			ep.Abort()
			ep.Close()
			return fail(ctx.Err())
		case <-s.ctx.Done():
			ep.Abort()
			ep.Close()
			return fail(ErrClosed)
		}
	}
	if terr != nil {
		ep.Close()
		return fail(goError(terr))
	}
	c, err := newConn(s, ep, wq)
	if err != nil {
		return fail(err)
	}
	return c, nil
}

// endTimeWait ends a connection fwx has closed (in TIME-WAIT, or still
// closing) that holds the four-tuple a dial from local to remote needs. fwx dials from the port its client
// chose; when the client opens a new connection from a port whose old one
// is still in TIME-WAIT here, the client has moved on, and so does fwx, as
// the client's own kernel did (RFC 6191 reuse). Without it the new
// connection would fail until TIME-WAIT runs out.
func (s *Stack) endTimeWait(local, remote netip.AddrPort) {
	id := stack.TransportEndpointID{
		LocalPort:     local.Port(),
		LocalAddress:  tcpip.AddrFromSlice(local.Addr().AsSlice()),
		RemotePort:    remote.Port(),
		RemoteAddress: tcpip.AddrFromSlice(remote.Addr().AsSlice()),
	}
	find := func() stack.TransportEndpoint {
		return s.st.FindTransportEndpoint(netProto(remote.Addr()), tcp.ProtocolNumber, id, nicID)
	}
	ep, ok := find().(*tcp.Endpoint)
	if !ok {
		return
	}
	switch ep.EndpointState() {
	case tcp.StateTimeWait, tcp.StateFinWait1, tcp.StateFinWait2, tcp.StateClosing, tcp.StateLastAck:
	default:
		return // still open: the dial fails
	}
	ep.Abort()
	// The endpoint's own goroutine releases the four-tuple, soon.
	for i := 0; i < 100 && find() == stack.TransportEndpoint(ep); i++ {
		time.Sleep(time.Millisecond)
	}
}

// ListenTCP listens on local; port 0 picks an ephemeral port (see
// [Listener.Addr]), an unspecified address means all of the family's
// addresses. backlog bounds the connections waiting for Accept (0 means
// 128). A Transparent stack may listen on any address.
func (s *Stack) ListenTCP(local netip.AddrPort, backlog int) (*Listener, error) {
	fail := func(err error) (*Listener, error) { return nil, opError("listen", "tcp", netip.AddrPort{}, local, err) }
	if s.isClosed() {
		return fail(ErrClosed)
	}
	if !local.IsValid() || checkAddr(local.Addr()) != nil {
		return fail(ErrAddress)
	}
	if backlog <= 0 {
		backlog = defaultBacklog
	}
	wq := new(waiter.Queue)
	ep, terr := s.st.NewEndpoint(tcp.ProtocolNumber, netProto(local.Addr()), wq)
	if terr != nil {
		return fail(goError(terr))
	}
	ep.SocketOptions().SetReuseAddress(true)
	if terr := ep.Bind(fullAddr(local)); terr != nil {
		ep.Close()
		return fail(goError(terr))
	}
	if terr := ep.Listen(backlog); terr != nil {
		ep.Close()
		return fail(goError(terr))
	}
	l := &Listener{s: s, ep: ep, wq: wq, addr: local, closed: make(chan struct{})}
	if a, terr := ep.GetLocalAddress(); terr == nil {
		l.addr = netip.AddrPortFrom(local.Addr(), a.Port)
	}
	l.entry, l.ready = waiter.NewChannelEntry(waiter.ReadableEvents | waiter.EventHUp | waiter.EventErr)
	wq.EventRegister(&l.entry)
	if err := s.track(l); err != nil {
		l.abort()
		return fail(err)
	}
	return l, nil
}

// Listener is a TCP listener of a [Stack], from [Stack.ListenTCP]. Its
// methods are safe for concurrent use; the zero value is not usable.
type Listener struct {
	s     *Stack
	ep    tcpip.Endpoint
	wq    *waiter.Queue
	addr  netip.AddrPort
	entry waiter.Entry
	ready chan struct{}

	closeOnce sync.Once
	closed    chan struct{}
}

// Accept waits for the next connection and returns it. It fails with
// [ErrClosed] once the listener or the stack is closed.
func (l *Listener) Accept() (*Conn, error) {
	for {
		select {
		case <-l.closed:
			return nil, opError("accept", "tcp", netip.AddrPort{}, l.addr, ErrClosed)
		default:
		}
		ep, wq, terr := l.ep.Accept(nil)
		switch terr.(type) {
		case nil:
			c, err := newConn(l.s, ep, wq)
			if err != nil {
				return nil, opError("accept", "tcp", netip.AddrPort{}, l.addr, err)
			}
			return c, nil
		case *tcpip.ErrWouldBlock:
		default:
			return nil, opError("accept", "tcp", netip.AddrPort{}, l.addr, goError(terr))
		}
		select {
		case <-l.ready:
		case <-l.closed:
		}
	}
}

// Close stops listening; connections not yet accepted are reset, and a
// waiting Accept returns [ErrClosed]. Close is idempotent.
func (l *Listener) Close() error {
	l.abort()
	return nil
}

// abort implements closer.
func (l *Listener) abort() {
	l.closeOnce.Do(func() {
		close(l.closed)
		l.ep.Close()
		l.wq.EventUnregister(&l.entry)
		l.s.untrack(l)
	})
}

// Addr returns the address the listener is bound to, with the port
// picked if 0 was asked for.
func (l *Listener) Addr() netip.AddrPort { return l.addr }
