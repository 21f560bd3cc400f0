package nat_test

import (
	"bytes"
	"encoding/binary"
	"math/rand/v2"
	"net/netip"
	"testing"
	"time"

	"gvisor.dev/gvisor/pkg/tcpip/checksum"
	"gvisor.dev/gvisor/pkg/tcpip/header"

	"github.com/fwx-dev/fwx/nat"
	"github.com/fwx-dev/fwx/netstack/lab"
)

// split4 cuts an IPv4 packet without options into fragments of size bytes
// of data (a multiple of 8), as a sender would, byte by byte.
func split4(pkt []byte, size int) [][]byte {
	data := pkt[header.IPv4MinimumSize:]
	var frags [][]byte
	for at := 0; at < len(data); at += size {
		end := min(at+size, len(data))
		f := append(bytes.Clone(pkt[:header.IPv4MinimumSize]), data[at:end]...)
		binary.BigEndian.PutUint16(f[2:], uint16(len(f)))
		v := uint16(at / 8)
		if end < len(data) {
			v |= 0x2000 // more fragments
		}
		binary.BigEndian.PutUint16(f[6:], v)
		binary.BigEndian.PutUint16(f[4:], 0x1234) // identification
		f[10], f[11] = 0, 0
		binary.BigEndian.PutUint16(f[10:], ^checksum.Checksum(f[:header.IPv4MinimumSize], 0))
		frags = append(frags, f)
	}
	return frags
}

// split6 cuts an IPv6 packet without extension headers into fragments of
// size bytes of data (a multiple of 8) with identification id.
func split6(pkt []byte, size int, id uint32) [][]byte {
	data := pkt[header.IPv6MinimumSize:]
	var frags [][]byte
	for at := 0; at < len(data); at += size {
		end := min(at+size, len(data))
		f := append(bytes.Clone(pkt[:header.IPv6MinimumSize]), make([]byte, 8)...)
		f[header.IPv6MinimumSize] = pkt[6]
		f[6] = 44
		v := uint16(at)
		if end < len(data) {
			v |= 1
		}
		binary.BigEndian.PutUint16(f[header.IPv6MinimumSize+2:], v)
		binary.BigEndian.PutUint32(f[header.IPv6MinimumSize+4:], id)
		f = append(f, data[at:end]...)
		binary.BigEndian.PutUint16(f[4:], uint16(len(f)-header.IPv6MinimumSize))
		frags = append(frags, f)
	}
	return frags
}

// reassemble feeds frags to tab in order and returns the datagram the
// last one completed, or nil.
func reassemble(tb testing.TB, tab *nat.Table, frags [][]byte, now time.Time) ([]byte, int) {
	tb.Helper()
	out := make([]byte, nat.MaxDatagram)
	for i, f := range frags {
		p := nat.Parse(f)
		if p.Kind != nat.Fragment {
			tb.Fatalf("fragment %d parses as %v: %s", i, p.Kind, lab.PacketString(f))
		}
		if n, mtu := tab.Reassemble(&p, out, now); n > 0 {
			if i != len(frags)-1 {
				tb.Fatalf("complete after %d fragments of %d", i+1, len(frags))
			}
			return out[:n], mtu
		}
	}
	return nil, 0
}

