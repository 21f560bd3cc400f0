package nat

import (
	"encoding/binary"
	"net/netip"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"gvisor.dev/gvisor/pkg/tcpip/header"
)

// Fragments are reassembled before a datagram is decided and translated,
// and the translated datagram is cut again into fragments no larger than
// the largest that arrived ([Refragment]), as Linux's conntrack does. Only
// the whole datagram tells its ports and flags for sure: a first fragment
// may be cut before them (RFC 7112), and a later one may overwrite them
// (RFC 1858). A fragment that overlaps another poisons its datagram, which
// is dropped whole, fragments still to come included (RFC 5722; Linux does
// the same for IPv4 since 2018).
//
// Memory is bounded in total and per source address, so a flood of
// fragments that never complete costs at most that, and an incomplete
// datagram is dropped when its timer runs out. This is the one place the
// package allocates per packet: a datagram's buffer grows as its fragments
// arrive.

// FragmentLimits bound the reassembly of fragmented datagrams. Zero fields
// take their defaults.
type FragmentLimits struct {
	// Memory bounds the bytes held for incomplete datagrams: 4 MiB by
	// default, Linux's ipfrag_high_thresh.
	Memory int
	// PerSource bounds what the datagrams of one source address may hold:
	// a quarter of Memory by default, so one sender cannot crowd out the
	// others.
	PerSource int
	// Timeout4 and Timeout6 are how long an incomplete datagram waits for
	// its missing fragments: 30 s for IPv4 (Linux's ipfrag_time), 60 s
	// for IPv6 (RFC 8200 section 4.5).
	Timeout4, Timeout6 time.Duration
}

// WithDefaults returns l with every zero (or negative) field replaced by
// its default.
func (l FragmentLimits) WithDefaults() FragmentLimits {
	if l.Memory <= 0 {
		l.Memory = 4 << 20
	}
	if l.PerSource <= 0 {
		l.PerSource = l.Memory / 4
	}
	if l.Timeout4 <= 0 {
		l.Timeout4 = 30 * time.Second
	}
	if l.Timeout6 <= 0 {
		l.Timeout6 = 60 * time.Second
	}
	return l
}

const (
	// maxFragments bounds the fragments of one datagram: 64 KiB in the
	// 552-byte fragments of a 576-byte path. More is a flood.
	maxFragments = 128
	// datagramCost is what a datagram's bookkeeping is charged, beyond
	// its buffer, so a flood of tiny fragments is bounded too.
	datagramCost = 256
	// MaxDatagram is the largest datagram reassembly returns: an IPv4
	// packet's largest, or an IPv6 payload's plus its header.
	MaxDatagram = header.IPv6MinimumSize + 0xffff
)

// fragKey identifies a datagram's fragments: source, destination and
// identification, and for IPv4 the protocol (RFC 791; RFC 8200 leaves it
// out).
type fragKey struct {
	src, dst netip.Addr
	id       uint32
	proto    Proto
}

// span is the range [start, end) of the fragmentable part one fragment
// carried.
type span struct{ start, end int }

// datagram is a datagram being reassembled.
type datagram struct {
	deadline int64
	// head holds the first fragment's headers: the IPv4 header, or the
	// IPv6 header and extension headers up to the fragment header's end.
	head   []byte
	data   []byte     // the fragmentable part, as far as it arrived
	spans  []span     // the fragments that arrived, sorted, disjoint
	got    int        // the bytes they hold
	total  int        // the fragmentable part's length, once the last fragment came; else -1
	mtu    int        // the largest fragment that arrived
	cost   int        // what the datagram is charged against the limits
	poison bool       // given up: its fragments are dropped until its deadline,
	why    DropReason // and counted under why
}

// reassembler holds the datagrams being reassembled. It has its own lock:
// fragments are rare, and the lock is never taken for other packets.
type reassembler struct {
	limits FragmentLimits
	drops  *[NumDropReasons]atomic.Uint64

	mu        sync.Mutex
	pending   map[fragKey]*datagram
	bySource  map[netip.Addr]int // bytes charged per source address
	used      atomic.Int64       // bytes charged in total; read without mu by Stats
	nextSweep int64
}

