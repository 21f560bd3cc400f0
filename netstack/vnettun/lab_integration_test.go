//go:build linux

package vnettun

import (
	"encoding/binary"
	"sync"
	"sync/atomic"
	"testing"

	"golang.zx2c4.com/wireguard/tun"
)

// labBytes is the size of each test transfer: enough for TSO to build
// many superpackets, small enough under the race detector.
const labBytes = 128 << 20

// families are the address families the lab runs TCP over, with the
// offload that makes superpackets of them.
var families = []struct {
	name   string
	server string
	tso    Offloads
}{
	{"ipv4", addrB, OffloadTSO4},
	{"ipv6", addrB6, OffloadTSO6},
}

// TestLabPassThrough forwards a TCP bulk transfer between two namespaces
// without touching the packets: superpackets go from one TUN to the other
// whole.
func TestLabPassThrough(t *testing.T) {
	requireLab(t, false)
	for _, fam := range families {
		t.Run(fam.name, func(t *testing.T) {
			l := newLab(t, createVnet)
			t.Logf("offloads accepted: %v", l.a.(*Device).Offloads())
			var f forwarder
			f.start(l, nil, nil)
			gbps := transfer(t, l, fam.server, fam.server, iperfPt, labBytes)
			f.stop(t, l)

			sa, sb := l.a.(*Device).Stats(), l.b.(*Device).Stats()
			t.Logf("pass-through: %.2f Gbit/s (race detector: %v); forwarder saw %d packets, %d superpackets; devA %+v, devB %+v",
				gbps, raceEnabled, f.packets.Load(), f.superpackets.Load(), sa, sb)
			if l.a.(*Device).Offloads().Has(fam.tso) && f.superpackets.Load() == 0 {
				t.Errorf("%v is on but the forwarder saw no superpackets", fam.tso)
			}
			if sa.Malformed+sb.Malformed != 0 || sb.SplitWrites != 0 {
				t.Errorf("malformed %d, split writes %d; want none", sa.Malformed+sb.Malformed, sb.SplitWrites)
			}
		})
	}
}

// TestLabSplitOnWrite makes devB act as if its kernel refused
// superpackets: Write must split them (Split's segments, with complete
// checksums, are then verified by ns B's kernel).
func TestLabSplitOnWrite(t *testing.T) {
	requireLab(t, false)
	for _, fam := range families {
		t.Run(fam.name, func(t *testing.T) {
			l := newLab(t, createVnet)
			devB := l.b.(*Device)
			devB.noTSO.Store(true)
			devB.noUSO.Store(true)
			var f forwarder
			f.start(l, nil, nil)
			gbps := transfer(t, l, fam.server, fam.server, iperfPt, labBytes/4)
			f.stop(t, l)

			t.Logf("split on write: %.2f Gbit/s; devB %+v", gbps, devB.Stats())
			if l.a.(*Device).Offloads().Has(fam.tso) && devB.Stats().SplitWrites == 0 {
				t.Errorf("no superpacket was split on write")
			}
			if n := tcpInCsumErrors(t, l.nsB); n != 0 {
				t.Errorf("ns B dropped %d segments for bad checksums", n)
			}
		})
	}
}

