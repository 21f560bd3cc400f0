package netstack

import (
	"bytes"
	"errors"
	"io"
	"net"
	"net/netip"
	"syscall"
	"testing"
	"time"

	"gvisor.dev/gvisor/pkg/tcpip/transport/tcp"

	"github.com/fwx-dev/fwx/netstack/lab"
)

// TestTransparentTCP: a client's connection to any address is intercepted;
// the handler sees who dialed what, accepts and echoes, and the client
// sees the address it dialed as its peer.
func TestTransparentTCP(t *testing.T) {
	for _, dst := range []netip.AddrPort{
		farServer,
		netip.MustParseAddrPort("192.0.2.77:443"),
		netip.AddrPortFrom(clientGW, 22), // the gateway address itself
	} {
		t.Run(dst.String(), func(t *testing.T) {
			r := newRig(t, Options{Transparent: true, Seed: 1}, rigOpts{})
			client := r.addHost(t, "client", clientPrefix, clientGW)

			type seen struct{ src, dst, local, remote netip.AddrPort }
			got := make(chan seen, 1)
			done := make(chan struct{})
			r.st.HandleTCP(func(req *TCPRequest) {
				defer close(done)
				c, err := req.Accept()
				if err != nil {
					t.Errorf("Accept: %v", err)
					return
				}
				defer c.Close()
				got <- seen{req.Src, req.Dst, c.LocalAddrPort(), c.RemoteAddrPort()}
				if _, err := io.Copy(c, c); err != nil {
					t.Errorf("echo: %v", err)
				}
			})

			conn, err := client.DialTCP(lab.Context(t, 20*time.Second), dst)
			if err != nil {
				t.Fatalf("DialTCP: %v", err)
			}
			defer conn.Close()
			s := recv(t, got, "handler")
			src := conn.LocalAddr().(*net.TCPAddr).AddrPort()
			if s.src != src || s.dst != dst {
				t.Errorf("request Src, Dst = %v, %v; want %v, %v", s.src, s.dst, src, dst)
			}
			if s.local != dst || s.remote != src {
				t.Errorf("accepted conn local, remote = %v, %v; want %v, %v", s.local, s.remote, dst, src)
			}
			if peer := conn.RemoteAddr().(*net.TCPAddr).AddrPort(); peer != dst {
				t.Errorf("client's peer = %v, want %v", peer, dst)
			}
			msg := []byte("hello through the transparent stack")
			if _, err := conn.Write(msg); err != nil {
				t.Fatal(err)
			}
			buf := make([]byte, len(msg))
			if _, err := io.ReadFull(conn, buf); err != nil {
				t.Fatalf("read echo: %v", err)
			}
			if !bytes.Equal(buf, msg) {
				t.Errorf("echo = %q, want %q", buf, msg)
			}
			// The client's FIN ends the echo with EOF.
			conn.Close()
			recv(t, done, "handler to see EOF")
		})
	}
}

// TestTCPRefused: every way of not accepting gives the client a RST, and
// in-flight slots are released (more refusals than MaxInFlight all
// complete).
func TestTCPRefused(t *testing.T) {
	for _, tc := range []struct {
		name    string
		handler func(*TCPRequest)
	}{
		{"Reset", func(r *TCPRequest) { r.Reset() }},
		{"no decision", func(*TCPRequest) {}},
		{"Accept after Reset", func(r *TCPRequest) {
			r.Reset()
			if _, err := r.Accept(); !errors.Is(err, ErrDecided) {
				t.Errorf("Accept after Reset: %v, want ErrDecided", err)
			}
		}},
		{"no handler", nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			const maxInFlight = 2
			r := newRig(t, Options{Transparent: true, Seed: 1, MaxInFlight: maxInFlight}, rigOpts{})
			client := r.addHost(t, "client", clientPrefix, clientGW)
			r.st.HandleTCP(tc.handler)
			for i := range 3 * maxInFlight {
				_, err := client.DialTCP(lab.Context(t, 20*time.Second), farServer)
				if !errors.Is(err, syscall.ECONNREFUSED) {
					t.Fatalf("dial %d: err = %v, want ECONNREFUSED", i, err)
				}
			}
		})
	}
}

