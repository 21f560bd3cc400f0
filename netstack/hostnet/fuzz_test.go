package hostnet

import (
	"net"
	"net/netip"
	"testing"

	"gvisor.dev/gvisor/pkg/tcpip/header"

	"github.com/fwx-dev/fwx/nat"
	"github.com/fwx-dev/fwx/netstack/lab"
)

// FuzzWrite feeds Write arbitrary packets: whatever a client sent, and the
// table passed on, must never crash it, and only well-formed UDP and echo
// requests from a held port may leave.
func FuzzWrite(f *testing.F) {
	// Each fuzzing process holds a port of its own.
	c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		f.Fatal(err)
	}
	ext := netip.AddrPortFrom(loopback, uint16(c.LocalAddr().(*net.UDPAddr).Port))
	c.Close()
	f.Add(lab.UDPPacket(ext, netip.MustParseAddrPort("127.0.0.1:9"), []byte("x")))
	f.Add(lab.ICMPEcho(loopback, loopback, header.ICMPv4Echo, 1, 1))
	f.Add(lab.TCPPacket(ext, netip.MustParseAddrPort("127.0.0.1:9"), header.TCPFlagSyn, 1, 0, nil))
	f.Add([]byte{0x45})
	h, err := New(Options{Addr: loopback})
	if err != nil {
		f.Fatal(err)
	}
	defer h.Close()
	if err := h.Hold(nat.UDP, ext, false); err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, pkt []byte) {
		if n, err := h.Write([][]byte{pkt}, 0); n != 1 || err != nil {
			t.Fatalf("Write: %d, %v", n, err)
		}
	})
}
