package netstack

import (
	"errors"
	"net/netip"
	"syscall"
	"testing"
	"time"

	"github.com/fwx-dev/fwx/netstack/lab"
)

// TestCloseWithOpenConnections: Close ends every blocked call and handler
// and every goroutine (the rig's cleanup checks the goroutines), peers see
// resets, and the stack refuses everything afterwards.
func TestCloseWithOpenConnections(t *testing.T) {
	r := newRig(t, Options{Transparent: true, Seed: 1}, rigOpts{})
	client := r.addHost(t, "client", clientPrefix, clientGW)
	ctx := lab.Context(t, 20*time.Second)

	accepted := make(chan *Conn, 1)
	held := make(chan error, 1)
	heldStarted := make(chan struct{})
	r.st.HandleTCP(func(req *TCPRequest) {
		if req.Dst.Port() == 80 {
			c, err := req.Accept()
			if err != nil {
				t.Errorf("Accept: %v", err)
			}
			accepted <- c
			return
		}
		// Port 81: never decide until the stack closes.
		close(heldStarted)
		<-req.Context().Done()
		held <- req.Context().Err()
	})
	udpAccepted := make(chan *PacketConn, 1)
	r.st.HandleUDP(func(req *UDPRequest) {
		c, err := req.Accept()
		if err != nil {
			t.Errorf("UDP Accept: %v", err)
		}
		udpAccepted <- c
	})

	// An intercepted connection, with a Read waiting on each side.
	cc, err := client.DialTCP(ctx, farServer)
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	sc := recv(t, accepted, "accepted conn")
	clientRead := make(chan error, 1)
	go func() { _, err := cc.Read(make([]byte, 1)); clientRead <- err }()

	// A connection attempt whose handler has not decided.
	heldDial := make(chan error, 1)
	go func() {
		_, err := client.DialTCP(ctx, netip.AddrPortFrom(farServer.Addr(), 81))
		heldDial <- err
	}()

	// A UDP flow.
	uc, err := client.DialUDP(netip.AddrPort{}, netip.MustParseAddrPort("203.0.113.5:53"))
	if err != nil {
		t.Fatal(err)
	}
	defer uc.Close()
	mustWrite(t, uc, "q")
	pc := recv(t, udpAccepted, "UDP flow")
	mustRead(t, pc, "q")

	// A listener and a connection dialed from the stack.
	ln, err := r.st.ListenTCP(netip.MustParseAddrPort("198.18.0.1:8080"), 0)
	if err != nil {
		t.Fatal(err)
	}
	cl, err := client.ListenTCP(7000)
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	dc, err := r.st.DialTCP(ctx, netip.MustParseAddrPort("198.18.0.1:1000"), netip.AddrPortFrom(client.Addr(), 7000))
	if err != nil {
		t.Fatalf("DialTCP from a foreign address on a Transparent stack: %v", err)
	}

	blocked := map[string]func() error{
		"intercepted Read": func() error { _, err := sc.Read(make([]byte, 1)); return err },
		"UDP Read":         func() error { _, err := pc.Read(make([]byte, 1)); return err },
		"Accept":           func() error { _, err := ln.Accept(); return err },
		"dialed Read":      func() error { _, err := dc.Read(make([]byte, 1)); return err },
	}
	type result struct {
		name string
		err  error
	}
	errs := make(chan result, len(blocked))
	for name, f := range blocked {
		go func() { errs <- result{name, f()} }()
	}
	recv(t, heldStarted, "the held handler to start")

	if err := r.st.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	for range blocked {
		if res := recv(t, errs, "blocked call"); !errors.Is(res.err, ErrClosed) {
			t.Errorf("%s returned %v, want ErrClosed", res.name, res.err)
		}
	}
	if err := recv(t, held, "held handler"); err == nil {
		t.Error("held handler's context not done")
	}
	if err := recv(t, clientRead, "client read"); !errors.Is(err, syscall.ECONNRESET) {
		t.Errorf("client read after Close: %v, want ECONNRESET", err)
	}
	if err := recv(t, heldDial, "held dial"); !errors.Is(err, syscall.ECONNREFUSED) {
		t.Errorf("held dial after Close: %v, want ECONNREFUSED", err)
	}

	// Everything fails afterwards; Close again is fine.
	if err := r.st.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	if _, err := r.st.DialTCP(ctx, netip.AddrPort{}, netip.AddrPortFrom(client.Addr(), 7000)); !errors.Is(err, ErrClosed) {
		t.Errorf("DialTCP after Close: %v", err)
	}
	if _, err := r.st.ListenTCP(netip.MustParseAddrPort("198.18.0.1:8081"), 0); !errors.Is(err, ErrClosed) {
		t.Errorf("ListenTCP after Close: %v", err)
	}
	if _, err := r.st.DialUDP(netip.AddrPort{}, farServer); !errors.Is(err, ErrClosed) {
		t.Errorf("DialUDP after Close: %v", err)
	}
	if _, err := r.st.ListenUDP(netip.MustParseAddrPort("198.18.0.1:53")); !errors.Is(err, ErrClosed) {
		t.Errorf("ListenUDP after Close: %v", err)
	}
	r.st.Deliver([][]byte{make([]byte, 20)}) // must not panic
	if err := sc.Close(); !errors.Is(err, ErrClosed) {
		t.Errorf("Conn.Close after stack Close: %v, want ErrClosed", err)
	}
}
