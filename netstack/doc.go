// Package netstack runs the gVisor TCP/IP stacks of fwx's user-mode path:
// flows that need an application filter are terminated in one stack and
// re-originated from another.
//
// A [Stack] sits behind one of fwx's TUN devices. fwx hands it the
// packets of user-mode flows it reads from the device ([Stack.Deliver])
// and writes back what the stack sends ([Options.Output], or
// [Options.OutputVectors] to write each packet's views without copying
// them, as vnettun.Device.WriteVectors does with writev). The inside,
// client-facing stack is [Options.Transparent]: it takes connections to
// any address and answers as the server the client dialed, so fwx
// intercepts them with [Stack.HandleTCP] and [Stack.HandleUDP]. The
// outside stack owns fwx's outside address and re-originates each flow
// from it, from the port fwx's NAT allocated ([Stack.DialTCP],
// [Stack.DialUDP]), or listens for secondary connections
// ([Stack.ListenTCP], [Stack.ListenUDP]). Between the two, fwx copies
// bytes through the data filters with [Conn] and [PacketConn], which are
// net.Conns with half-close and abort.
//
//	inside, _ := netstack.New(netstack.Options{Transparent: true, Output: writeInside})
//	outside, _ := netstack.New(netstack.Options{Addrs: []netip.Addr{extAddr}, Output: writeOutside})
//	inside.HandleTCP(func(r *netstack.TCPRequest) {
//		up, err := outside.DialTCP(r.Context(), netip.AddrPortFrom(extAddr, natPort), r.Dst)
//		if err != nil {
//			r.Reset() // the client sees the server's refusal
//			return
//		}
//		down, err := r.Accept()
//		// ... splice down and up through the filters, propagating CloseWrite
//	})
//
// Both stacks are tuned for proxying (SACK, CUBIC with RACK, buffers
// auto-tuned up to 4 MiB, 5 s TIME-WAIT, no ICMP rate limit). Their link
// never drops: when fwx's device is slower than the stack, the stack's
// senders wait, and TCP's windows carry that back to the peers. gVisor's
// errors are turned into Go errors wrapping the syscall.Errno a Linux
// socket would report.
//
// With [Options.GSO], the stacks' TCP sends superpackets of up to 64 KiB
// that the kernel behind a vnettun.Device segments, each preceded by its
// virtio-net header (see gso.go).
//
// A kernel's TCP superpacket comes in whole, as one large segment (the
// caller joins it, vnettun.Join, as GRO would). Not yet: merging segments
// that arrive one by one (from a device without offloads), and delivering
// read packets without a copy (gVisor's buffers are its own pooled
// chunks, cleared when taken: see link.go).
package netstack
