package netstack

import (
	"encoding/binary"
	"io"
	"math/rand"
	randv2 "math/rand/v2"
	"sync"
)

// randSources returns the stack's random sources for a nonzero seed: a
// math/rand.Source for gVisor's ordinary choices (ephemeral ports, IP IDs)
// and a reader standing in for its secure RNG (initial sequence numbers,
// SYN cookies). Both are deterministic, which only tests want: with seed 0
// the Stack leaves both to gVisor, which uses crypto/rand.
func randSources(seed int64) (rand.Source, io.Reader) {
	var key [32]byte
	binary.LittleEndian.PutUint64(key[:], uint64(seed))
	copy(key[8:], "fwx netstack")
	return &lockedSource{pcg: randv2.NewPCG(uint64(seed), 0x6e6574)}, &lockedReader{c: randv2.NewChaCha8(key)}
}

// lockedSource is a math/rand.Source64 safe for concurrent use, as
// stack.Options.RandSource requires.
type lockedSource struct {
	mu  sync.Mutex
	pcg *randv2.PCG
}

func (s *lockedSource) Int63() int64 { return int64(s.Uint64() >> 1) }

func (s *lockedSource) Uint64() uint64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.pcg.Uint64()
}

func (s *lockedSource) Seed(seed int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.pcg.Seed(uint64(seed), 0x6e6574)
}

// lockedReader is a deterministic io.Reader safe for concurrent use.
type lockedReader struct {
	mu sync.Mutex
	c  *randv2.ChaCha8
}

func (r *lockedReader) Read(p []byte) (int, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.c.Read(p)
}
