package netstack

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync/atomic"
	"testing"
)

// TestTransparentUDP: a client's datagrams to any address are
// intercepted, held while the handler decides, and answered from the
// address the client sent to.
func TestTransparentUDP(t *testing.T) {
	r := newRig(t, Options{Transparent: true, Seed: 1}, rigOpts{})
	client := r.addHost(t, "client", clientPrefix, clientGW)
	dns := netip.MustParseAddrPort("203.0.113.5:53")

	type req struct{ src, dst, local, remote netip.AddrPort }
	got := make(chan req, 1)
	decide := make(chan struct{})
	done := make(chan struct{})
	r.st.HandleUDP(func(ur *UDPRequest) {
		defer close(done)
		<-decide // hold the flow: later datagrams wait with the first
		c, err := ur.Accept()
		if err != nil {
			t.Errorf("Accept: %v", err)
			return
		}
		defer c.Close()
		got <- req{ur.Src, ur.Dst, c.LocalAddrPort(), c.RemoteAddrPort()}
		buf := make([]byte, 100)
		for i := range 3 {
			n, err := c.Read(buf)
			if err != nil {
				t.Errorf("Read: %v", err)
				return
			}
			if want := fmt.Sprintf("query %d", i); string(buf[:n]) != want {
				t.Errorf("datagram %d = %q, want %q", i, buf[:n], want)
			}
			if _, err := c.Write(fmt.Appendf(nil, "answer %d", i)); err != nil {
				t.Errorf("Write: %v", err)
			}
		}
	})

	pc, err := client.ListenUDP(0)
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	for i := range 3 {
		if _, err := pc.WriteTo(fmt.Appendf(nil, "query %d", i), net.UDPAddrFromAddrPort(dns)); err != nil {
			t.Fatal(err)
		}
	}
	// All three are held for the flow, none starts a request of its own.
	waitFor(t, "3 datagrams delivered", func() bool { return r.st.Stats().PacketsIn >= 3 })
	close(decide)
	rq := recv(t, got, "UDP handler")
	src := netip.AddrPortFrom(client.Addr(), pc.LocalAddr().(*net.UDPAddr).AddrPort().Port())
	if rq.src != src || rq.dst != dns {
		t.Errorf("request Src, Dst = %v, %v; want %v, %v", rq.src, rq.dst, src, dns)
	}
	if rq.local != dns || rq.remote != src {
		t.Errorf("socket local, remote = %v, %v; want %v, %v", rq.local, rq.remote, dns, src)
	}
	buf := make([]byte, 100)
	for i := range 3 {
		n, from, err := pc.ReadFrom(buf)
		if err != nil {
			t.Fatalf("client ReadFrom: %v", err)
		}
		if ap := from.(*net.UDPAddr).AddrPort(); ap != dns {
			t.Errorf("answer from %v, want %v", ap, dns)
		}
		if want := fmt.Sprintf("answer %d", i); string(buf[:n]) != want {
			t.Errorf("answer %d = %q, want %q", i, buf[:n], want)
		}
	}
	recv(t, done, "handler end")
}

// TestUDPDrop: a dropped flow gets no answer and no ICMP error, and its
// next datagram asks the handler again.
func TestUDPDrop(t *testing.T) {
	r := newRig(t, Options{Transparent: true, Seed: 1}, rigOpts{})
	client := r.addHost(t, "client", clientPrefix, clientGW)
	var calls atomic.Int32
	asked := make(chan struct{}, 2)
	r.st.HandleUDP(func(ur *UDPRequest) {
		calls.Add(1)
		if calls.Load() == 1 {
			ur.Drop()
			if _, err := ur.Accept(); !errors.Is(err, ErrDecided) {
				t.Errorf("Accept after Drop: %v, want ErrDecided", err)
			}
		} // the second returns without deciding: dropped too
		asked <- struct{}{}
	})
	c, err := client.DialUDP(netip.AddrPort{}, farServer)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	for i := range 2 {
		mustWrite(t, c, "x")
		recv(t, asked, fmt.Sprintf("handler call %d", i+1))
	}
	if n := calls.Load(); n != 2 {
		t.Errorf("handler called %d times, want 2", n)
	}
	if st := r.seg.Stats(); st.ToHosts != 0 {
		t.Errorf("the client received %d packets, want none (no ICMP error)", st.ToHosts)
	}
}

// TestOutsideUDP: the outside stack sends from its address and a chosen
// port, and receives on a listening socket.
func TestOutsideUDP(t *testing.T) {
	r := newRig(t, Options{Addrs: []netip.Addr{outsideAddr}, Seed: 1}, rigOpts{})
	host := r.addHost(t, "host", serverPrefix, outsideAddr)

	t.Run("DialUDP", func(t *testing.T) {
		hc, err := host.ListenUDP(5353)
		if err != nil {
			t.Fatal(err)
		}
		defer hc.Close()
		local := netip.AddrPortFrom(outsideAddr, 40001)
		c, err := r.st.DialUDP(local, netip.AddrPortFrom(host.Addr(), 5353))
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		mustWrite(t, c, "hello")
		buf := make([]byte, 100)
		n, from, err := hc.ReadFrom(buf)
		if err != nil {
			t.Fatal(err)
		}
		if ap := from.(*net.UDPAddr).AddrPort(); ap != local || string(buf[:n]) != "hello" {
			t.Errorf("host got %q from %v, want %q from %v", buf[:n], ap, "hello", local)
		}
		if _, err := hc.WriteTo([]byte("back"), from); err != nil {
			t.Fatal(err)
		}
		mustRead(t, c, "back")
	})

	t.Run("ListenUDP", func(t *testing.T) {
		addr := netip.AddrPortFrom(outsideAddr, 5000)
		pc, err := r.st.ListenUDP(addr)
		if err != nil {
			t.Fatal(err)
		}
		defer pc.Close()
		if pc.LocalAddrPort() != addr || pc.RemoteAddrPort().IsValid() {
			t.Errorf("local, remote = %v, %v; want %v, none", pc.LocalAddrPort(), pc.RemoteAddrPort(), addr)
		}
		hc, err := host.DialUDP(netip.AddrPort{}, addr)
		if err != nil {
			t.Fatal(err)
		}
		defer hc.Close()
		mustWrite(t, hc, "ping")
		buf := make([]byte, 100)
		n, from, err := pc.ReadFromAddrPort(buf)
		if err != nil {
			t.Fatal(err)
		}
		if want := hc.LocalAddr().(*net.UDPAddr).AddrPort(); from != want || string(buf[:n]) != "ping" {
			t.Errorf("got %q from %v, want %q from %v", buf[:n], from, "ping", want)
		}
		if _, err := pc.WriteToAddrPort([]byte("pong"), from); err != nil {
			t.Fatal(err)
		}
		mustRead(t, hc, "pong")

		// Close wakes a waiting read.
		errc := make(chan error, 1)
		go func() {
			_, _, err := pc.ReadFromAddrPort(buf)
			errc <- err
		}()
		pc.Close()
		if err := recv(t, errc, "read after Close"); !errors.Is(err, ErrClosed) {
			t.Errorf("read after Close: %v, want ErrClosed", err)
		}
	})
}