// TestOutsideDialTCP: the outside stack dials from its address and a
// chosen port; data flows both ways; half-close and abort reach the peer.
func TestOutsideDialTCP(t *testing.T) {
	r := newRig(t, Options{Addrs: []netip.Addr{outsideAddr}, Seed: 1}, rigOpts{})
	server := r.addHost(t, "server", serverPrefix, outsideAddr)
	ln, err := server.ListenTCP(8080)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	serverAP := netip.AddrPortFrom(server.Addr(), 8080)

	// dial connects from port and returns both ends.
	dial := func(t *testing.T, port uint16) (*Conn, net.Conn) {
		t.Helper()
		accepted := make(chan net.Conn, 1)
		go func() {
			c, err := ln.Accept()
			if err != nil {
				t.Errorf("server Accept: %v", err)
			}
			accepted <- c
		}()
		local := netip.AddrPortFrom(outsideAddr, port)
		c, err := r.st.DialTCP(lab.Context(t, 20*time.Second), local, serverAP)
		if err != nil {
			t.Fatalf("DialTCP: %v", err)
		}
		t.Cleanup(func() { c.Close() })
		sc := recv(t, accepted, "server accept")
		if sc == nil {
			t.FailNow()
		}
		t.Cleanup(func() { sc.Close() })
		if got := sc.RemoteAddr().(*net.TCPAddr).AddrPort(); got != local {
			t.Errorf("server sees %v, want %v", got, local)
		}
		if c.LocalAddrPort() != local || c.RemoteAddrPort() != serverAP {
			t.Errorf("conn local, remote = %v, %v; want %v, %v", c.LocalAddrPort(), c.RemoteAddrPort(), local, serverAP)
		}
		return c, sc
	}

	t.Run("data and half-close", func(t *testing.T) {
		c, sc := dial(t, 40000)
		mustWrite(t, c, "ping")
		mustRead(t, sc, "ping")
		mustWrite(t, sc, "pong")
		mustRead(t, c, "pong")

		if err := c.CloseWrite(); err != nil {
			t.Fatalf("CloseWrite: %v", err)
		}
		if n, err := sc.Read(make([]byte, 8)); n != 0 || err != io.EOF {
			t.Fatalf("server read after CloseWrite = %d, %v; want 0, EOF", n, err)
		}
		// The other direction still works.
		mustWrite(t, sc, "still open")
		mustRead(t, c, "still open")
		if _, err := c.Write([]byte("x")); !errors.Is(err, syscall.EPIPE) {
			t.Errorf("Write after CloseWrite: %v, want EPIPE", err)
		}
		sc.Close()
		if n, err := c.Read(make([]byte, 8)); n != 0 || err != io.EOF {
			t.Errorf("read after server close = %d, %v; want 0, EOF", n, err)
		}
	})

	t.Run("same port to another server", func(t *testing.T) {
		// fwx's NAT may map several flows to one external port; only the
		// 4-tuple must differ. The server listens on a second port.
		ln2, err := server.ListenTCP(8081)
		if err != nil {
			t.Fatal(err)
		}
		defer ln2.Close()
		c1, _ := dial(t, 40001)
		c2, err := r.st.DialTCP(lab.Context(t, 20*time.Second), netip.AddrPortFrom(outsideAddr, 40001), netip.AddrPortFrom(server.Addr(), 8081))
		if err != nil {
			t.Fatalf("second DialTCP from the same port: %v", err)
		}
		c2.Close()
		c1.Close()
	})

	t.Run("Abort", func(t *testing.T) {
		c, sc := dial(t, 40002)
		mustWrite(t, c, "bye")
		mustRead(t, sc, "bye")
		if err := c.Abort(); err != nil {
			t.Fatalf("Abort: %v", err)
		}
		if _, err := sc.Read(make([]byte, 8)); !errors.Is(err, syscall.ECONNRESET) {
			t.Errorf("server read after Abort: %v, want ECONNRESET", err)
		}
		if err := c.Close(); !errors.Is(err, ErrClosed) {
			t.Errorf("Close after Abort: %v, want ErrClosed", err)
		}
	})

	t.Run("peer resets", func(t *testing.T) {
		// Closing with unread data resets the connection (RFC 2525
		// 2.17, as Linux and gVisor do).
		c, sc := dial(t, 40003)
		mustWrite(t, c, "ab")
		mustRead(t, sc, "a") // "b" has arrived too, in the same segment
		sc.Close()
		if _, err := c.Read(make([]byte, 8)); !errors.Is(err, syscall.ECONNRESET) {
			t.Errorf("read after the peer's reset: %v, want ECONNRESET", err)
		}
	})

	t.Run("refused", func(t *testing.T) {
		_, err := r.st.DialTCP(lab.Context(t, 20*time.Second), netip.AddrPortFrom(outsideAddr, 40004), netip.AddrPortFrom(server.Addr(), 9))
		if !errors.Is(err, syscall.ECONNREFUSED) {
			t.Errorf("DialTCP to a closed port: %v, want ECONNREFUSED", err)
		}
	})

	t.Run("TIME-WAIT gives way", func(t *testing.T) {
		// fwx closes first, so its side of the old connection lingers in
		// TIME-WAIT; a new connection on the same four-tuple must not
		// wait for it.
		c, sc := dial(t, 40007)
		c.Close()
		if _, err := sc.Read(make([]byte, 1)); err != io.EOF {
			t.Fatalf("server read after close: %v, want EOF", err)
		}
		sc.Close()
		waitFor(t, "TIME-WAIT", func() bool { return timeWaits(r.st, 40007) > 0 })
		c2, _ := dial(t, 40007)
		mustWrite(t, c2, "again")
	})

	t.Run("not our address", func(t *testing.T) {
		_, err := r.st.DialTCP(lab.Context(t, 20*time.Second), netip.MustParseAddrPort("198.51.100.99:40005"), serverAP)
		if !errors.Is(err, syscall.EADDRNOTAVAIL) {
			t.Errorf("DialTCP from a foreign address: %v, want EADDRNOTAVAIL", err)
		}
	})

	t.Run("read deadline", func(t *testing.T) {
		c, _ := dial(t, 40006)
		c.SetReadDeadline(time.Now().Add(20 * time.Millisecond))
		_, err := c.Read(make([]byte, 8))
		var ne net.Error
		if !errors.As(err, &ne) || !ne.Timeout() {
			t.Errorf("Read past deadline: %v, want a timeout", err)
		}
	})
}

