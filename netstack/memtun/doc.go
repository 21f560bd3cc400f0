// Package memtun provides in-memory [tun.Device]s for tests and for
// programs that embed fwx.
//
// [NewPair] returns two devices joined back to back: what is written to one
// end is read from the other, as across a veth pair, with no kernel TUN in
// between. A VPN that embeds fwx gives one end to fwx as its inside and the
// other to its tunnel (wireguard-go's device, say); see [End] for what an
// embedder can rely on: whole packets without offloads, batches, no drops,
// no allocation in the steady state, and one Close for both ends.
//
//	wgTun, fwxTun := memtun.NewPair("wg0", "fwx-in", 1420)
//
// A [Device] has one end that a program (fwx) reads and writes as a
// tun.Device, while a test drives the other: [Device.Inject] queues a
// packet for the next Read, and the function given to [Device.SetOutput]
// receives every packet the program Writes.
//
//	dev := memtun.New("int0", 1500)
//	dev.SetOutput(func(pkt []byte) { got = append(got, slices.Clone(pkt)) })
//	_ = dev.Inject(pkt) // next dev.Read returns a copy of pkt
//
// Nothing is ever dropped: when a queue is full, Inject and Write wait for
// the reader. That keeps tests deterministic; it also means that whoever
// writes more than [QueueLen] packets must have a reader running.
//
// [tun.Device]: https://pkg.go.dev/golang.zx2c4.com/wireguard/tun#Device
package memtun
