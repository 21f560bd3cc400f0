//go:build linux

package vnettun

import (
	"errors"
	"os"
	"strings"
	"testing"
	"time"

	"golang.zx2c4.com/wireguard/tun"
	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/checksum"
	"gvisor.dev/gvisor/pkg/tcpip/header"
)

func TestDeviceAPI(t *testing.T) {
	requireLab(t, false)
	l := newLab(t, createVnet)
	d := l.a.(*Device)

	if name, err := d.Name(); err != nil || !strings.HasPrefix(name, "vta") {
		t.Errorf("Name = %q, %v; want vta...", name, err)
	}
	if mtu, err := d.MTU(); err != nil || mtu != 1500 {
		t.Errorf("MTU = %d, %v; want 1500", mtu, err)
	}
	if d.BatchSize() != BatchSize || d.File() == nil {
		t.Errorf("BatchSize = %d, File = %v", d.BatchSize(), d.File())
	}
	// Every kernel since 2.6 takes these; wireguard-go requires them.
	if want := OffloadCsum | OffloadTSO4 | OffloadTSO6; !d.Offloads().Has(want) {
		t.Errorf("Offloads = %v, want at least %v", d.Offloads(), want)
	}
	select {
	case ev := <-d.Events():
		if ev != tun.EventUp {
			t.Errorf("first event %v, want EventUp", ev)
		}
	default:
		t.Errorf("no EventUp after Create")
	}

	bufs, sizes := [][]byte{make([]byte, testOffset+MaxPacket)}, []int{0}
	if _, err := d.Read(bufs, sizes, VirtioHdrLen-1); !errors.Is(err, ErrHeadroom) {
		t.Errorf("Read with small offset = %v, want ErrHeadroom", err)
	}
	if _, err := d.Read([][]byte{make([]byte, 2000)}, sizes, testOffset); !errors.Is(err, ErrShortBuffer) {
		t.Errorf("Read into a short buffer = %v, want ErrShortBuffer", err)
	}
	if _, err := d.Write(bufs, VirtioHdrLen-1); !errors.Is(err, ErrHeadroom) {
		t.Errorf("Write with small offset = %v, want ErrHeadroom", err)
	}
}

// TestDevicePingNoAllocs writes an ICMP echo request into ns A through
// devA and reads the reply back, and checks that Read and Write allocate
// nothing.
func TestDevicePingNoAllocs(t *testing.T) {
	requireLab(t, false)
	l := newLab(t, createVnet)
	d := l.a.(*Device)

	req := make([]byte, testOffset+header.IPv4MinimumSize+header.ICMPv4MinimumSize+32)
	echoRequest(req[testOffset:])
	out := [][]byte{req}
	bufs, sizes := [][]byte{make([]byte, testOffset+MaxPacket)}, make([]int, 1)

	ping := func() {
		if n, err := d.Write(out, testOffset); n != 1 || err != nil {
			t.Fatalf("Write = %d, %v", n, err)
		}
		awaitEchoReply(t, d, bufs, sizes, len(req)-testOffset)
	}
	ping()
	if allocs := testing.AllocsPerRun(100, ping); allocs != 0 {
		t.Errorf("Write+Read allocate %.1f times per ping, want 0", allocs)
	}
}

// awaitEchoReply reads from d until the echo reply to a request of size
// bytes, skipping up to 9 other packets; it fails the test if none comes
// (the request did not arrive whole) or if it comes as a superpacket.
func awaitEchoReply(t *testing.T, d *Device, bufs [][]byte, sizes []int, size int) {
	for range 10 {
		n, err := d.Read(bufs, sizes, testOffset)
		if err != nil || n != 1 {
			t.Fatalf("Read = %d, %v", n, err)
		}
		pkt := bufs[0][testOffset : testOffset+sizes[0]]
		if ParseHdr(bufs[0][testOffset-VirtioHdrLen:]).IsGSO() {
			t.Fatalf("echo reply arrived as a superpacket")
		}
		if len(pkt) == size && pkt[9] == uint8(header.ICMPv4ProtocolNumber) &&
			header.ICMPv4(pkt[20:]).Type() == header.ICMPv4EchoReply {
			return
		}
	}
	t.Fatalf("no echo reply among 10 packets: the request did not arrive whole")
}