func TestReassembly(t *testing.T) {
	payload := make([]byte, 8192)
	for i := range payload {
		payload[i] = byte(i * 7)
	}
	v4 := lab.UDPPacket(client, server, payload)
	v6 := lab.UDPPacket(client6, server6, payload)
	shuffled := func(frags [][]byte) [][]byte {
		r := rand.New(rand.NewPCG(1, 2))
		r.Shuffle(len(frags), func(i, j int) { frags[i], frags[j] = frags[j], frags[i] })
		return frags
	}
	reversed := func(frags [][]byte) [][]byte {
		for i, j := 0, len(frags)-1; i < j; i, j = i+1, j-1 {
			frags[i], frags[j] = frags[j], frags[i]
		}
		return frags
	}
	for _, tt := range []struct {
		name  string
		orig  []byte
		frags [][]byte
		mtu   int
	}{
		{"ipv4 in order", v4, split4(v4, 1480), 1500},
		{"ipv4 reversed", v4, reversed(split4(v4, 1480)), 1500},
		{"ipv4 shuffled small", v4, shuffled(split4(v4, 552)), 572},
		{"ipv6 in order", v6, split6(v6, 1232, 99), 1280},
		{"ipv6 shuffled", v6, shuffled(split6(v6, 1448, 7)), 1496},
	} {
		t.Run(tt.name, func(t *testing.T) {
			tab, _ := newTable(t, nat.Config{})
			whole, mtu := reassemble(t, tab, tt.frags, t0)
			if whole == nil {
				t.Fatal("not reassembled")
			}
			if mtu != tt.mtu {
				t.Errorf("largest fragment %d, want %d", mtu, tt.mtu)
			}
			if err := lab.VerifyChecksums(whole); err != nil {
				t.Fatalf("%v: %s", err, lab.PacketString(whole))
			}
			p := nat.Parse(whole)
			if p.Kind != nat.Transport || !bytes.Equal(p.Payload(), payload) {
				t.Fatalf("reassembled %s", lab.PacketString(whole))
			}
			// Cut again, as fwx forwards it: fragments no larger than
			// the largest that came, which reassemble to the same.
			bufs := make([][]byte, 64)
			for i := range bufs {
				bufs[i] = make([]byte, 2000)
			}
			sizes := make([]int, len(bufs))
			n := nat.Refragment(whole, mtu, bufs, sizes, 0)
			if n != len(tt.frags) {
				t.Fatalf("%d fragments, want %d", n, len(tt.frags))
			}
			var again [][]byte
			for i := range n {
				if sizes[i] > mtu {
					t.Errorf("fragment %d of %d bytes, over %d", i, sizes[i], mtu)
				}
				again = append(again, bufs[i][:sizes[i]])
			}
			whole2, _ := reassemble(t, tab, again, t0)
			if !bytes.Equal(whole2, whole) {
				t.Error("the cut datagram does not reassemble to the same")
			}
			if s := tab.Stats(); s.Reassembly != 0 {
				t.Errorf("%d bytes held after reassembly, want 0", s.Reassembly)
			}
		})
	}
}