// TestListenTCP: a listener on the outside address accepts a lab host's
// connection and reports its address.
func TestListenTCP(t *testing.T) {
	r := newRig(t, Options{Addrs: []netip.Addr{outsideAddr}, Seed: 1}, rigOpts{})
	host := r.addHost(t, "host", serverPrefix, outsideAddr)
	addr := netip.AddrPortFrom(outsideAddr, 50000)
	ln, err := r.st.ListenTCP(addr, 0)
	if err != nil {
		t.Fatal(err)
	}
	if ln.Addr() != addr {
		t.Errorf("Addr = %v, want %v", ln.Addr(), addr)
	}

	hc, err := host.DialTCP(lab.Context(t, 20*time.Second), addr)
	if err != nil {
		t.Fatalf("host DialTCP: %v", err)
	}
	defer hc.Close()
	c, err := ln.Accept()
	if err != nil {
		t.Fatalf("Accept: %v", err)
	}
	defer c.Close()
	if want := hc.LocalAddr().(*net.TCPAddr).AddrPort(); c.RemoteAddrPort() != want {
		t.Errorf("accepted from %v, want %v", c.RemoteAddrPort(), want)
	}
	if c.LocalAddrPort() != addr {
		t.Errorf("accepted on %v, want %v", c.LocalAddrPort(), addr)
	}
	mustWrite(t, hc, "hi")
	mustRead(t, c, "hi")

	// Close wakes a waiting Accept.
	done := make(chan error, 1)
	go func() {
		_, err := ln.Accept()
		done <- err
	}()
	time.Sleep(10 * time.Millisecond) // let Accept start waiting; the result is the same either way
	ln.Close()
	if err := recv(t, done, "Accept after Close"); !errors.Is(err, ErrClosed) {
		t.Errorf("Accept after Close: %v, want ErrClosed", err)
	}

	// An ephemeral port.
	ln2, err := r.st.ListenTCP(netip.AddrPortFrom(outsideAddr, 0), 4)
	if err != nil {
		t.Fatal(err)
	}
	defer ln2.Close()
	if ln2.Addr().Port() == 0 {
		t.Errorf("ephemeral listener Addr = %v, want a port", ln2.Addr())
	}
}

