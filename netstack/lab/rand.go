package lab

import (
	"encoding/binary"
	"math/rand"
	randv2 "math/rand/v2"
	"sync"
)

// hostRand returns the random sources for the host with the given index in
// a network seeded with seed. Both are deterministic: gVisor draws initial
// sequence numbers, ephemeral ports and IP IDs from them, and a lab run
// should pick the same ones every time.
//
// gVisor asks for a "secure" reader too (stack.Options.SecureRNG); in a
// lab nothing is secret, so it is a seeded ChaCha8 stream.
func hostRand(seed int64, index int) (rand.Source, *lockedReader) {
	var key [32]byte
	binary.LittleEndian.PutUint64(key[0:], uint64(seed))
	binary.LittleEndian.PutUint64(key[8:], uint64(index))
	key[16] = 'l'
	key[17] = 'a'
	key[18] = 'b'
	src := &lockedSource{pcg: randv2.NewPCG(uint64(seed), uint64(index))}
	return src, &lockedReader{c: randv2.NewChaCha8(key)}
}

// lockedSource is a math/rand.Source64 that is safe for concurrent use, as
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
	s.pcg.Seed(uint64(seed), 0)
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
