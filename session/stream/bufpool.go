package stream

import (
	"math/bits"
	"sync"
)

// Buffers for pipes and relays come from pools by power-of-two size class,
// so connections that come and go reuse them instead of making the garbage
// collector sweep up to 512 KiB per connection. A buffer's bytes are never
// shown to anyone but its current owner, so they are not cleared.
const (
	minBufClass = 9  // 512 bytes: the first buffer of a pipe
	maxBufClass = 24 // 16 MiB: larger buffers are allocated and dropped
)

var bufPools [maxBufClass - minBufClass + 1]sync.Pool

// bufClass returns the size class (log2 of the size) of a buffer of at
// least n bytes.
func bufClass(n int) int {
	return max(bits.Len(uint(n-1)), minBufClass)
}

// getBuf returns a buffer of at least n bytes (n > 0); its length is that
// of its size class. The caller puts it back with putBuf.
func getBuf(n int) *[]byte {
	c := bufClass(n)
	if c > maxBufClass {
		b := make([]byte, n)
		return &b
	}
	if v := bufPools[c-minBufClass].Get(); v != nil {
		return v.(*[]byte)
	}
	b := make([]byte, 1<<c)
	return &b
}

// putBuf returns a buffer from getBuf to its pool. The caller must not use
// it afterwards.
func putBuf(bp *[]byte) {
	n := cap(*bp)
	c := bits.Len(uint(n)) - 1
	if n != 1<<c || c < minBufClass || c > maxBufClass {
		return
	}
	*bp = (*bp)[:n]
	bufPools[c-minBufClass].Put(bp)
}
