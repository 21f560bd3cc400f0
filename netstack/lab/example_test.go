package lab_test

import (
	"context"
	"fmt"
	"log"
	"net/netip"
	"time"

	"github.com/fwx-dev/fwx"
	"github.com/fwx-dev/fwx/netstack/lab"
)

// fwx between a client segment and a server segment, as the package's
// documentation shows it: the server sees the connection come from fwx's
// outside address, and fwx's flow timers run on the lab's manual clock.
func Example() {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	n := lab.New(lab.Options{Seed: 1})
	defer n.Close()
	inside, outside := n.NewSegment("int0"), n.NewSegment("ext0")
	client, _ := inside.AddHost("client", netip.MustParsePrefix("10.0.0.2/24"), netip.MustParseAddr("10.0.0.1"))
	server, _ := outside.AddHost("server", netip.MustParsePrefix("192.0.2.10/24"), netip.MustParseAddr("192.0.2.1"))

	clock := lab.NewManualClock(time.Unix(0, 0))
	fw, err := fwx.New(fwx.Config{
		Inside: inside.Device(), InsideAddr: netip.MustParsePrefix("10.0.0.1/24"),
		Outside: outside.Device(), OutsideAddr: netip.MustParsePrefix("192.0.2.1/24"),
		Clock: clock,
	})
	if err != nil {
		log.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- fw.Run(ctx) }() // Run closes both devices when ctx ends
	defer func() { cancel(); <-done }()

	ln, _ := server.ListenTCP(80)
	defer ln.Close()
	c, err := client.DialTCP(ctx, netip.MustParseAddrPort("192.0.2.10:80"))
	if err != nil {
		log.Fatal(err)
	}
	sc, err := ln.Accept()
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()
	defer sc.Close()
	fmt.Println("the server sees", netip.MustParseAddrPort(sc.RemoteAddr().String()).Addr())
	// A day later the idle connection is past fwx's timeout; gVisor's own
	// timers did not move (they would with lab.Options.Clock).
	clock.Advance(24 * time.Hour)
	fmt.Println("flows reclaimed:", fw.Expire())
	// Output:
	// the server sees 192.0.2.1
	// flows reclaimed: 1
}
