package lab

import (
	"sync"
	"sync/atomic"

	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/header"
	"gvisor.dev/gvisor/pkg/tcpip/stack"
)

// sendQueueLen is how many outbound packets a host's link queues before it
// drops. It is far more than gVisor's TCP puts in flight with default
// buffers, so a drop means something is stuck, and is counted.
const sendQueueLen = 8192

var _ stack.LinkEndpoint = (*link)(nil)

// link is a host's NIC: a point-to-point IP link (no link-layer header, no
// address resolution) to its segment. Outbound packets are copied into a
// queue that the host's pump goroutine drains into the segment device;
// inbound packets arrive through Host.deliver.
//
// WritePackets never blocks: gVisor calls it with endpoint locks held, and
// the packet that would unblock it may be one this very stack is waiting
// to process. When the queue is full the packet is dropped and counted,
// as a real NIC would.
type link struct {
	mtu     atomic.Uint32
	out     chan *[]byte
	pool    sync.Pool // of *[]byte
	drops   atomic.Uint64
	sent    atomic.Uint64
	logDrop func(pkt []byte)

	mu struct {
		sync.RWMutex
		dispatcher stack.NetworkDispatcher
		closed     bool
	}
}

// newLink returns a link whose send queue holds queueLen packets.
func newLink(mtu, queueLen int, logDrop func(pkt []byte)) *link {
	l := &link{out: make(chan *[]byte, queueLen), logDrop: logDrop}
	l.mtu.Store(uint32(mtu))
	return l
}

// WritePackets implements stack.LinkWriter. It copies each packet; the
// caller keeps ownership of pkts.
func (l *link) WritePackets(pkts stack.PacketBufferList) (int, tcpip.Error) {
	l.mu.RLock()
	closed := l.mu.closed
	l.mu.RUnlock()
	if closed {
		return 0, &tcpip.ErrClosedForSend{}
	}
	n := 0
	for _, pkt := range pkts.AsSlice() {
		b := l.getBuf()
		for _, s := range pkt.AsSlices() {
			*b = append(*b, s...)
		}
		select {
		case l.out <- b:
			l.sent.Add(1)
			n++
		default:
			l.drops.Add(1)
			l.logDrop(*b)
			l.putBuf(b)
			if n == 0 {
				return 0, &tcpip.ErrNoBufferSpace{}
			}
			return n, nil
		}
	}
	return n, nil
}

// getBuf returns an empty buffer from the pool.
func (l *link) getBuf() *[]byte {
	if p, ok := l.pool.Get().(*[]byte); ok {
		*p = (*p)[:0]
		return p
	}
	b := make([]byte, 0, l.mtu.Load())
	return &b
}

func (l *link) putBuf(p *[]byte) { l.pool.Put(p) }

// dispatcher returns the stack's inbound dispatcher, or nil once the NIC
// is detached or closed.
func (l *link) dispatcher() stack.NetworkDispatcher {
	l.mu.RLock()
	defer l.mu.RUnlock()
	if l.mu.closed {
		return nil
	}
	return l.mu.dispatcher
}

// Attach implements stack.NetworkLinkEndpoint.
func (l *link) Attach(d stack.NetworkDispatcher) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.mu.dispatcher = d
}

// IsAttached implements stack.NetworkLinkEndpoint.
func (l *link) IsAttached() bool {
	l.mu.RLock()
	defer l.mu.RUnlock()
	return l.mu.dispatcher != nil
}

// Close implements stack.NetworkLinkEndpoint. The stack calls it when the
// NIC is removed; the pump goroutine is stopped by its Host.
func (l *link) Close() {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.mu.closed = true
}

// MTU implements stack.NetworkLinkEndpoint.
func (l *link) MTU() uint32 { return l.mtu.Load() }

// SetMTU implements stack.NetworkLinkEndpoint.
func (l *link) SetMTU(mtu uint32) { l.mtu.Store(mtu) }

// MaxHeaderLength implements stack.NetworkLinkEndpoint: there is no
// link-layer header.
func (*link) MaxHeaderLength() uint16 { return 0 }

// LinkAddress implements stack.NetworkLinkEndpoint: there is no link
// address.
func (*link) LinkAddress() tcpip.LinkAddress { return "" }

// SetLinkAddress implements stack.NetworkLinkEndpoint. It does nothing.
func (*link) SetLinkAddress(tcpip.LinkAddress) {}

// Capabilities implements stack.NetworkLinkEndpoint. The link offers no
// offloads, so the stack computes every checksum it sends and verifies
// every checksum it receives: a packet the code under test mangled is
// dropped by the host just as a real host would drop it.
func (*link) Capabilities() stack.LinkEndpointCapabilities { return 0 }

// Wait implements stack.NetworkLinkEndpoint. The link has no goroutines of
// its own.
func (*link) Wait() {}

// ARPHardwareType implements stack.NetworkLinkEndpoint.
func (*link) ARPHardwareType() header.ARPHardwareType { return header.ARPHardwareNone }

// AddHeader implements stack.NetworkLinkEndpoint. There is no header.
func (*link) AddHeader(*stack.PacketBuffer) {}

// ParseHeader implements stack.NetworkLinkEndpoint. There is no header.
func (*link) ParseHeader(*stack.PacketBuffer) bool { return true }

// SetOnCloseAction implements stack.NetworkLinkEndpoint. Unused.
func (*link) SetOnCloseAction(func()) {}