// echoRequest writes an ICMPv4 echo request from addrB to addrA into b.
func echoRequest(b []byte) {
	ip := header.IPv4(b)
	ip.Encode(&header.IPv4Fields{
		TotalLength: uint16(len(b)), TTL: 64, Protocol: uint8(header.ICMPv4ProtocolNumber),
		SrcAddr: tcpip.AddrFrom4([4]byte{10, 9, 1, 2}), DstAddr: tcpip.AddrFrom4([4]byte{10, 9, 0, 2}),
	})
	ip.SetChecksum(^ip.CalculateChecksum())
	icmp := header.ICMPv4(b[header.IPv4MinimumSize:])
	icmp.SetType(header.ICMPv4Echo)
	icmp.SetIdent(0x7a7a)
	icmp.SetSequence(1)
	icmp.SetChecksum(^checksum.Checksum(icmp, 0))
}

// TestDeviceClose checks that Close wakes a blocked Read, that Read and
// Write then fail with ErrClosed, that Events is closed, and that a
// second Close is harmless.
func TestDeviceClose(t *testing.T) {
	requireLab(t, false)
	l := newLab(t, createVnet)
	d := l.b.(*Device)
	<-d.Events()

	errc := make(chan error, 1)
	go func() {
		bufs, sizes := [][]byte{make([]byte, testOffset+MaxPacket)}, []int{0}
		for {
			if _, err := d.Read(bufs, sizes, testOffset); err != nil {
				errc <- err
				return
			}
		}
	}()
	time.Sleep(50 * time.Millisecond) // let Read block in the poller
	if err := d.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	select {
	case err := <-errc:
		if !errors.Is(err, ErrClosed) || !errors.Is(err, os.ErrClosed) {
			t.Errorf("Read after Close = %v, want ErrClosed wrapping os.ErrClosed", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatalf("Close did not wake Read")
	}
	if _, err := d.Write([][]byte{make([]byte, testOffset+40)}, testOffset); !errors.Is(err, ErrClosed) {
		t.Errorf("Write after Close = %v, want ErrClosed", err)
	}
	if _, ok := <-d.Events(); ok {
		t.Errorf("Events still open after Close")
	}
	if err := d.Close(); err != nil {
		t.Errorf("second Close = %v", err)
	}
}

// TestDeviceWriteVectors writes ICMP echo requests into ns A in pieces
// (WriteVectors): as a netstack's views (a few pieces, one writev) and in
// more pieces than one writev takes (copied into one buffer first); each
// must arrive whole, which the echo reply shows. Writing in a few pieces
// allocates nothing.
func TestDeviceWriteVectors(t *testing.T) {
	requireLab(t, false)
	l := newLab(t, createVnet)
	d := l.a.(*Device)
	bufs, sizes := [][]byte{make([]byte, testOffset+MaxPacket)}, make([]int, 1)

	for _, tc := range []struct {
		name   string
		pieces int // of the ICMP data, one byte each
	}{
		{"few pieces", 3},
		{"too many pieces", 2 * maxIovecs},
	} {
		t.Run(tc.name, func(t *testing.T) {
			req := make([]byte, testOffset+header.IPv4MinimumSize+header.ICMPv4MinimumSize+32+tc.pieces)
			echoRequest(req[testOffset:])
			// headroom | IP header | ICMP header and data | one byte each
			split := testOffset + header.IPv4MinimumSize
			tail := len(req) - tc.pieces
			v := [][]byte{req[:testOffset], req[testOffset:split], req[split:tail]}
			for i := tail; i < len(req); i++ {
				v = append(v, req[i:i+1])
			}
			out := [][][]byte{v}
			ping := func() {
				if n, err := d.WriteVectors(out, testOffset); n != 1 || err != nil {
					t.Fatalf("WriteVectors = %d, %v", n, err)
				}
				awaitEchoReply(t, d, bufs, sizes, len(req)-testOffset)
			}
			ping()
			if tc.pieces < maxIovecs {
				if allocs := testing.AllocsPerRun(100, ping); allocs != 0 {
					t.Errorf("WriteVectors+Read allocate %.1f times per ping, want 0", allocs)
				}
			}
		})
	}
}
