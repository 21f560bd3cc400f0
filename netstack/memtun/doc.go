// Package memtun provides an in-memory [tun.Device] for tests and embedders.
//
// A [Device] has two sides. The program under test (fwx) sees an ordinary
// tun.Device and calls Read and Write on it. The other side, which a real TUN
// would connect to the kernel, is driven by the test: [Device.Inject] queues a
// packet for the next Read, and the function given to [Device.SetOutput]
// receives every packet the program Writes.
//
// Nothing is ever dropped: when the inject queue is full, Inject waits for
// the reader. That keeps tests deterministic; it also means a test that
// injects more than [QueueLen] packets must have a reader running.
//
//	dev := memtun.New("int0", 1500)
//	dev.SetOutput(func(pkt []byte) { got = append(got, slices.Clone(pkt)) })
//	_ = dev.Inject(pkt) // next dev.Read returns a copy of pkt
//
// [tun.Device]: https://pkg.go.dev/golang.zx2c4.com/wireguard/tun#Device
package memtun
