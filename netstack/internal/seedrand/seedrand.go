// Package seedrand makes the deterministic random sources gVisor stacks take
// in tests: a math/rand.Source for ordinary choices (ephemeral ports, IP
// IDs) and a reader standing in for the secure RNG (initial sequence
// numbers), both seeded and safe for concurrent use, as stack.Options
// requires.
package seedrand

import (
	"encoding/binary"
	"io"
	"math/rand"
	randv2 "math/rand/v2"
	"sync"
)

// New returns the two sources for seed and stream: different streams of
// one seed (one per host of a lab, say) draw different numbers.
func New(seed int64, stream uint64) (rand.Source, io.Reader) {
	var key [32]byte
	binary.LittleEndian.PutUint64(key[0:], uint64(seed))
	binary.LittleEndian.PutUint64(key[8:], stream)
	return &source{pcg: randv2.NewPCG(uint64(seed), stream), stream: stream}, &reader{c: randv2.NewChaCha8(key)}
}

// source is a math/rand.Source64 safe for concurrent use.
type source struct {
	mu     sync.Mutex
	pcg    *randv2.PCG
	stream uint64
}

func (s *source) Int63() int64 { return int64(s.Uint64() >> 1) }

func (s *source) Uint64() uint64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.pcg.Uint64()
}

func (s *source) Seed(seed int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.pcg.Seed(uint64(seed), s.stream)
}

// reader is a deterministic io.Reader safe for concurrent use.
type reader struct {
	mu sync.Mutex
	c  *randv2.ChaCha8
}

func (r *reader) Read(p []byte) (int, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.c.Read(p)
}