// TestReassemblyRefuses checks what reassembly will not do: overlapping
// fragments poison their datagram (RFC 5722), malformed ones are dropped,
// the limits hold, and an incomplete datagram is dropped when its timer
// runs out.
func TestReassemblyRefuses(t *testing.T) {
	v4 := lab.UDPPacket(client, server, make([]byte, 4000))
	v6 := lab.UDPPacket(client6, server6, make([]byte, 4000))
	drops := func(tab *nat.Table, r nat.DropReason) uint64 { return tab.Stats().Drops[r] }

	t.Run("overlap", func(t *testing.T) {
		for _, frags := range [][][]byte{split4(v4, 1480), split6(v6, 1232, 5)} {
			tab, _ := newTable(t, nat.Config{})
			// A copy of the second fragment that starts 8 bytes
			// earlier overlaps the first.
			over := bytes.Clone(frags[1])
			if frags[1][0]>>4 == 4 {
				binary.BigEndian.PutUint16(over[6:], 0x2000|(binary.BigEndian.Uint16(over[6:])&0x1fff-1))
				over[10], over[11] = 0, 0
				binary.BigEndian.PutUint16(over[10:], ^checksum.Checksum(over[:header.IPv4MinimumSize], 0))
			} else {
				binary.BigEndian.PutUint16(over[header.IPv6MinimumSize+2:], binary.BigEndian.Uint16(over[header.IPv6MinimumSize+2:])-8)
			}
			if whole, _ := reassemble(t, tab, [][]byte{frags[0], over}, t0); whole != nil {
				t.Fatal("reassembled overlapping fragments")
			}
			if whole, _ := reassemble(t, tab, frags[1:], t0); whole != nil {
				t.Error("a poisoned datagram completed")
			}
			if got, want := drops(tab, nat.DropFragmentOverlap), uint64(2+len(frags)-1); got != want {
				t.Errorf("%d fragments counted as overlapping, want %d", got, want)
			}
		}
	})
	t.Run("past the end", func(t *testing.T) {
		for _, frags := range [][][]byte{split4(v4, 1480), split6(v6, 1232, 5)} {
			tab, _ := newTable(t, nat.Config{})
			last := frags[len(frags)-1]
			// A copy of the first fragment moved past the end the
			// last one gave.
			past := bytes.Clone(frags[0])
			if last[0]>>4 == 4 {
				end := int(binary.BigEndian.Uint16(last[6:])&0x1fff)*8 + len(last) - header.IPv4MinimumSize
				binary.BigEndian.PutUint16(past[6:], 0x2000|uint16(end/8))
				past[10], past[11] = 0, 0
				binary.BigEndian.PutUint16(past[10:], ^checksum.Checksum(past[:header.IPv4MinimumSize], 0))
			} else {
				at := header.IPv6MinimumSize + 2
				end := int(binary.BigEndian.Uint16(last[at:])&^7) + len(last) - header.IPv6MinimumSize - 8
				binary.BigEndian.PutUint16(past[at:], uint16(end)|1)
			}
			if whole, _ := reassemble(t, tab, append([][]byte{last, past}, frags[:len(frags)-1]...), t0); whole != nil {
				t.Fatal("reassembled a datagram with a fragment past its end")
			}
			if drops(tab, nat.DropFragmentOverlap) == 0 {
				t.Error("the contradiction was not counted")
			}
		}
	})
	t.Run("duplicate", func(t *testing.T) {
		tab, _ := newTable(t, nat.Config{})
		frags := split4(v4, 1480)
		frags = append(frags[:2], append([][]byte{frags[1]}, frags[2:]...)...)
		if whole, _ := reassemble(t, tab, frags, t0); whole == nil {
			t.Error("a duplicated fragment stopped reassembly")
		}
	})
	t.Run("malformed", func(t *testing.T) {
		tab, _ := newTable(t, nat.Config{})
		odd := split4(lab.UDPPacket(client, server, make([]byte, 3000)), 1476)[0] // not a multiple of 8
		high := bytes.Clone(split4(v4, 1480)[2])
		binary.BigEndian.PutUint16(high[6:], 0x1fff) // ends past 64 KiB
		for _, f := range [][]byte{odd, high} {
			f[10], f[11] = 0, 0
			binary.BigEndian.PutUint16(f[10:], ^checksum.Checksum(f[:header.IPv4MinimumSize], 0))
			reassemble(t, tab, [][]byte{f}, t0)
		}
		if got := drops(tab, nat.DropFragment); got != 2 {
			t.Errorf("%d malformed fragments counted, want 2", got)
		}
	})
	t.Run("timeout", func(t *testing.T) {
		for _, tt := range []struct {
			frags   [][]byte
			timeout time.Duration
		}{{split4(v4, 1480), 30 * time.Second}, {split6(v6, 1232, 3), 60 * time.Second}} {
			tab, _ := newTable(t, nat.Config{})
			n := len(tt.frags)
			reassemble(t, tab, tt.frags[:n-1], t0)
			if tab.Stats().Reassembly == 0 {
				t.Fatal("nothing held for an incomplete datagram")
			}
			// The sweep gives the memory back, though no fragment
			// comes to notice the timer.
			tab.Expire(t0.Add(tt.timeout + time.Second))
			if held := tab.Stats().Reassembly; held != 0 {
				t.Errorf("%d bytes held after the timer ran out and the sweep", held)
			}
			if whole, _ := reassemble(t, tab, tt.frags[n-1:], t0.Add(tt.timeout+time.Second)); whole != nil {
				t.Error("completed a datagram after its timer ran out")
			}
			if got := drops(tab, nat.DropFragmentTimeout); got != uint64(n-1) {
				t.Errorf("%d fragments timed out, want %d", got, n-1)
			}
			if whole, _ := reassemble(t, tab, tt.frags[:n-1], t0.Add(tt.timeout+2*time.Second)); whole == nil {
				t.Error("the late fragment and a resent start did not complete")
			}
		}
	})
	t.Run("per source", func(t *testing.T) {
		tab, _ := newTable(t, nat.Config{Fragments: nat.FragmentLimits{Memory: 64 << 10, PerSource: 16 << 10}})
		// One source opens datagrams it never finishes until its share
		// is gone.
		first := split4(v4, 1480)[0]
		for id := range 64 {
			f := bytes.Clone(first)
			binary.BigEndian.PutUint16(f[4:], uint16(id))
			f[10], f[11] = 0, 0
			binary.BigEndian.PutUint16(f[10:], ^checksum.Checksum(f[:header.IPv4MinimumSize], 0))
			reassemble(t, tab, [][]byte{f}, t0)
		}
		if drops(tab, nat.DropFragmentLimit) == 0 {
			t.Fatal("one source held 64 incomplete datagrams of 1.5 KiB within 16 KiB")
		}
		if held := tab.Stats().Reassembly; held > 16<<10 {
			t.Errorf("%d bytes held, over the source's 16 KiB", held)
		}
		// Another source still gets through.
		other := lab.UDPPacket(client2, server, make([]byte, 4000))
		if whole, _ := reassemble(t, tab, split4(other, 1480), t0); whole == nil {
			t.Error("another source's datagram was refused")
		}
	})
	t.Run("in total", func(t *testing.T) {
		tab, _ := newTable(t, nat.Config{Fragments: nat.FragmentLimits{Memory: 16 << 10, PerSource: 16 << 10}})
		// Many sources open a datagram each that they never finish:
		// each is within its share, all of them are not.
		for i := range 64 {
			src := netip.AddrPortFrom(netip.AddrFrom4([4]byte{10, 0, 1, byte(i + 1)}), 5000)
			reassemble(t, tab, split4(lab.UDPPacket(src, server, make([]byte, 4000)), 1480)[:1], t0)
		}
		if drops(tab, nat.DropFragmentLimit) == 0 {
			t.Fatal("64 sources held 64 incomplete datagrams of 1.5 KiB within 16 KiB")
		}
		if held := tab.Stats().Reassembly; held > 16<<10 {
			t.Errorf("%d bytes held, over the 16 KiB in total", held)
		}
	})
	t.Run("too many fragments", func(t *testing.T) {
		tab, _ := newTable(t, nat.Config{})
		tiny := split6(lab.UDPPacket(client6, server6, make([]byte, 2000)), 8, 9)
		if whole, _ := reassemble(t, tab, tiny, t0); whole != nil {
			t.Error("reassembled a datagram of 251 fragments")
		}
		if drops(tab, nat.DropFragmentLimit) == 0 {
			t.Error("no fragment counted over the limit")
		}
	})
}

