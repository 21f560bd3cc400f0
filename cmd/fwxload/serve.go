package main

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"time"
)

// echoServer is a TCP echo server: each accepted connection gets its bytes
// back until the peer closes. It is safe for concurrent use; Close stops
// accepting, closes every open connection and waits for their goroutines.
type echoServer struct {
	ln net.Listener
	wg sync.WaitGroup

	mu struct {
		sync.Mutex
		closed bool
		conns  map[net.Conn]struct{}
	}
}

// listenEcho starts an echo server on ap; port 0 picks a free port (see
// [echoServer.Addr]).
func listenEcho(ap netip.AddrPort) (*echoServer, error) {
	ln, err := net.ListenTCP("tcp", net.TCPAddrFromAddrPort(ap))
	if err != nil {
		return nil, fmt.Errorf("fwxload: listen %s: %w", ap, err)
	}
	s := &echoServer{ln: ln}
	s.mu.conns = make(map[net.Conn]struct{})
	s.wg.Add(1)
	go s.acceptLoop()
	return s, nil
}

// Addr returns the address the server listens on.
func (s *echoServer) Addr() netip.AddrPort {
	return s.ln.Addr().(*net.TCPAddr).AddrPort()
}

// Close stops the server and waits until all its goroutines have ended.
func (s *echoServer) Close() error {
	s.mu.Lock()
	s.mu.closed = true
	for c := range s.mu.conns {
		c.Close()
	}
	s.mu.Unlock()
	err := s.ln.Close()
	s.wg.Wait()
	return err
}

func (s *echoServer) acceptLoop() {
	defer s.wg.Done()
	for {
		c, err := s.ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			// Temporary failures (EMFILE, a connection reset before
			// accept) must not end a benchmark's server; the pause keeps
			// a persistent one from spinning a core the benchmark needs.
			time.Sleep(5 * time.Millisecond)
			continue
		}
		if !s.track(c) {
			c.Close()
			return
		}
		s.wg.Add(1)
		go s.echo(c)
	}
}

// track registers c for Close; it reports false when the server is closing.
func (s *echoServer) track(c net.Conn) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.mu.closed {
		return false
	}
	s.mu.conns[c] = struct{}{}
	return true
}

func (s *echoServer) echo(c net.Conn) {
	defer s.wg.Done()
	defer func() {
		s.mu.Lock()
		delete(s.mu.conns, c)
		s.mu.Unlock()
		c.Close()
	}()
	// A small buffer: the clients send one byte at a time, and a read of
	// one byte is answered at once rather than batched.
	var buf [512]byte
	for {
		n, err := c.Read(buf[:])
		if n > 0 {
			if _, werr := c.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}
