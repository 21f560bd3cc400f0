package gateway

import (
	"errors"
	"net/netip"
	"os"
	"time"

	"golang.zx2c4.com/wireguard/tun"

	"github.com/fwx-dev/fwx/nat"
	"github.com/fwx-dev/fwx/netstack"
	"github.com/fwx-dev/fwx/netstack/vnettun"
	"github.com/fwx-dev/fwx/session/policy"
)

// The fast path, one goroutine per device queue (queues.go):
//
//	read a batch from the device
//	for each packet: parse ─► nat.Table.Outbound/Inbound (rewrite in place)
//	  Forward       ─► queue for the other device
//	  Hairpin/Local ─► answer or turn around ─► queue back to this device
//	  Reject        ─► RST / ICMP administratively prohibited ─► queue back
//	  Reset         ─► RST (a segment of no connection fwx knows) ─► queue back
//	  Divert        ─► the user-mode flow's netstack on this side (TCP),
//	                   or its datagram filters (UDP, usermode_udp.go)
//	write each queue as one batch
//
// Buffers are allocated once per goroutine and nothing is allocated per
// packet. A packet is copied once into the buffer it is read into (the
// device's Read), rewritten there and written from there. It is copied
// again only where it must change shape or leave the batch: a superpacket
// cut into segments (vnettun.Split), segments merged into the first's
// buffer (vnettun.GRO, vnettun.CoalesceUDP), a fragmented datagram
// reassembled and cut again (defragment.go), a TCP segment delivered to a
// netstack (gVisor keeps a copy), and a user-mode UDP datagram's payload
// (queued for its flow by session.Manager.DeliverDatagram).

const (
	// headroom is left before each packet so a TUN with a virtio-net
	// header can write it in place (golang.zx2c4.com/wireguard/tun needs
	// at least 10 bytes).
	headroom = 16
	// maxPacket is the largest packet a read can return: a whole GSO
	// superpacket.
	maxPacket = 65535
	// maxSegments and maxSegment bound the cutting of a superpacket: 64
	// KiB in segments of at least the 536-byte minimum MSS (RFC 9293), each
	// no larger than a 9000-byte jumbo frame.
	maxSegments = 128
	maxSegment  = 9216
)

// batch holds one goroutine's buffers: the packets read, and the two queues
// of packets to write.
type batch struct {
	bufs    [][]byte
	sizes   []int
	fwd     [][]byte // to the other device
	back    [][]byte // back to the device read from
	divert  [][]byte // to the netstack of this side (user-mode flows)
	replies [][]byte // fwx's own packets (RSTs, ICMP errors)
	nreply  int

	// split holds the segments of a superpacket that must be cut before
	// it goes where superpackets cannot (a netstack, a device without
	// offloads); allocated on first use.
	split      [][]byte // segment buffers, full length, never resliced
	splitSizes []int
	segs       [][]byte        // the segments of the current cut, views into split
	stack      *netstack.Stack // this side's netstack, for diverted segments

	// whole holds a datagram reassembled from fragments (defragment.go);
	// allocated on first use.
	whole []byte
}

func newBatch(n int) *batch {
	b := &batch{
		bufs:    make([][]byte, n),
		sizes:   make([]int, n),
		fwd:     make([][]byte, 0, n),
		back:    make([][]byte, 0, n),
		divert:  make([][]byte, 0, n),
		replies: make([][]byte, n),
	}
	for i := range b.bufs {
		b.bufs[i] = make([]byte, headroom+maxPacket)
		b.replies[i] = make([]byte, headroom+nat.MaxReplyLen)
	}
	return b
}

// forward moves packets from one device to the other until reading fails.
// out says whether from is the inside device.
func (g *Gateway) forward(from, to tun.Device, out bool) error {
	return g.forwardBatch(newBatch(max(from.BatchSize(), to.BatchSize(), 1)), from, to, out)
}