// TestRefragmentOptions checks that IPv4 fragments after the first carry
// only the options marked to be copied (RFC 791).
func TestRefragmentOptions(t *testing.T) {
	pkt := lab.UDPPacket(client, server, make([]byte, 3000))
	// Record route (7, not copied) and a copied option (0x94, router
	// alert), 12 bytes with padding.
	opts := []byte{7, 7, 4, 0, 0, 0, 0, 0x94, 4, 0, 0, 0}
	pkt = withOptions(pkt, opts)
	bufs := [][]byte{make([]byte, 1500), make([]byte, 1500), make([]byte, 1500)}
	sizes := make([]int, 3)
	n := nat.Refragment(pkt, 1500, bufs, sizes, 0)
	if n != 3 {
		t.Fatalf("%d fragments, want 3", n)
	}
	if hl := int(bufs[0][0]&0xf) * 4; hl != 32 {
		t.Errorf("first fragment's header %d bytes, want 32", hl)
	}
	for i := 1; i < n; i++ {
		f := bufs[i][:sizes[i]]
		if hl := int(f[0]&0xf) * 4; hl != 24 || f[20] != 0x94 {
			t.Errorf("fragment %d: header %d bytes, options % x; want 24 with router alert", i, hl, f[20:hl])
		}
		if !header.IPv4(f).IsChecksumValid() {
			t.Errorf("fragment %d: bad header checksum", i)
		}
	}
	tab, _ := newTable(t, nat.Config{})
	var frags [][]byte
	for i := range n {
		frags = append(frags, bufs[i][:sizes[i]])
	}
	whole, _ := reassemble(t, tab, frags, t0)
	if !bytes.Equal(whole, pkt) {
		t.Error("the fragments do not reassemble to the datagram")
	}
}

