package gateway

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"sync"

	"github.com/rs/zerolog"
	"gvisor.dev/gvisor/pkg/tcpip/header"

	"github.com/fwx-dev/fwx/nat"
	"github.com/fwx-dev/fwx/netstack"
	"github.com/fwx-dev/fwx/netstack/hostnet"
	"github.com/fwx-dev/fwx/session"
	"github.com/fwx-dev/fwx/session/policy"
)

// userPath is fwx's user-mode path: a netstack on each side. Packets of
// user-mode flows ([nat.Divert]) are delivered to the stack of the side
// they came from: the inside stack is transparent and answers the client
// as the server it dialed; the outside stack owns fwx's outside address and
// re-originates the connection from the flow's external endpoint. What the
// stacks send is written straight to the devices, untranslated. In host
// mode the host's own stack is the outside one (see host.go).
type userPath struct {
	table    *nat.Table
	sessions *session.Manager
	clock    session.Clock
	host     *hostnet.Host // nil in router mode
	// The devices' queues, which the stacks' packets and user-mode UDP
	// datagrams are written to.
	insideQs, outsideQs queues

	inside  *netstack.Stack
	outside *netstack.Stack // nil in host mode
	wg      sync.WaitGroup  // accept loops and the connections they serve

	// The devices' MTUs, which user-mode UDP datagrams are cut to
	// (usermode_udp.go); the host's is 65535: its kernel fragments.
	insideMTU, outsideMTU int

	mu struct {
		sync.Mutex
		published map[string]*published // by publish rule name
		serving   bool                  // accept loops run (Run started)
		closed    bool
	}
}

// published is a server publication served on the user-mode path: one
// with a filter, or any TCP one in host mode. The outside accepts its
// connections, and the session layer serves them.
type published struct {
	pub policy.Publication
	ln  session.Listener
}

var _ session.UserPath = (*userPath)(nil)

// maxPendingDials bounds the user-mode connections of all clients waiting
// for their server (the inside netstack's in-flight requests).
const maxPendingDials = 4096

// open makes the stacks: the inside one, and in router mode the outside
// one, which owns fwx's outside addresses.
func (u *userPath) open(log zerolog.Logger, seed uint64, outside []netip.Addr) error {
	mtu := func(d interface{ MTU() (int, error) }) int {
		if n, err := d.MTU(); err == nil && n > 0 {
			return n
		}
		return 1500
	}
	in, out := u.insideQs[0], u.outsideQs[0]
	u.insideMTU, u.outsideMTU = mtu(in), mtu(out)
	u.mu.published = make(map[string]*published)
	inOut := newQueueWriter(u.insideQs)
	var err error
	u.inside, err = netstack.New(netstack.Options{
		Transparent: true,
		// Connections waiting for their server: each client holds at
		// most its policy's client-dials of them (session.Config), so
		// a few clients dialing addresses that never answer cannot
		// take them all.
		MaxInFlight: maxPendingDials,
		GSO:         isVnet(in),
		// forward.go and defragment.go check what the kernel does not
		// vouch for (checksum.go).
		ChecksumsChecked: true,
		MTU:              u.insideMTU,
		Output:           func(pkts [][]byte) error { return write(inOut, pkts) },
		OutputVectors:    writeVectors(inOut),
		OutputOffset:     headroom,
		Log:              log.With().Str("stack", "inside").Logger(),
		Seed:             int64(seed),
	})
	if err != nil {
		return fmt.Errorf("fwx: inside netstack: %w", err)
	}
	u.inside.HandleTCP(u.interceptTCP)
	if u.host != nil {
		return nil
	}
	outOut := newQueueWriter(u.outsideQs)
	u.outside, err = netstack.New(netstack.Options{
		Addrs:            outside,
		GSO:              isVnet(out),
		ChecksumsChecked: true,
		MTU:              u.outsideMTU,
		Output:           func(pkts [][]byte) error { return write(outOut, pkts) },
		OutputVectors:    writeVectors(outOut),
		OutputOffset:     headroom,
		Log:              log.With().Str("stack", "outside").Logger(),
		Seed:             int64(seed) + 1,
	})
	if err != nil {
		u.inside.Close()
		return fmt.Errorf("fwx: outside netstack: %w", err)
	}
	return nil
}

// write sends a netstack's packets to a device, each to its flow's queue.
// Once fwx is stopping, the devices are closed first; what the stacks
// still send then is dropped without a word. The stacks of vnet devices
// run with GSO: their link writes each packet's virtio header itself.
func write(w *queueWriter, pkts [][]byte) error {
	if err := w.write(pkts, headroom); err != nil && !errors.Is(err, os.ErrClosed) {
		return err
	}
	return nil
}

