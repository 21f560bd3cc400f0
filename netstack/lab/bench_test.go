package lab

import (
	"io"
	"net/netip"
	"testing"
	"time"
)

// BenchmarkTCPThroughput measures a bulk TCP transfer from client to
// server through the test forwarder: the cost of the lab itself, which
// bounds what a lab test of fwx can measure.
func BenchmarkTCPThroughput(b *testing.B) {
	tp := newTopo(b, Options{})
	ln, err := tp.server.ListenTCP(9)
	if err != nil {
		b.Fatal(err)
	}
	defer ln.Close()
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		io.Copy(io.Discard, c)
	}()
	c, err := tp.client.DialTCP(Context(b, 10*time.Second), netip.AddrPortFrom(tp.server.Addr(), 9))
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	buf := make([]byte, 64<<10)
	b.SetBytes(int64(len(buf)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := c.Write(buf); err != nil {
			b.Fatal(err)
		}
	}
}