// FuzzReassemble cuts a datagram into fragments as the fuzzer says (where
// each ends, in what order, overlapping or not) and feeds them to the
// table. Properties: nothing panics, what completes is the datagram or
// nothing, and the memory held goes back to zero once the timers run out.
func FuzzReassemble(f *testing.F) {
	f.Add([]byte{185, 0, 185, 1, 185, 2, 100, 3}, false)
	f.Add([]byte{10, 5, 20, 0, 255, 9}, true)
	f.Fuzz(func(t *testing.T, plan []byte, v6 bool) {
		pkt := lab.UDPPacket(client, server, make([]byte, 1500))
		if v6 {
			pkt = lab.UDPPacket(client6, server6, make([]byte, 1500))
		}
		tab, _ := newTable(t, nat.Config{})
		out := make([]byte, nat.MaxDatagram)
		// Each pair of plan bytes is a fragment: its start (in 8-byte
		// units, within the datagram) and its length in 8-byte units;
		// a length reaching the end makes it the last.
		for i := 0; i+1 < len(plan); i += 2 {
			var frag []byte
			if v6 {
				data := pkt[header.IPv6MinimumSize:]
				start := min(int(plan[i])*8, len(data)-1) &^ 7
				end := min(start+max(int(plan[i+1]), 1)*8, len(data))
				one := split6(append(bytes.Clone(pkt[:header.IPv6MinimumSize]), data[start:end]...), len(data), 1)[0]
				v := uint16(start)
				if end < len(data) {
					v |= 1
				}
				binary.BigEndian.PutUint16(one[header.IPv6MinimumSize+2:], v)
				frag = one
			} else {
				data := pkt[header.IPv4MinimumSize:]
				start := min(int(plan[i])*8, len(data)-1) &^ 7
				end := min(start+max(int(plan[i+1]), 1)*8, len(data))
				one := split4(append(bytes.Clone(pkt[:header.IPv4MinimumSize]), data[start:end]...), len(data))[0]
				v := uint16(start / 8)
				if end < len(data) {
					v |= 0x2000
				}
				binary.BigEndian.PutUint16(one[6:], v)
				one[10], one[11] = 0, 0
				binary.BigEndian.PutUint16(one[10:], ^checksum.Checksum(one[:header.IPv4MinimumSize], 0))
				frag = one
			}
			p := nat.Parse(frag)
			if p.Kind != nat.Fragment {
				continue // a "fragment" that is the whole datagram
			}
			if n, _ := tab.Reassemble(&p, out, t0); n > 0 {
				q := nat.Parse(out[:n])
				if q.Kind != nat.Transport || q.Src.Port() != client.Port() || len(q.Payload()) != 1500 {
					t.Fatalf("reassembled %s", lab.PacketString(out[:n]))
				}
			}
		}
		// A fragment from a minute later runs the sweep.
		late := split4(lab.UDPPacket(client2, server, make([]byte, 100)), 64)[0]
		p := nat.Parse(late)
		tab.Reassemble(&p, out, t0.Add(2*time.Minute))
		if held := tab.Stats().Reassembly; held > 2048 {
			t.Fatalf("%d bytes held after the timers ran out", held)
		}
	})
}

// TestFragment6 cuts a whole IPv6 datagram, as a source does, into
// fragments that reassemble to it (less the atomic fragment header
// reassembly leaves).
func TestFragment6(t *testing.T) {
	pkt := lab.UDPPacket(client6, server6, make([]byte, 5000))
	bufs := make([][]byte, 8)
	for i := range bufs {
		bufs[i] = make([]byte, 1500)
	}
	sizes := make([]int, len(bufs))
	n := nat.Fragment6(pkt, 1280, 0xabcd, bufs, sizes, 0)
	if n != 5 {
		t.Fatalf("%d fragments, want 5", n)
	}
	var frags [][]byte
	for i := range n {
		if sizes[i] > 1280 {
			t.Errorf("fragment %d of %d bytes", i, sizes[i])
		}
		frags = append(frags, bufs[i][:sizes[i]])
	}
	tab, _ := newTable(t, nat.Config{})
	whole, _ := reassemble(t, tab, frags, t0)
	p := nat.Parse(whole)
	if p.Kind != nat.Transport || p.Src != client6 || len(p.Payload()) != 5000 || lab.VerifyChecksums(whole) != nil {
		t.Errorf("reassembled %s", lab.PacketString(whole))
	}
	if n := nat.Fragment6(withExt(pkt, destOpts), 1280, 1, bufs, sizes, 0); n != 0 {
		t.Error("cut a packet with an extension header")
	}
}
