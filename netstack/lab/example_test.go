package lab_test

import (
	"context"
	"fmt"
	"net/netip"
	"time"

	"golang.zx2c4.com/wireguard/tun"

	"github.com/fwx-dev/fwx/netstack/lab"
)

// route stands in for fwx: it copies every packet from one tun.Device to
// another, unchanged, until a device is closed.
func route(from, to tun.Device) {
	bufs := make([][]byte, from.BatchSize())
	for i := range bufs {
		bufs[i] = make([]byte, 65535)
	}
	sizes := make([]int, len(bufs))
	for {
		n, err := from.Read(bufs, sizes, 0)
		if err != nil {
			return
		}
		pkts := make([][]byte, n)
		for i := range n {
			pkts[i] = bufs[i][:sizes[i]]
		}
		if _, err := to.Write(pkts, 0); err != nil {
			return
		}
	}
}

func Example() {
	n := lab.New(lab.Options{Seed: 1})
	defer n.Close()
	inside, outside := n.NewSegment("int0"), n.NewSegment("ext0")
	client, _ := inside.AddHost("client", netip.MustParsePrefix("10.0.0.2/24"), netip.MustParseAddr("10.0.0.1"))
	server, _ := outside.AddHost("server", netip.MustParsePrefix("192.0.2.10/24"), netip.MustParseAddr("192.0.2.1"))

	// In a real test: fwx.New(...) with inside.Device() and outside.Device().
	go route(inside.Device(), outside.Device())
	go route(outside.Device(), inside.Device())

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	from, err := client.Ping(ctx, server.Addr(), 1, 1, []byte("hello"))
	fmt.Println(from, err)

	// A raw packet to an address nobody owns comes out on the capture queue.
	inside.Inject(lab.UDPPacket(netip.MustParseAddrPort("10.0.0.2:5000"), netip.MustParseAddrPort("198.51.100.1:53"), []byte("?")))
	fmt.Println(lab.PacketString(<-outside.Captured()))
	// Output:
	// 192.0.2.10 <nil>
	// IPv4 UDP 10.0.0.2:5000 → 198.51.100.1:53 len=1 ttl=64 id=0 ipcsum=ok csum=ok
}
