package lab

import (
	"sync"
	"sync/atomic"

	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/stack"

	"github.com/fwx-dev/fwx/netstack/internal/iplink"
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
	iplink.Endpoint
	out     chan *[]byte
	pool    sync.Pool // of *[]byte
	drops   atomic.Uint64
	sent    atomic.Uint64
	logDrop func(pkt []byte)
}

// newLink returns a link whose send queue holds queueLen packets.
func newLink(mtu, queueLen int, logDrop func(pkt []byte)) *link {
	l := &link{out: make(chan *[]byte, queueLen), logDrop: logDrop}
	l.SetMTU(uint32(mtu))
	return l
}

// WritePackets implements stack.LinkWriter. It copies each packet; the
// caller keeps ownership of pkts.
func (l *link) WritePackets(pkts stack.PacketBufferList) (int, tcpip.Error) {
	if l.Closed() {
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
	b := make([]byte, 0, l.MTU())
	return &b
}

func (l *link) putBuf(p *[]byte) { l.pool.Put(p) }