func newReassembler(l FragmentLimits, drops *[NumDropReasons]atomic.Uint64) *reassembler {
	return &reassembler{
		limits:   l.WithDefaults(),
		drops:    drops,
		pending:  make(map[fragKey]*datagram),
		bySource: make(map[netip.Addr]int),
	}
}

// Reassemble takes fragment p (p.Kind is [Fragment]) at now. When p
// completes its datagram, it writes the whole packet into out (which should
// hold [MaxDatagram] bytes) and returns its length, and the size of the
// largest fragment that made it: the size the translated datagram is cut
// to again by [Refragment]. Otherwise it returns 0: the fragment is held,
// or dropped and counted (an overlap, a malformed fragment, the limits).
//
// An IPv4 datagram keeps its identification in its header; an IPv6 one
// keeps its fragment header, as an atomic fragment (offset 0, no more
// fragments: RFC 6946), so Refragment cuts it with the identification it
// came with.
func (t *Table) Reassemble(p *Packet, out []byte, now time.Time) (n, mtu int) {
	return t.frags.add(p, out, now.UnixNano())
}

func (r *reassembler) add(p *Packet, out []byte, now int64) (int, int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if now >= r.nextSweep {
		r.sweep(now)
		r.nextSweep = now + int64(time.Second)
	}
	fi := p.frag
	k := fragKey{src: p.Src.Addr(), dst: p.Dst.Addr(), id: fi.id}
	// The fragment's data starts after its headers, which the first
	// fragment gives the reassembled packet.
	dataAt := p.l4
	limit := 0xffff - dataAt // the largest IPv4 total length, less the header
	if p.v6 {
		dataAt = fi.hdr + 8
		limit = 0xffff - (dataAt - header.IPv6MinimumSize) // the largest payload length
	} else {
		k.proto = p.Proto
	}
	data := p.b[dataAt:]
	start, end := int(fi.offset), int(fi.offset)+len(data)
	if (fi.more && len(data)%8 != 0) || len(data) == 0 || end > limit {
		r.drop(DropFragment)
		return 0, 0
	}
	d := r.pending[k]
	if d == nil {
		d = &datagram{total: -1, deadline: now + int64(r.timeout(p.v6))}
		if !r.charge(k.src, d, datagramCost) {
			r.drop(DropFragmentLimit)
			return 0, 0
		}
		r.pending[k] = d
	}
	if d.poison {
		r.drop(d.why)
		return 0, 0
	}
	i, dup, ok := d.place(start, end)
	switch {
	case dup:
		return 0, 0 // an exact repeat: a duplicated packet, nothing new
	case len(d.spans) == maxFragments:
		r.poison(k, d, DropFragmentLimit)
		return 0, 0
	case !ok || (d.total >= 0 && (end > d.total || !fi.more && end != d.total)) ||
		(!fi.more && len(d.spans) > 0 && end < d.spans[len(d.spans)-1].end):
		// Overlapping, past the end, a second and different end, an
		// end before data already received: the fragments contradict
		// each other, and the datagram is dropped whole.
		r.poison(k, d, DropFragmentOverlap)
		return 0, 0
	}
	if start == 0 {
		if !r.charge(k.src, d, dataAt) {
			r.drop(DropFragmentLimit)
			return 0, 0
		}
		d.head = append(d.head, p.b[:dataAt]...)
	}
	if end > len(d.data) {
		if end > cap(d.data) {
			grown := min(max(end, 2*cap(d.data)), limit)
			if !r.charge(k.src, d, grown-cap(d.data)) {
				r.drop(DropFragmentLimit)
				return 0, 0
			}
			d.data = append(make([]byte, 0, grown), d.data...)
		}
		d.data = d.data[:end]
	}
	copy(d.data[start:], data)
	d.spans = slices.Insert(d.spans, i, span{start, end})
	d.got += end - start
	d.mtu = max(d.mtu, len(p.b))
	if !fi.more {
		d.total = end
	}
	if d.head == nil || d.got != d.total {
		return 0, 0
	}
	n := d.assemble(out, p.v6)
	r.release(k, d)
	return n, d.mtu
}

