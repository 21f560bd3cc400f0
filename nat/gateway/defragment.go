package gateway

import (
	"time"

	"golang.zx2c4.com/wireguard/tun"

	"github.com/fwx-dev/fwx/nat"
	"github.com/fwx-dev/fwx/netstack/vnettun"
	"github.com/fwx-dev/fwx/session/policy"
)

// Fragments take a path of their own beside the batch: the table holds
// them until their datagram is complete (nat.Table.Reassemble), the whole
// datagram is decided and translated as any packet, and what goes on is cut
// again into fragments no larger than the largest that came, so the path
// MTU the sender found still holds. Fragments are rare; this path
// allocates once per goroutine, and writes at once rather than with the
// batch.

// defragment takes fragment p, read from the inside (out) or the outside.
func (g *Gateway) defragment(b *batch, from, to tun.Device, out bool, p *nat.Packet, now time.Time) {
	if b.whole == nil {
		b.whole = make([]byte, headroom+nat.MaxDatagram)
	}
	n, mtu := g.table.Reassemble(p, b.whole[headroom:], now)
	if n == 0 {
		return
	}
	q := nat.Parse(b.whole[headroom : headroom+n])
	var v nat.Verdict
	if out {
		v = g.table.Outbound(&q, now)
	} else {
		v = g.table.Inbound(&q, now)
	}
	switch v {
	case nat.Forward:
		g.writeFragments(b, to, q.Bytes(), mtu)
	case nat.Hairpin:
		g.writeFragments(b, from, q.Bytes(), mtu)
	case nat.Local:
		if q.Kind == nat.Query {
			nat.EchoReply(&q)
			g.writeFragments(b, from, q.Bytes(), mtu)
		} else {
			g.refuse(b, &q, out, nat.PortUnreachable)
		}
	case nat.Reject:
		if g.rejectMode() == policy.RejectReply {
			g.refuse(b, &q, out, nat.AdminProhibited)
		}
	case nat.Reset:
		g.refuse(b, &q, out, nat.AdminProhibited) // a RST: the datagram is TCP
	case nat.TimeExceeded:
		g.refuse(b, &q, out, nat.TTLExceeded)
	case nat.Divert:
		switch {
		case q.Proto == nat.UDP:
			g.user.divertDatagram(&q, out, now)
		case b.stack != nil && q.ChecksumValid():
			b.stack.Deliver([][]byte{q.Bytes()})
		}
	}
}

// writeFragments writes datagram pkt (in b.whole) to d, cut into fragments
// of at most mtu bytes. The host takes it whole: its sockets send the
// payload, and the kernel fragments as its routes need.
func (g *Gateway) writeFragments(b *batch, d tun.Device, pkt []byte, mtu int) {
	if g.host != nil && d == g.outside[0] {
		g.write(d, [][]byte{b.whole[:headroom+len(pkt)]})
		return
	}
	b.splitBuffers()
	n := nat.Refragment(pkt, min(mtu, maxSegment), b.split, b.splitSizes, headroom)
	if n == 0 {
		g.log.Debug().Int("bytes", len(pkt)).Int("mtu", mtu).Msg("dropped a datagram that could not be cut into fragments")
		return
	}
	segs := b.segs[:0]
	for i, buf := range b.split[:n] {
		if isVnet(d) {
			vnettun.ClearHdr(buf[headroom-vnettun.VirtioHdrLen:])
		}
		segs = append(segs, buf[:headroom+b.splitSizes[i]])
	}
	g.write(d, segs)
}
