// Package fwx is the embedding entry point of fwx, a firewall and NAT gateway
// that runs in user space. A program hands it the TUN device its clients are
// routed into (the inside), a device for the outside, and a policy; fwx
// forwards what the policy allows, translating addresses and ports
// (SecureNAT), and writes a firewall log.
//
//	fw, err := fwx.New(fwx.Config{
//		Inside:      insideDev,
//		Outside:     outsideDev,
//		InsideAddr:  netip.MustParsePrefix("10.0.0.1/24"),
//		OutsideAddr: netip.MustParsePrefix("198.51.100.1/24"),
//		Policy:      policy.Default(),
//	})
//	...
//	err = fw.Run(ctx) // until ctx is done
//
// Run owns the devices: it closes both when it returns. The examples show
// router mode on in-memory devices, a custom filter and the flow log;
// docs/EMBED.md walks through cmd/fwx-wireguard, a WireGuard server with
// fwx inside (wireguard-go's device joined to fwx by
// [github.com/fwx-dev/fwx/netstack/memtun.NewPair]), and says what is safe
// from which goroutine.
//
// The in-process lab in package [github.com/fwx-dev/fwx/netstack/lab]
// provides in-memory devices and virtual hosts to test fwx, and filters
// written for it, without root; it records any link as a pcap, and with a
// manual clock one seed gives the same packets run after run.
package fwx
