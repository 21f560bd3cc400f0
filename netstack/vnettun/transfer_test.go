//go:build linux

package vnettun

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"io"
	"math/rand/v2"
	"net"
	"strconv"
	"testing"
	"time"

	"github.com/fwx-dev/fwx/netstack/internal/netns"
)

// transfer sends n bytes of pseudo-random data over one TCP connection
// from ns A to dst:port, which reaches a listener on listen:iperfPt in
// ns B directly or through the forwarder's NAT. It checks that exactly
// those bytes arrive and returns the receiver's goodput in Gbit/s.
func transfer(tb testing.TB, l *lab, listen, dst string, port int, n int64) float64 {
	tb.Helper()
	var ln net.Listener
	if err := netns.Do(l.nsB, func() (err error) {
		ln, err = net.Listen("tcp", net.JoinHostPort(listen, strconv.Itoa(iperfPt)))
		return err
	}); err != nil {
		tb.Fatalf("listen in %s: %v", l.nsB, err)
	}
	defer ln.Close()

	type result struct {
		n       int64
		sum     []byte
		elapsed time.Duration
		err     error
	}
	got := make(chan result, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			got <- result{err: err}
			return
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(time.Minute))
		h := sha256.New()
		start := time.Now()
		m, err := io.CopyBuffer(h, c, make([]byte, 256<<10))
		got <- result{m, h.Sum(nil), time.Since(start), err}
	}()

	var c net.Conn
	if err := netns.Do(l.nsA, func() (err error) {
		c, err = net.DialTimeout("tcp", net.JoinHostPort(dst, strconv.Itoa(port)), 10*time.Second)
		return err
	}); err != nil {
		tb.Fatalf("dial %s:%d from %s: %v", dst, port, l.nsA, err)
	}
	c.SetDeadline(time.Now().Add(time.Minute))
	block := make([]byte, 1<<20)
	rng := rand.NewChaCha8([32]byte{'v', 'n', 'e', 't'})
	rng.Read(block)
	h := sha256.New()
	for i, left := uint64(0), n; left > 0; i++ {
		// Number each megabyte, so that a misplaced superpacket changes
		// the digest.
		binary.LittleEndian.PutUint64(block, i)
		chunk := block[:min(left, int64(len(block)))]
		if _, err := c.Write(chunk); err != nil {
			tb.Fatalf("send: %v after %d bytes", err, n-left)
		}
		h.Write(chunk)
		left -= int64(len(chunk))
	}
	c.Close()

	r := <-got
	if r.err != nil {
		tb.Fatalf("receive: %v after %d bytes", r.err, r.n)
	}
	if r.n != n {
		tb.Fatalf("received %d bytes, sent %d", r.n, n)
	}
	if !bytes.Equal(r.sum, h.Sum(nil)) {
		tb.Fatalf("received data differs from what was sent (SHA-256 mismatch)")
	}
	return float64(n) * 8 / r.elapsed.Seconds() / 1e9
}