// place finds where a fragment carrying [start, end) goes among the
// fragments received. It reports dup for an exact repeat of one, and ok
// false when it overlaps one any other way.
func (d *datagram) place(start, end int) (i int, dup, ok bool) {
	i, _ = slices.BinarySearchFunc(d.spans, start, func(s span, v int) int { return s.start - v })
	if i < len(d.spans) && d.spans[i] == (span{start, end}) {
		return i, true, true
	}
	if (i > 0 && d.spans[i-1].end > start) || (i < len(d.spans) && d.spans[i].start < end) {
		return i, false, false
	}
	return i, false, true
}

// assemble writes the whole datagram into out and returns its length, or 0
// when out is too small.
func (d *datagram) assemble(out []byte, v6 bool) int {
	n := len(d.head) + d.total
	if n > len(out) {
		return 0
	}
	copy(out, d.head)
	copy(out[len(d.head):], d.data[:d.total])
	if v6 {
		binary.BigEndian.PutUint16(out[4:], uint16(n-header.IPv6MinimumSize))
		fh := out[len(d.head)-8:]
		fh[2], fh[3] = 0, 0 // offset 0, no more fragments
		return n
	}
	ip := header.IPv4(out[:n])
	ip.SetTotalLength(uint16(n))
	ip.SetFlagsFragmentOffset(0, 0)
	ip.SetChecksum(0)
	ip.SetChecksum(^ip.CalculateChecksum())
	return n
}

func (r *reassembler) timeout(v6 bool) time.Duration {
	if v6 {
		return r.limits.Timeout6
	}
	return r.limits.Timeout4
}

// charge adds n bytes to what datagram d of source src holds, unless that
// would pass a limit.
func (r *reassembler) charge(src netip.Addr, d *datagram, n int) bool {
	if int(r.used.Load())+n > r.limits.Memory || r.bySource[src]+n > r.limits.PerSource {
		return false
	}
	r.used.Add(int64(n))
	r.bySource[src] += n
	d.cost += n
	return true
}

// poison gives up datagram d, counting the fragments it held and the one
// that ended it under why: its buffer goes, and it stays only to drop the
// fragments still to come until its deadline.
func (r *reassembler) poison(k fragKey, d *datagram, why DropReason) {
	r.drops[why].Add(uint64(len(d.spans) + 1))
	r.uncharge(k.src, d, d.cost-datagramCost)
	d.poison, d.why, d.data, d.spans, d.head = true, why, nil, nil, nil
}

// release forgets datagram k.
func (r *reassembler) release(k fragKey, d *datagram) {
	r.uncharge(k.src, d, d.cost)
	delete(r.pending, k)
}

func (r *reassembler) uncharge(src netip.Addr, d *datagram, n int) {
	d.cost -= n
	r.used.Add(int64(-n))
	if r.bySource[src] -= n; r.bySource[src] <= 0 {
		delete(r.bySource, src)
	}
}

// expire drops the datagrams whose timer ran out at now: the table's sweep
// calls it, so the memory a flood of fragments held goes back when no
// fragment follows it.
func (r *reassembler) expire(now int64) {
	r.mu.Lock()
	r.sweep(now)
	r.mu.Unlock()
}

// sweep drops the datagrams whose timer ran out at now, counting the
// fragments they held.
func (r *reassembler) sweep(now int64) {
	for k, d := range r.pending {
		if now >= d.deadline {
			r.drops[DropFragmentTimeout].Add(uint64(len(d.spans)))
			r.release(k, d)
		}
	}
}

func (r *reassembler) drop(why DropReason) { r.drops[why].Add(1) }
