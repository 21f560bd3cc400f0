//go:build linux

package vnettun

import (
	"encoding/binary"
	"fmt"
	"net"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/fwx-dev/fwx/netstack/internal/netns"
)

// TestLabUDP sends UDP superpackets (UDP_SEGMENT, so the sending kernel
// builds GSO_UDP_L4 packets when the TUN has USO) from ns A to ns B, and
// checks every datagram that arrives. In "split" mode devB refuses
// superpackets, so Split's UDP segments, with complete checksums, are
// verified by ns B's kernel.
func TestLabUDP(t *testing.T) {
	requireLab(t, false)
	for _, split := range []bool{false, true} {
		name := "passthrough"
		if split {
			name = "split"
		}
		t.Run(name, func(t *testing.T) {
			l := newLab(t, createVnet)
			if !l.a.(*Device).Offloads().Has(OffloadUSO4) {
				t.Skipf("kernel did not accept USO4 (offloads %v)", l.a.(*Device).Offloads())
			}
			if split {
				l.b.(*Device).noUSO.Store(true)
			}
			var f forwarder
			f.start(l, nil, nil)
			udpTransfer(t, l)
			f.stop(t, l)
			sb := l.b.(*Device).Stats()
			t.Logf("forwarder saw %d packets, %d superpackets; devB %+v", f.packets.Load(), f.superpackets.Load(), sb)
			if f.superpackets.Load() == 0 {
				t.Errorf("no UDP superpacket crossed the forwarder")
			}
			if split && sb.SplitWrites == 0 {
				t.Errorf("no superpacket was split on write")
			}
			t.Logf("ns B: Udp RcvbufErrors %d", snmpCounter(t, l.nsB, "Udp:", "RcvbufErrors"))
			if n := udpInCsumErrors(t, l.nsB); n != 0 {
				t.Errorf("ns B dropped %d datagrams for bad checksums", n)
			}
		})
	}
}

// udpTransfer sends superpackets of udpSegs datagrams of udpSegSize bytes
// and checks that each datagram arrives intact. The sender keeps at most
// a few superpackets in flight, so nothing overflows a buffer.
func udpTransfer(t *testing.T, l *lab) {
	const (
		supers     = 300
		udpSegs    = 40
		udpSegSize = 1400
		inFlight   = 4 * udpSegs
	)
	var rx *net.UDPConn
	if err := netns.Do(l.nsB, func() (err error) {
		rx, err = net.ListenUDP("udp4", &net.UDPAddr{IP: net.ParseIP(addrB), Port: iperfPt})
		return err
	}); err != nil {
		t.Fatalf("listen: %v", err)
	}
	defer rx.Close()
	// The default receive buffer holds fewer datagrams than are in flight.
	if rrc, err := rx.SyscallConn(); err == nil {
		rrc.Control(func(fd uintptr) {
			unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, 8<<20)
		})
	}
	var tx *net.UDPConn
	if err := netns.Do(l.nsA, func() (err error) {
		tx, err = net.DialUDP("udp4", nil, &net.UDPAddr{IP: net.ParseIP(addrB), Port: iperfPt})
		return err
	}); err != nil {
		t.Fatalf("dial: %v", err)
	}
	defer tx.Close()
	rc, err := tx.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	var serr error
	if err := rc.Control(func(fd uintptr) {
		serr = unix.SetsockoptInt(int(fd), unix.SOL_UDP, unix.UDP_SEGMENT, udpSegSize)
	}); err != nil || serr != nil {
		t.Skipf("UDP_SEGMENT not available: %v %v", err, serr)
	}

	var got atomic.Int64
	done := make(chan error, 1)
	go func() {
		buf := make([]byte, 2*udpSegSize)
		for got.Load() < supers*udpSegs {
			rx.SetReadDeadline(time.Now().Add(10 * time.Second))
			n, err := rx.Read(buf)
			if err != nil {
				done <- err
				return
			}
			if n != udpSegSize || !checkDatagram(buf[:n]) {
				done <- fmt.Errorf("bad datagram of %d bytes starting % x", n, buf[:min(n, 16)])
				return
			}
			got.Add(1)
		}
		done <- nil
	}()

	super := make([]byte, udpSegs*udpSegSize)
	for k := range supers {
		for i := range udpSegs {
			fillDatagram(super[i*udpSegSize:(i+1)*udpSegSize], uint32(k*udpSegs+i))
		}
		deadline := time.Now().Add(10 * time.Second)
		for int64(k*udpSegs)-got.Load() > inFlight {
			if time.Now().After(deadline) {
				t.Fatalf("receiver stuck at %d of %d datagrams sent", got.Load(), k*udpSegs)
			}
			time.Sleep(100 * time.Microsecond)
		}
		if _, err := tx.Write(super); err != nil {
			t.Fatalf("send superpacket %d: %v", k, err)
		}
	}
	if err := <-done; err != nil {
		t.Fatalf("receive after %d of %d datagrams: %v", got.Load(), supers*udpSegs, err)
	}
}

// fillDatagram writes datagram number seq: the number, then bytes derived
// from it.
func fillDatagram(b []byte, seq uint32) {
	binary.BigEndian.PutUint32(b, seq)
	for i := 4; i < len(b); i++ {
		b[i] = byte(seq*7 + uint32(i))
	}
}

func checkDatagram(b []byte) bool {
	seq := binary.BigEndian.Uint32(b)
	for i := 4; i < len(b); i++ {
		if b[i] != byte(seq*7+uint32(i)) {
			return false
		}
	}
	return true
}

// udpInCsumErrors returns the Udp InCsumErrors counter of namespace ns.
func udpInCsumErrors(tb testing.TB, ns string) uint64 {
	tb.Helper()
	return snmpCounter(tb, ns, "Udp:", "InCsumErrors")
}
