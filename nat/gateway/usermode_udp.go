package gateway

import (
	"errors"
	"fmt"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"gvisor.dev/gvisor/pkg/tcpip/header"

	"github.com/fwx-dev/fwx/nat"
	"github.com/fwx-dev/fwx/netstack/vnettun"
	"github.com/fwx-dev/fwx/session"
)

// The user-mode path for UDP: datagrams, not a netstack. The forward loop
// hands each datagram the table diverts to the session layer, which runs
// the flow's datagram filters on a goroutine of the flow's and sends what
// they pass with SendDatagram: a packet built anew, with the flow's
// translation, written to the device of the side it goes to. Nothing here
// runs for a fast-path packet.

// divertDatagram hands a datagram of a user-mode UDP flow, read from the
// inside (out) or the outside, to the session layer. A datagram whose
// checksum is wrong is dropped, as the host it was for would drop it:
// filters see only what a host's socket would.
func (u *userPath) divertDatagram(p *nat.Packet, out bool, now time.Time) {
	if p.Kind != nat.Transport || p.TTL() <= 1 || !p.ChecksumValid() {
		return
	}
	var f *nat.Flow
	if out {
		f = u.table.LookupOutbound(nat.UDP, p.Src, p.Dst, now)
	} else {
		f = u.table.LookupInbound(nat.UDP, p.Src, p.Dst, now)
	}
	if f == nil || !f.UserMode() {
		return
	}
	u.sessions.DeliverDatagram(f, out, p.TTL()-1, p.Payload())
}

// datagramBufs hold the packets SendDatagram builds.
var datagramBufs = sync.Pool{New: func() any { b := make([]byte, headroom+0xffff); return &b }}

// SendDatagram implements session.UserPath.
func (u *userPath) SendDatagram(f *nat.Flow, toInside bool, ttl uint8, payload []byte) error {
	src, dst, qs, mtu := f.External(), f.Remote(), u.outsideQs, u.outsideMTU
	if toInside {
		src, dst, qs, mtu = f.Target(), f.Inside(), u.insideQs, u.insideMTU
	}
	bp := datagramBufs.Get().(*[]byte)
	defer datagramBufs.Put(bp)
	buf := *bp
	n := nat.BuildUDP(buf[headroom:], src, dst, ttl, payload)
	if n == 0 {
		return fmt.Errorf("fwx: a %d-byte datagram does not fit in a packet", len(payload))
	}
	pkt := buf[:headroom+n]
	if !toInside && u.table.IsExternal(dst.Addr()) {
		// To another inside host's external endpoint: hairpinned, as the
		// fast path does, to that host or to its flow's datagram filters.
		p, now := nat.Parse(pkt[headroom:]), u.clock.Now()
		p.SetChecksumVerified(true) // BuildUDP computed it
		switch u.table.Hairpinned(&p, now) {
		case nat.Forward:
			pkt, qs, mtu = buf[:headroom+p.Len()], u.insideQs, u.insideMTU
		case nat.Divert:
			u.divertDatagram(&p, false, now)
			return nil
		default:
			return nil
		}
	}
	// The flow's queue, for all the datagram's fragments.
	d := qs.of(pkt[headroom:])
	pkts := [][]byte{pkt}
	// A datagram larger than the device's MTU (a filter grew it, or it
	// came in fragments that fwx reassembled) leaves in fragments, which
	// for IPv6 fwx makes as its source (with a fragment header); the host
	// takes it whole, and its kernel fragments as its routes need.
	if len(pkt)-headroom > mtu {
		mtu = min(mtu, maxSegment)
		fb := fragmentBufs.Get().(*fragments)
		defer fragmentBufs.Put(fb)
		var n int
		if dst.Addr().Is4() {
			ip := header.IPv4(pkt[headroom:])
			ip.SetID(uint16(datagramID.Add(1)))
			ip.SetChecksum(0)
			ip.SetChecksum(^ip.CalculateChecksum())
			n = nat.Refragment(pkt[headroom:], mtu, fb.bufs, fb.sizes, headroom)
		} else {
			n = nat.Fragment6(pkt[headroom:], mtu, datagramID.Add(1), fb.bufs, fb.sizes, headroom)
		}
		if n == 0 {
			return fmt.Errorf("fwx: a %d-byte datagram could not be cut into %d-byte fragments", len(pkt)-headroom, mtu)
		}
		pkts = fb.pkts[:0]
		for i, b := range fb.bufs[:n] {
			pkts = append(pkts, b[:headroom+fb.sizes[i]])
		}
	}
	for _, p := range pkts {
		if isVnet(d) {
			vnettun.ClearHdr(p[headroom-vnettun.VirtioHdrLen:])
		}
	}
	if _, err := d.Write(pkts, headroom); err != nil && !errors.Is(err, os.ErrClosed) {
		return fmt.Errorf("fwx: user-mode UDP to %v: %w", dst, err)
	}
	return nil
}

// datagramID numbers the datagrams SendDatagram cuts into fragments
// (their IPv4 or IPv6 identification).
var datagramID atomic.Uint32

// fragments holds the fragments of one datagram SendDatagram cuts.
type fragments struct {
	bufs  [][]byte
	sizes []int
	pkts  [][]byte
}

var fragmentBufs = sync.Pool{New: func() any {
	f := &fragments{bufs: make([][]byte, maxSegments), sizes: make([]int, maxSegments), pkts: make([][]byte, 0, maxSegments)}
	for i := range f.bufs {
		f.bufs[i] = make([]byte, headroom+maxSegment)
	}
	return f
}}

// flowEnds tells the user-mode UDP path when a flow ends, after the
// observer it wraps (the firewall log): the flow's connection ends with
// it.
type flowEnds struct {
	nat.Observer
	sessions *session.Manager
}

// FlowEnded implements nat.Observer.
func (o *flowEnds) FlowEnded(f *nat.Flow, at time.Time) {
	o.Observer.FlowEnded(f, at)
	if f.UserMode() && f.Proto() == nat.UDP && o.sessions != nil {
		o.sessions.EndFlow(f)
	}
}