// TestLabNAT rewrites addresses and ports of every packet in both
// directions, superpackets included, with UpdatePartialAddr on partial
// checksums. Packets that are not superpackets are then completed with
// Finish and written without NEEDS_CSUM, so the receiving kernel checks
// the checksum that the partial update produced.
//
//	A→B: 10.9.0.2:p  → 10.9.2.2:15201  becomes 10.9.1.77:p → 10.9.1.2:5201
//	B→A: the reverse
func TestLabNAT(t *testing.T) {
	requireLab(t, false)
	l := newLab(t, createVnet)
	var (
		clientReal, clientMapped = [4]byte{10, 9, 0, 2}, [4]byte{10, 9, 1, 77}
		serverReal, serverVirt   = [4]byte{10, 9, 1, 2}, [4]byte{10, 9, 2, 2}
		finished, partialGSO     atomic.Uint64
	)
	const virtPort = 15201
	nat := func(src, dst [4]byte, sport, dport uint16) rewriter {
		return func(buf []byte, offset, size int) {
			h := ParseHdr(buf[offset-VirtioHdrLen:])
			pkt := buf[offset : offset+size]
			if len(pkt) < 40 || pkt[0] != 0x45 || pkt[9] != protoTCP {
				return
			}
			tcp := pkt[20:]
			ipSum, f := pkt[10:12], tcp[16:18]
			for _, a := range []struct {
				at       int
				old, new [4]byte
			}{{12, [4]byte(pkt[12:16]), src}, {16, [4]byte(pkt[16:20]), dst}} {
				if a.old == a.new {
					continue
				}
				rfc1624(ipSum, a.old[:], a.new[:])
				if h.NeedsCsum() {
					UpdatePartialAddr(f, a.old, a.new)
				} else {
					rfc1624(f, a.old[:], a.new[:])
				}
				copy(pkt[a.at:], a.new[:])
			}
			for _, p := range []struct {
				at       int
				old, new uint16
			}{{0, binary.BigEndian.Uint16(tcp), sport}, {2, binary.BigEndian.Uint16(tcp[2:]), dport}} {
				if p.new == 0 || p.old == p.new {
					continue
				}
				if !h.NeedsCsum() { // a partial field does not cover ports
					rfc1624(f, u16(p.old), u16(p.new))
				}
				binary.BigEndian.PutUint16(tcp[p.at:], p.new)
			}
			switch {
			case h.IsGSO():
				if h.NeedsCsum() {
					partialGSO.Add(1)
				}
			case h.NeedsCsum():
				if err := Finish(h, pkt); err != nil {
					t.Errorf("Finish: %v", err)
				}
				ClearHdr(buf[offset-VirtioHdrLen:])
				finished.Add(1)
			}
		}
	}
	var f forwarder
	f.start(l,
		nat(clientMapped, serverReal, 0, iperfPt),
		nat(serverVirt, clientReal, virtPort, 0))
	gbps := transfer(t, l, addrB, "10.9.2.2", virtPort, labBytes/2)
	f.stop(t, l)

	t.Logf("NAT: %.2f Gbit/s; %d partial checksums completed and checked by the kernel, %d superpackets rewritten",
		gbps, finished.Load(), partialGSO.Load())
	if finished.Load() == 0 {
		t.Errorf("no partial checksum went through Finish; the test checked nothing")
	}
	if l.a.(*Device).Offloads().Has(OffloadTSO4) && partialGSO.Load() == 0 {
		t.Errorf("no superpacket was rewritten")
	}
	for _, ns := range []string{l.nsA, l.nsB} {
		if n := tcpInCsumErrors(t, ns); n != 0 {
			t.Errorf("%s dropped %d segments for bad checksums", ns, n)
		}
	}
}

// TestLabGROOnWrite cuts every superpacket from A into segments, as a
// device without offloads would deliver them, merges them again with GRO
// and writes the result to B: ns B's kernel must take the merged
// superpackets (and segment or receive them) with no checksum error.
func TestLabGROOnWrite(t *testing.T) {
	requireLab(t, false)
	l := newLab(t, createVnet)
	var merged, written atomic.Uint64
	var wg sync.WaitGroup
	for _, d := range []struct{ from, to tun.Device }{{l.a, l.b}, {l.b, l.a}} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			bufs, sizes := outBufs(BatchSize, testOffset+MaxPacket)
			segs, segSizes := outBufs(BatchSize, testOffset+MaxPacket)
			for {
				n, err := d.from.Read(bufs, sizes, testOffset)
				if err != nil {
					return
				}
				for i := range n {
					h := ParseHdr(bufs[i][testOffset-VirtioHdrLen:])
					k, err := Split(h, bufs[i][testOffset:testOffset+sizes[i]], segs, segSizes, testOffset)
					if err != nil {
						continue
					}
					batch := make([][]byte, k)
					for j := range k {
						batch[j] = segs[j][:testOffset+segSizes[j]]
					}
					out := GRO(batch, testOffset)
					for _, b := range out {
						if ParseHdr(b[testOffset-VirtioHdrLen:]).IsGSO() {
							merged.Add(1)
						}
					}
					written.Add(uint64(len(out)))
					d.to.Write(out, testOffset)
				}
			}
		}()
	}
	gbps := transfer(t, l, addrB, addrB, iperfPt, labBytes/4)
	l.a.Close()
	l.b.Close()
	wg.Wait()
	t.Logf("GRO on write: %.2f Gbit/s; %d packets written, %d of them merged superpackets", gbps, written.Load(), merged.Load())
	if l.a.(*Device).Offloads().Has(OffloadTSO4) && merged.Load() == 0 {
		t.Error("GRO merged nothing")
	}
	if n := tcpInCsumErrors(t, l.nsB); n != 0 {
		t.Errorf("ns B dropped %d segments for bad checksums", n)
	}
}