// forwardBatch is forward with its buffers allocated by the caller.
//
// Between two devices with virtio-net headers (vnettun), superpackets
// cross whole: the NAT rewrites their headers once, the virtio header stays
// in the headroom, and the far kernel segments them. Their L4 checksum is
// then a partial sum, which the NAT updates by its own rule. Where a packet
// goes that cannot take that (a netstack, a device without headers), it is
// completed or cut into segments first.
func (g *Gateway) forwardBatch(b *batch, from, to tun.Device, out bool) error {
	fromVnet, toVnet := isVnet(from), isVnet(to)
	// Datagram trains between two vnettun devices leave as USO
	// superpackets where the kernel takes them (Linux >= 6.2).
	coalesceUDP := fromVnet && toVnet && to.(*vnettun.Device).Offloads().Has(vnettun.OffloadUSO4|vnettun.OffloadUSO6)
	b.stack = g.user.outside
	if out {
		b.stack = g.user.inside
	}
	for {
		count, err := from.Read(b.bufs, b.sizes, headroom)
		if err != nil {
			if errors.Is(err, tun.ErrTooManySegments) {
				g.log.Warn().Err(err).Msg("dropped a superpacket")
				continue
			}
			if errors.Is(err, os.ErrClosed) {
				return nil
			}
			return err
		}
		now := g.clock.Now()
		b.fwd, b.back, b.divert, b.nreply = b.fwd[:0], b.back[:0], b.divert[:0], 0
		for i := 0; i < count; i++ {
			buf := b.bufs[i][:headroom+b.sizes[i]]
			var hdr vnettun.Hdr
			if fromVnet {
				hdr = vnettun.ParseHdr(buf[headroom-vnettun.VirtioHdrLen:])
			}
			p := nat.Parse(buf[headroom:])
			if p.Kind == nat.Fragment {
				g.defragment(b, from, to, out, &p, now)
				continue
			}
			// What the kernel vouches for is not checked again: a
			// checksum it left partial (NEEDS_CSUM, the sender's own
			// stack) or verified (DATA_VALID). Anything else is checked
			// where it matters: before it opens a flow (nat) and before
			// it reaches a netstack or a datagram filter, which trust it.
			p.SetPartialChecksum(hdr.NeedsCsum())
			p.SetChecksumVerified(hdr.Flags&vnettun.FlagDataValid != 0)
			var v nat.Verdict
			if out {
				v = g.table.Outbound(&p, now)
			} else {
				v = g.table.Inbound(&p, now)
			}
			switch v {
			case nat.Forward:
				switch {
				case fromVnet && !toVnet && (hdr.NeedsCsum() || hdr.IsGSO()):
					g.emitSegments(b, to, hdr, p.Bytes())
					continue
				case toVnet && !fromVnet:
					vnettun.ClearHdr(buf[headroom-vnettun.VirtioHdrLen:])
				}
				b.fwd = append(b.fwd, buf[:headroom+p.Len()])
			case nat.Hairpin:
				b.back = append(b.back, buf[:headroom+p.Len()])
			case nat.Local:
				g.local(b, buf, &p, out)
			case nat.Reject:
				if g.rejectMode() == policy.RejectReply {
					g.refuse(b, &p, out, nat.AdminProhibited)
				}
			case nat.Reset:
				g.refuse(b, &p, out, nat.AdminProhibited) // a RST: the packet is TCP
			case nat.TimeExceeded:
				g.refuse(b, &p, out, nat.TTLExceeded)
			case nat.Divert:
				if p.Proto == nat.UDP {
					// UDP takes the user-mode path as datagrams.
					g.divertDatagrams(b, hdr, &p, out, now)
					continue
				}
				if b.stack == nil {
					continue // host mode: no TCP from the host is diverted
				}
				// A TCP superpacket goes in as one large segment, as GRO
				// would hand it to a local stack; what cannot be one is
				// cut. The stack trusts checksums: each segment is checked
				// here, unless the kernel vouched for it.
				if hdr.IsGSO() && vnettun.Join(hdr, p.Bytes()) != nil {
					g.emitSegments(b, nil, hdr, p.Bytes())
					continue
				}
				if !p.ChecksumValid() {
					continue
				}
				b.divert = append(b.divert, buf[headroom:headroom+p.Len()])
			}
		}
		if fromVnet {
			// fwx's own packets go back to a device that reads a
			// virtio header before each: an empty one.
			for _, r := range b.replies[:b.nreply] {
				vnettun.ClearHdr(r[headroom-vnettun.VirtioHdrLen:])
			}
		}
		switch {
		case toVnet && !fromVnet:
			// Segments from a device without offloads (a VPN's
			// peers) go to the kernel merged, as its GRO would.
			b.fwd = vnettun.GRO(b.fwd, headroom)
		case coalesceUDP && len(b.fwd) > 1:
			b.fwd = vnettun.CoalesceUDP(b.fwd, headroom)
		}
		if len(b.divert) > 0 {
			b.stack.Deliver(b.divert)
		}
		g.write(to, b.fwd)
		g.write(from, b.back)
	}
}