// writeVectors returns the netstack output that writes each packet's
// pieces (gVisor's views) to the device without copying them into one
// buffer first (vnettun.Device.WriteVectors), or nil when a queue of the
// device cannot (then the stack copies, and write writes).
func writeVectors(w *queueWriter) func([][][]byte) error {
	if !w.vectors() {
		return nil
	}
	return func(pkts [][][]byte) error {
		if err := w.writeVectors(pkts, headroom); err != nil && !errors.Is(err, os.ErrClosed) {
			return err
		}
		return nil
	}
}

// interceptTCP hands a client's connection that the inside stack caught to
// the session layer, with the NAT flow that says where it goes.
func (u *userPath) interceptTCP(r *netstack.TCPRequest) {
	f := u.table.LookupOutbound(nat.TCP, r.Src, r.Dst, u.clock.Now())
	if f == nil || !f.UserMode() {
		r.Reset()
		return
	}
	u.sessions.ServeOutbound(session.Intercepted{
		Client: r.Src,
		Dst:    r.Dst,
		Flow:   f,
		Accept: func() (session.Conn, error) { return conn(r.Accept()) },
		Reset: func() {
			// The RST goes from the inside stack straight to the
			// client; the flow learns of it here, so it ends now
			// rather than on its SYN_SENT timer.
			r.Reset()
			u.table.Observe(f, false, 0, header.TCPFlagRst, u.clock.Now())
		},
	})
}

// ListenOutside implements session.UserPath.
func (u *userPath) ListenOutside(local netip.AddrPort, backlog int) (session.Listener, error) {
	if u.outside == nil {
		return u.listenHost(local)
	}
	ln, err := u.outside.ListenTCP(local, backlog)
	if err != nil {
		return nil, err
	}
	return listener{ln}, nil
}

// DialInside implements session.UserPath.
func (u *userPath) DialInside(ctx context.Context, local, remote netip.AddrPort) (session.Conn, error) {
	return conn(u.inside.DialTCP(ctx, local, remote))
}

// DialOutside implements session.UserPath.
func (u *userPath) DialOutside(ctx context.Context, local, remote netip.AddrPort) (session.Conn, error) {
	if u.outside == nil {
		return u.dialHost(ctx, local, remote)
	}
	return conn(u.outside.DialTCP(ctx, local, remote))
}

// publish makes the outside accept the connections of a publication on
// the user-mode path: in router mode the NAT table diverts them to the
// outside stack. Once Run has started, its accept loop starts at once.
func (u *userPath) publish(pub policy.Publication, listen netip.AddrPort) error {
	ln, err := u.ListenOutside(listen, 0)
	if err != nil {
		return fmt.Errorf("fwx: publish %q on %v: %w", pub.Name, listen, err)
	}
	p := &published{pub, ln}
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.mu.closed {
		ln.Close()
		return fmt.Errorf("fwx: publish %q: %w", pub.Name, net.ErrClosed)
	}
	u.mu.published[pub.Name] = p
	if u.mu.serving {
		u.acceptLocked(p)
	}
	return nil
}

// unpublish stops accepting the connections of a publication; those it
// accepted live on.
func (u *userPath) unpublish(name string) {
	u.mu.Lock()
	p := u.mu.published[name]
	delete(u.mu.published, name)
	u.mu.Unlock()
	if p != nil {
		p.ln.Close()
	}
}

// serve starts the accept loops of the publications.
func (u *userPath) serve() {
	u.mu.Lock()
	defer u.mu.Unlock()
	u.mu.serving = true
	for _, p := range u.mu.published {
		u.acceptLocked(p)
	}
}

// acceptLocked runs p's accept loop until its listener closes.
func (u *userPath) acceptLocked(p *published) {
	u.wg.Add(1)
	go func() {
		defer u.wg.Done()
		for {
			c, err := p.ln.Accept()
			if err != nil {
				return
			}
			u.wg.Add(1)
			go func() {
				defer u.wg.Done()
				u.sessions.ServeInbound(session.Incoming{
					Peer:     c,
					Server:   p.pub.Server,
					Rule:     p.pub.Name,
					Protocol: p.pub.Protocol,
					Filter:   p.pub.Filter,
				})
			}()
		}
	}()
}

// close stops the stacks, which ends every user-mode connection and accept
// loop, and waits for them.
func (u *userPath) close() {
	u.mu.Lock()
	u.mu.closed = true
	pubs := u.mu.published
	u.mu.published = nil
	u.mu.Unlock()
	for _, p := range pubs {
		p.ln.Close()
	}
	u.inside.Close()
	if u.outside != nil {
		u.outside.Close()
	}
	u.wg.Wait()
}

// listener adapts a netstack listener to session.Listener.
type listener struct{ *netstack.Listener }

func (l listener) Accept() (session.Conn, error) { return conn(l.Listener.Accept()) }

// conn converts a netstack result to a session.Conn, keeping a failed
// result a nil interface rather than an interface holding a nil pointer.
func conn(c *netstack.Conn, err error) (session.Conn, error) {
	if err != nil {
		return nil, err
	}
	return c, nil
}
