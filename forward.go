package fwx

import (
	"errors"
	"os"

	"golang.zx2c4.com/wireguard/tun"
	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/header"

	"github.com/fwx-dev/fwx/nat"
	"github.com/fwx-dev/fwx/session/policy"
)

// The fast path, one goroutine per side:
//
//	read a batch from the device
//	for each packet: parse ─► nat.Table.Outbound/Inbound (rewrite in place)
//	  Forward       ─► queue for the other device
//	  Hairpin/Local ─► answer or turn around ─► queue back to this device
//	  Reject        ─► RST / ICMP administratively prohibited ─► queue back
//	  Divert        ─► the user-mode flow's netstack on this side
//	write each queue as one batch
//
// Buffers are allocated once per goroutine; a packet is never copied, and
// nothing is allocated per packet.

const (
	// headroom is left before each packet so a TUN with a virtio-net
	// header can write it in place (golang.zx2c4.com/wireguard/tun needs
	// at least 10 bytes).
	headroom = 16
	// maxPacket is the largest packet a read can return: a whole GSO
	// superpacket, before the device splits it.
	maxPacket = 65535
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
func (fw *Firewall) forward(from, to tun.Device, out bool) error {
	return fw.forwardBatch(newBatch(max(from.BatchSize(), to.BatchSize(), 1)), from, to, out)
}

// forwardBatch is forward with its buffers allocated by the caller.
func (fw *Firewall) forwardBatch(b *batch, from, to tun.Device, out bool) error {
	stack := fw.user.outside
	if out {
		stack = fw.user.inside
	}
	for {
		count, err := from.Read(b.bufs, b.sizes, headroom)
		if err != nil {
			if errors.Is(err, tun.ErrTooManySegments) {
				fw.cfg.Log.Warn().Err(err).Msg("dropped a superpacket")
				continue
			}
			if errors.Is(err, os.ErrClosed) {
				return nil
			}
			return err
		}
		now := fw.clock.Now()
		b.fwd, b.back, b.divert, b.nreply = b.fwd[:0], b.back[:0], b.divert[:0], 0
		for i := 0; i < count; i++ {
			buf := b.bufs[i][:headroom+b.sizes[i]]
			p := nat.Parse(buf[headroom:])
			var v nat.Verdict
			if out {
				v = fw.table.Outbound(&p, now)
			} else {
				v = fw.table.Inbound(&p, now)
			}
			switch v {
			case nat.Forward:
				b.fwd = append(b.fwd, buf[:headroom+p.Len()])
			case nat.Hairpin:
				b.back = append(b.back, buf[:headroom+p.Len()])
			case nat.Local:
				fw.local(b, buf, &p, out)
			case nat.Reject:
				if fw.reject == policy.RejectReply {
					fw.refuse(b, &p, out, header.ICMPv4DstUnreachable, header.ICMPv4AdminProhibited)
				}
			case nat.TimeExceeded:
				fw.refuse(b, &p, out, header.ICMPv4TimeExceeded, header.ICMPv4TTLExceeded)
			case nat.Divert:
				b.divert = append(b.divert, buf[headroom:headroom+p.Len()])
			}
		}
		if len(b.divert) > 0 {
			stack.Deliver(b.divert)
		}
		fw.write(to, b.fwd)
		fw.write(from, b.back)
	}
}

func (fw *Firewall) write(d tun.Device, bufs [][]byte) {
	if len(bufs) == 0 {
		return
	}
	if _, err := d.Write(bufs, headroom); err != nil {
		fw.cfg.Log.Debug().Err(err).Int("packets", len(bufs)).Msg("write failed")
	}
}

// local answers a packet addressed to fwx itself: an echo request gets its
// reply, anything else is refused as a host with no such service would.
func (fw *Firewall) local(b *batch, buf []byte, p *nat.Packet, out bool) {
	switch {
	case p.Kind == nat.Query:
		nat.EchoReply(p)
		b.back = append(b.back, buf[:headroom+p.Len()])
	case p.Proto == nat.TCP:
		fw.refuse(b, p, out, 0, 0)
	case p.Proto == nat.UDP:
		fw.refuse(b, p, out, header.ICMPv4DstUnreachable, header.ICMPv4PortUnreachable)
	}
}

// refuse queues fwx's answer to a packet it will not forward: a RST for TCP
// (the reply a closed port gives, so clients fail fast), otherwise an ICMP
// error of the given type and code from fwx's address on that side.
func (fw *Firewall) refuse(b *batch, p *nat.Packet, out bool, typ header.ICMPv4Type, code header.ICMPv4Code) {
	if b.nreply == len(b.replies) {
		return
	}
	r := b.replies[b.nreply]
	var n int
	if p.Proto == nat.TCP && typ != header.ICMPv4TimeExceeded {
		n = nat.BuildRST(r[headroom:], p)
	} else {
		from := fw.cfg.OutsideAddr.Addr()
		if out {
			from = fw.cfg.InsideAddr.Addr()
		}
		n = nat.BuildICMPError(r[headroom:], p, tcpip.AddrFrom4(from.As4()), typ, code)
	}
	if n > 0 {
		b.nreply++
		b.back = append(b.back, r[:headroom+n])
	}
}
