package lab

import (
	"errors"
	"net"
	"net/netip"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"
)

func TestUDP(t *testing.T) {
	tp := newTopo(t, Options{})
	tests := []struct {
		name     string
		from, to *Host
	}{
		{"client to server", tp.client, tp.server},
		{"server to client", tp.server, tp.client},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv, err := tt.to.ListenUDP(5353)
			if err != nil {
				t.Fatal(err)
			}
			defer srv.Close()
			c, err := tt.from.DialUDP(netip.AddrPort{}, netip.AddrPortFrom(tt.to.Addr(), 5353))
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			deadline := time.Now().Add(10 * time.Second)
			srv.SetDeadline(deadline)
			c.SetDeadline(deadline)

			if _, err := c.Write([]byte("ping")); err != nil {
				t.Fatal(err)
			}
			buf := make([]byte, 100)
			n, from, err := srv.ReadFrom(buf)
			if err != nil {
				t.Fatal(err)
			}
			if string(buf[:n]) != "ping" || from.(*net.UDPAddr).AddrPort() != c.LocalAddr().(*net.UDPAddr).AddrPort() {
				t.Fatalf("server got %q from %v; want \"ping\" from %v", buf[:n], from, c.LocalAddr())
			}
			if _, err := srv.WriteTo([]byte("pong"), from); err != nil {
				t.Fatal(err)
			}
			n, err = c.Read(buf)
			if err != nil || string(buf[:n]) != "pong" {
				t.Fatalf("client Read = %q, %v; want \"pong\"", buf[:n], err)
			}
		})
	}
}

// TestUDPPortUnreachable checks how a connected UDP socket reports an ICMP
// port-unreachable, as documented on Host.DialUDP.
func TestUDPPortUnreachable(t *testing.T) {
	tp := newTopo(t, Options{})
	dst := netip.AddrPortFrom(tp.server.Addr(), 9)
	c, err := tp.client.DialUDP(netip.AddrPort{}, dst)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))

	// A Read that waits when the error arrives returns it.
	errc := make(chan error)
	go func() {
		_, err := c.Read(make([]byte, 10))
		errc <- err
	}()
	if _, err := c.Write([]byte("anyone?")); err != nil {
		t.Fatal(err)
	}
	if err := <-errc; !errors.Is(err, syscall.ECONNREFUSED) {
		t.Fatalf("waiting Read = %v, want ECONNREFUSED", err)
	}
	icmp := tp.fwd.waitPacket(t, "port unreachable", func(p []byte) bool {
		return strings.Contains(PacketString(p), "dest-unreachable/port")
	})
	if s := PacketString(icmp); !strings.Contains(s, "inner=[UDP "+c.LocalAddr().String()+" → "+dst.String()+"]") ||
		!strings.Contains(s, "csum=ok") {
		t.Errorf("ICMP error %s does not quote the datagram", s)
	}
	// Reported once, as on Linux: the socket works again afterwards.
	if _, err := c.Write([]byte("again")); err != nil {
		t.Errorf("Write after the error was reported = %v", err)
	}
	// And the next error is reported by a Write if no Read takes it.
	seen := 0
	tp.fwd.waitPacket(t, "second port unreachable", func(p []byte) bool {
		if strings.Contains(PacketString(p), "dest-unreachable/port") {
			seen++
		}
		return seen == 2
	})
	for i := 0; ; i++ {
		// The forwarder has carried the error; the client may not have
		// processed it yet.
		_, err := c.Write([]byte("x"))
		if errors.Is(err, syscall.ECONNREFUSED) {
			break
		}
		if err != nil || i == 1000 {
			t.Fatalf("Write after a second port unreachable = %v, want ECONNREFUSED", err)
		}
		time.Sleep(time.Millisecond)
	}
}

func TestUDPConnDeadlinesAndClose(t *testing.T) {
	tp := newTopo(t, Options{})
	c, err := tp.client.ListenUDP(0)
	if err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 10)
	t.Run("past deadline", func(t *testing.T) {
		c.SetReadDeadline(time.Now().Add(-time.Second))
		if _, _, err := c.ReadFrom(buf); !errors.Is(err, os.ErrDeadlineExceeded) {
			t.Fatalf("ReadFrom = %v, want deadline exceeded", err)
		}
	})
	t.Run("deadline moved for a waiting read", func(t *testing.T) {
		c.SetReadDeadline(time.Now().Add(time.Hour))
		errc := make(chan error)
		go func() {
			_, _, err := c.ReadFrom(buf)
			errc <- err
		}()
		c.SetReadDeadline(time.Now().Add(20 * time.Millisecond))
		if err := <-errc; !errors.Is(err, os.ErrDeadlineExceeded) {
			t.Fatalf("ReadFrom = %v, want deadline exceeded", err)
		}
	})
	t.Run("close wakes a waiting read", func(t *testing.T) {
		c.SetReadDeadline(time.Time{})
		errc := make(chan error)
		go func() {
			_, _, err := c.ReadFrom(buf)
			errc <- err
		}()
		time.Sleep(10 * time.Millisecond) // usually lets it wait; passes either way
		c.Close()
		if err := <-errc; !errors.Is(err, net.ErrClosed) {
			t.Fatalf("ReadFrom = %v, want net.ErrClosed", err)
		}
	})
}
