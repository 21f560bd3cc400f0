// Package lab builds virtual networks in memory for testing packet filters
// and NAT gateways such as fwx deterministically, without root.
//
// A [Network] holds [Segment]s. Each segment is one side of the code under
// test, which sees it as a tun.Device ([Segment.Device], a
// [memtun.Device]). [Host]s on a segment are gVisor network stacks whose
// every packet goes to that device; packets the code under test writes to
// the device go to the host that owns the destination address, or to
// [Segment.Captured] if none does. Hosts dial, listen and ping through
// ordinary net.Conn, net.Listener and net.PacketConn values, so real
// protocol code (an FTP client, an HTTP server) runs on them unchanged.
//
// A typical test puts fwx between a client segment and a server segment:
//
//	n := lab.New(lab.Options{Seed: 1, Logf: t.Logf})
//	defer n.Close()
//	inside, outside := n.NewSegment("int0"), n.NewSegment("ext0")
//	client, _ := inside.AddHost("client", netip.MustParsePrefix("10.0.0.2/24"), netip.MustParseAddr("10.0.0.1"))
//	server, _ := outside.AddHost("server", netip.MustParsePrefix("192.0.2.10/24"), netip.MustParseAddr("192.0.2.1"))
//
//	clock := lab.NewManualClock(time.Unix(0, 0))
//	fw, _ := fwx.New(fwx.Config{
//		Inside: inside.Device(), InsideAddr: netip.MustParsePrefix("10.0.0.1/24"),
//		Outside: outside.Device(), OutsideAddr: netip.MustParsePrefix("192.0.2.1/24"),
//		Clock: clock,
//	})
//	go fw.Run(ctx) // Run closes both devices when ctx ends
//
//	ln, _ := server.ListenTCP(80)
//	c, err := client.DialTCP(ctx, netip.MustParseAddrPort("192.0.2.10:80"))
//	// ... the server sees the connection come from fwx's external address.
//	clock.Advance(24 * time.Hour) // fwx's idle timeouts expire, gVisor's own timers do not move
//	fw.Expire()                   // as fwx's sweep would: the idle flow is reclaimed
//
// The package's Example runs this scenario.
//
// For packet-exact tests, [Segment.Inject] sends raw packets built with
// [UDPPacket], [TCPPacket] and [ICMPEcho], and [Segment.Captured] returns
// what came out; [PacketString] and [VerifyChecksums] explain and check
// them.
//
// [Segment.Pcap] records a segment's packets, both ways, as a pcap file
// that tcpdump and Wireshark read.
//
// Determinism: every host's random choices (initial sequence numbers,
// ephemeral ports, IP IDs) come from [Options.Seed] and the host's creation
// order; queues wait instead of dropping, and the few that cannot wait
// count what they drop ([HostStats.SendDrops], [SegmentStats.CaptureDrops]).
// By default gVisor's TCP timers and timestamps run on real time; with
// [Options.Clock] they run on a [ManualClock] (give the code under test the
// same one), and a scenario whose steps wait for one another (a ping, a
// request and its answer, a close) gives a byte-identical pcap of every
// link run after run. Goroutine scheduling still varies, so what runs
// concurrently (a bulk transfer, two clients at once) is not repeatable
// packet for packet: such tests should assert on what arrives.
//
// The lab imports nothing from fwx; tests wire fwx between segments
// themselves.
package lab