func mustWrite(t *testing.T, w io.Writer, s string) {
	t.Helper()
	if _, err := w.Write([]byte(s)); err != nil {
		t.Fatalf("write %q: %v", s, err)
	}
}

func mustRead(t *testing.T, r io.Reader, want string) {
	t.Helper()
	buf := make([]byte, len(want))
	if _, err := io.ReadFull(r, buf); err != nil {
		t.Fatalf("read %q: %v", want, err)
	}
	if string(buf) != want {
		t.Fatalf("read %q, want %q", buf, want)
	}
}

// TestTransparentIPv6: the stacks speak IPv6 too (fwx is IPv4 for now):
// a TCP connection and a UDP flow to an arbitrary IPv6 address are
// intercepted like IPv4 ones.
func TestTransparentIPv6(t *testing.T) {
	r := newRig(t, Options{Transparent: true, Seed: 1}, rigOpts{ipv6: true})
	client := r.addHost(t, "client", netip.MustParsePrefix("2001:db8:1::2/64"), netip.MustParseAddr("2001:db8:1::1"))
	tcpDst := netip.MustParseAddrPort("[2001:db8:ff::5]:80")
	udpDst := netip.MustParseAddrPort("[2001:db8:ff::5]:53")

	r.st.HandleTCP(func(req *TCPRequest) {
		c, err := req.Accept()
		if err != nil {
			t.Errorf("Accept: %v", err)
			return
		}
		defer c.Close()
		io.Copy(c, c)
	})
	r.st.HandleUDP(func(req *UDPRequest) {
		c, err := req.Accept()
		if err != nil {
			t.Errorf("UDP Accept: %v", err)
			return
		}
		defer c.Close()
		buf := make([]byte, 100)
		n, err := c.Read(buf)
		if err != nil {
			t.Errorf("UDP Read: %v", err)
			return
		}
		c.Write(buf[:n])
	})

	conn, err := client.DialTCP(lab.Context(t, 20*time.Second), tcpDst)
	if err != nil {
		t.Fatalf("DialTCP: %v", err)
	}
	defer conn.Close()
	if peer := conn.RemoteAddr().(*net.TCPAddr).AddrPort(); peer != tcpDst {
		t.Errorf("client's peer = %v, want %v", peer, tcpDst)
	}
	mustWrite(t, conn, "six")
	mustRead(t, conn, "six")

	uc, err := client.DialUDP(netip.AddrPort{}, udpDst)
	if err != nil {
		t.Fatal(err)
	}
	defer uc.Close()
	mustWrite(t, uc, "dgram")
	mustRead(t, uc, "dgram")
}

// TestSeed: with the same seed, a stack makes the same random choices
// (here, the ephemeral port of a dial).
func TestSeed(t *testing.T) {
	port := func(seed int64) uint16 {
		r := newRig(t, Options{Addrs: []netip.Addr{outsideAddr}, Seed: seed}, rigOpts{})
		server := r.addHost(t, "server", serverPrefix, outsideAddr)
		ln, err := server.ListenTCP(8080)
		if err != nil {
			t.Fatal(err)
		}
		defer ln.Close()
		c, err := r.st.DialTCP(lab.Context(t, 20*time.Second), netip.AddrPort{}, netip.AddrPortFrom(server.Addr(), 8080))
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		if c.LocalAddrPort().Addr() != outsideAddr {
			t.Errorf("dialed from %v, want the stack's address %v", c.LocalAddrPort(), outsideAddr)
		}
		return c.LocalAddrPort().Port()
	}
	a, b, other := port(7), port(7), port(8)
	if a != b {
		t.Errorf("seed 7 gave ports %d and %d; want the same", a, b)
	}
	if a == other {
		t.Logf("seeds 7 and 8 both gave port %d (possible, unlikely)", a)
	}
}

// timeWaits counts the stack's TCP endpoints in TIME-WAIT on a local port.
func timeWaits(s *Stack, port uint16) int {
	n := 0
	for _, ep := range s.st.RegisteredEndpoints() {
		if e, ok := ep.(*tcp.Endpoint); ok && e.EndpointState() == tcp.StateTimeWait && e.TransportEndpointInfo.ID.LocalPort == port {
			n++
		}
	}
	return n
}