// emitSegments cuts a packet from a device with virtio headers into
// complete packets and writes them to d, or delivers them to this side's
// netstack when d is nil.
func (g *Gateway) emitSegments(b *batch, d tun.Device, hdr vnettun.Hdr, pkt []byte) {
	n := g.split(b, hdr, pkt)
	if n == 0 {
		return
	}
	segs := b.segs[:0]
	for i, buf := range b.split[:n] {
		if d == nil {
			segs = append(segs, buf[headroom:headroom+b.splitSizes[i]])
		} else {
			segs = append(segs, buf[:headroom+b.splitSizes[i]])
		}
	}
	if d == nil {
		b.stack.Deliver(segs)
	} else {
		g.write(d, segs)
	}
}

// split cuts a superpacket into b.split and returns the number of
// segments, 0 when it cannot be cut.
func (g *Gateway) split(b *batch, hdr vnettun.Hdr, pkt []byte) int {
	b.splitBuffers()
	n, err := vnettun.Split(hdr, pkt, b.split, b.splitSizes, headroom)
	if err != nil {
		g.log.Debug().Err(err).Msg("dropped a superpacket that could not be split")
		return 0
	}
	return n
}

// splitBuffers allocates the buffers packets are cut into, on first use.
func (b *batch) splitBuffers() {
	if b.split != nil {
		return
	}
	b.split = make([][]byte, maxSegments)
	b.splitSizes = make([]int, maxSegments)
	b.segs = make([][]byte, 0, maxSegments)
	for i := range b.split {
		b.split[i] = make([]byte, headroom+maxSegment)
	}
}

// divertDatagrams hands a packet of a user-mode UDP flow to its datagram
// filters; a UDP superpacket is cut into its datagrams first.
func (g *Gateway) divertDatagrams(b *batch, hdr vnettun.Hdr, p *nat.Packet, out bool, now time.Time) {
	if !hdr.IsGSO() {
		g.user.divertDatagram(p, out, now)
		return
	}
	n := g.split(b, hdr, p.Bytes())
	for i, buf := range b.split[:n] {
		seg := nat.Parse(buf[headroom : headroom+b.splitSizes[i]])
		seg.SetChecksumVerified(true) // Split computed it: a second sum would check nothing
		g.user.divertDatagram(&seg, out, now)
	}
}

// isVnet reports whether d carries a virtio-net header in each packet's
// headroom.
func isVnet(d tun.Device) bool {
	_, ok := d.(*vnettun.Device)
	return ok
}

func (g *Gateway) write(d tun.Device, bufs [][]byte) {
	if len(bufs) == 0 {
		return
	}
	if _, err := d.Write(bufs, headroom); err != nil {
		g.log.Debug().Err(err).Int("packets", len(bufs)).Msg("write failed")
	}
}

// local answers a packet addressed to fwx itself: an echo request gets its
// reply, anything else is refused as a host with no such service would.
func (g *Gateway) local(b *batch, buf []byte, p *nat.Packet, out bool) {
	switch {
	case p.Kind == nat.Query:
		nat.EchoReply(p)
		b.back = append(b.back, buf[:headroom+p.Len()])
	case p.Proto == nat.TCP:
		g.refuse(b, p, out, nat.PortUnreachable)
	case p.Proto == nat.UDP:
		g.refuse(b, p, out, nat.PortUnreachable)
	}
}

// refuse queues fwx's answer to a packet it will not forward: a RST for TCP
// (the reply a closed port gives, so clients fail fast), otherwise error e
// from fwx's address on that side, in the packet's family.
func (g *Gateway) refuse(b *batch, p *nat.Packet, out bool, e nat.ICMPError) {
	if b.nreply == len(b.replies) {
		return
	}
	r := b.replies[b.nreply]
	var n int
	if p.Proto == nat.TCP && e != nat.TTLExceeded {
		n = nat.BuildRST(r[headroom:], p)
	} else if from, ok := g.ownAddr(out, p.Is6()); ok {
		n = nat.BuildICMPError(r[headroom:], p, from, e)
	}
	if n > 0 {
		b.nreply++
		b.back = append(b.back, r[:headroom+n])
	}
}

// ownAddr returns fwx's address on the inside (out true: the side a
// packet going out came from) or the outside, of the family of IPv6 (v6)
// or IPv4, and false when fwx has none there.
func (g *Gateway) ownAddr(out, v6 bool) (netip.Addr, bool) {
	ps := g.outsideAddrs
	if out {
		ps = g.insideAddrs
	}
	for _, p := range ps {
		if p.Addr().Is6() == v6 {
			return p.Addr(), true
		}
	}
	return netip.Addr{}, false
}
