package netstack

import (
	"bytes"
	"errors"
	"io"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/fwx-dev/fwx/netstack/lab"
)

// TestProxy wires the two stacks as fwx's user-mode path does: the inside
// (Transparent) stack intercepts the client's connection, the handler
// dials the server from the outside stack first, then accepts and splices
// the two with half-close; a refused dial becomes a refused connection
// for the client.
func TestProxy(t *testing.T) {
	// Each rig checks that what it started has ended when it is torn
	// down, so the client is added before the second rig is built.
	in := newRig(t, Options{Transparent: true, Seed: 1}, rigOpts{})
	client := in.addHost(t, "client", clientPrefix, clientGW)
	out := newRig(t, Options{Addrs: []netip.Addr{outsideAddr}, Seed: 2}, rigOpts{})
	server := out.addHost(t, "server", serverPrefix, outsideAddr)

	// The server upper-cases what it reads until EOF, then closes.
	ln, err := server.ListenTCP(80)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				b, _ := io.ReadAll(c)
				c.Write(bytes.ToUpper(b))
			}()
		}
	}()

	var nextPort atomic.Uint32
	nextPort.Store(40000)
	var splices sync.WaitGroup
	in.st.HandleTCP(func(r *TCPRequest) {
		// fwx would send the flow to r.Dst itself; the lab's server stands
		// in for it.
		local := netip.AddrPortFrom(outsideAddr, uint16(nextPort.Add(1)))
		up, err := out.st.DialTCP(r.Context(), local, netip.AddrPortFrom(server.Addr(), r.Dst.Port()))
		if err != nil {
			if !errors.Is(err, syscall.ECONNREFUSED) {
				t.Errorf("upstream dial: %v", err)
			}
			r.Reset()
			return
		}
		down, err := r.Accept()
		if err != nil {
			up.Abort()
			t.Errorf("Accept: %v", err)
			return
		}
		splices.Add(2)
		go splice(&splices, up, down)
		go splice(&splices, down, up)
	})

	t.Run("relayed with half-close", func(t *testing.T) {
		c, err := client.DialTCP(lab.Context(t, 20*time.Second), farServer)
		if err != nil {
			t.Fatalf("client dial: %v", err)
		}
		defer c.Close()
		mustWrite(t, c, "hello, ")
		mustWrite(t, c, "server")
		if err := c.(interface{ CloseWrite() error }).CloseWrite(); err != nil {
			t.Fatal(err)
		}
		got, err := io.ReadAll(c)
		if err != nil || string(got) != "HELLO, SERVER" {
			t.Errorf("client got %q, %v; want %q", got, err, "HELLO, SERVER")
		}
	})

	t.Run("refused upstream", func(t *testing.T) {
		_, err := client.DialTCP(lab.Context(t, 20*time.Second), netip.AddrPortFrom(farServer.Addr(), 81))
		if !errors.Is(err, syscall.ECONNREFUSED) {
			t.Errorf("client dial to a refused port: %v, want ECONNREFUSED", err)
		}
	})
	splices.Wait()
}

// splice copies src to dst until src's EOF, then half-closes dst, as
// fwx's relay does; on an error it aborts both.
func splice(wg *sync.WaitGroup, dst, src *Conn) {
	defer wg.Done()
	buf := make([]byte, 64<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			if _, werr := dst.Write(buf[:n]); werr != nil {
				src.Abort()
				return
			}
		}
		if err == io.EOF {
			dst.CloseWrite()
			return
		}
		if err != nil {
			if !errors.Is(err, net.ErrClosed) {
				dst.Abort()
			}
			return
		}
	}
}
