package tftp_test

import (
	"bytes"
	"math/rand/v2"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/fwx-dev/fwx/filters/tftp"
	"github.com/fwx-dev/fwx/netstack/lab"
	"github.com/fwx-dev/fwx/netstack/lab/fwxlab"
)

var serverTFTP = netip.AddrPortFrom(fwxlab.ServerAddr, 69)

func randomFile(n int) []byte {
	b := make([]byte, n)
	r := rand.New(rand.NewPCG(uint64(n), 1))
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}

// TestTransfers: reads and writes of every edge size (empty, a block
// exactly, so that the last block is empty), with the options of RFC
// 2347-2349 and 7440, work under address-and-port-dependent filtering; the
// server sees fwx's address and answers from ports of its own.
func TestTransfers(t *testing.T) {
	l := newLab(t, tftpPolicy)
	srv := serve(t, l.Server)
	for _, tt := range []struct {
		name string
		size int
		opts []tftp.Option
	}{
		{"empty", 0, nil},
		{"one block exactly", 512, nil},
		{"small", 1000, nil},
		{"blksize 1428", 20000, []tftp.Option{{Name: "blksize", Value: "1428"}}},
		{"windowsize 4 tsize", 30000, []tftp.Option{{Name: "tsize", Value: "0"}, {Name: "windowsize", Value: "4"}}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			data := randomFile(tt.size)
			c := newClient(t, l.Client)
			if err := c.put(serverTFTP, tt.name, data, tt.opts...); err != nil {
				t.Fatalf("put: %v", err)
			}
			if err := <-srv.done; err != nil {
				t.Fatalf("server, put: %v", err)
			}
			if !bytes.Equal(srv.file(tt.name), data) {
				t.Fatalf("the server holds %d bytes, want the %d put", len(srv.file(tt.name)), len(data))
			}
			got, err := c.get(serverTFTP, tt.name, tt.opts...)
			if err != nil {
				t.Fatalf("get: %v", err)
			}
			if !bytes.Equal(got, data) {
				t.Fatalf("got %d bytes, want the %d put", len(got), len(data))
			}
			if err := <-srv.done; err != nil {
				t.Fatalf("server, get: %v", err)
			}
		})
	}
	// The transfers are logged with the rule that let the client send
	// its request.
	recs := l.Log.Records(t, map[string]string{"event": "allowed", "direction": "inbound", "rule": "tftp-out", "opened_by": "tftp", "path": "user"})
	if len(recs) == 0 {
		t.Error("no transfer flow in the log with the request's rule")
	}
}

// TestWithoutFilter: under the same filtering, without the filter, the
// server's answer from its transfer port is dropped: the test is real.
func TestWithoutFilter(t *testing.T) {
	l := newLab(t, strings.ReplaceAll(tftpPolicy, ", filter: tftp}", "}"))
	srv := serve(t, l.Server)
	srv.files["f"] = []byte("data")
	if _, err := newClient(t, l.Client).get(serverTFTP, "f"); err == nil {
		t.Fatal("a transfer worked without the filter")
	}
}

// TestOnlyTheServer: while a transfer runs, datagrams to the client's port
// from a third host, or from another port of the server, get nothing; the
// transfer is not disturbed.
func TestOnlyTheServer(t *testing.T) {
	l := newLab(t, tftpPolicy)
	srv := serve(t, l.Server)
	srv.files["f"] = randomFile(5000)
	srv.stall = 3 // the transfer stops after 3 blocks, and waits
	c := newClient(t, l.Client)
	done := make(chan error, 1)
	go func() {
		_, err := c.get(serverTFTP, "f")
		done <- err
	}()
	tid := <-srv.tids
	// The transfer has started: the permission holds the server's
	// transfer port as its one source. (Until then any port of the
	// server's address may be the one, as the server chooses it.)
	l.Log.WaitRecords(t, 1, map[string]string{"event": "allowed", "direction": "inbound", "client": tid.String()})
	// Where the client's requests leave fwx from: the server saw it.
	var ext netip.AddrPort
	for _, r := range l.Log.WaitRecords(t, 1, map[string]string{"event": "allowed", "direction": "outbound", "rule": "tftp-out"}) {
		ext = netip.MustParseAddrPort(r["translated_source"].(string))
	}
	intruders := []struct {
		name string
		from netip.AddrPort
	}{
		{"third host", netip.AddrPortFrom(fwxlab.Server2, tid.Port())},
		{"server's other port", netip.AddrPortFrom(fwxlab.ServerAddr, tid.Port()+1)},
	}
	for _, in := range intruders {
		h := l.Server
		if in.from.Addr() == fwxlab.Server2 {
			h = l.Server2
		}
		s, err := h.ListenUDP(in.from.Port())
		if err != nil {
			t.Fatal(err)
		}
		s.WriteTo([]byte("\x00\x03\x00\x04spoofed"), net.UDPAddrFromAddrPort(ext))
		s.Close()
	}
	if err := <-done; err == nil || !strings.Contains(err.Error(), "timeout") {
		t.Errorf("client: %v; want a timeout after block 3, with no intruder's block", err)
	}
	<-srv.done
	// Denied flows are logged once they have been quiet a while.
	l.Clock.Advance(31 * time.Second)
	l.FW.Expire()
	for _, in := range intruders {
		l.Log.WaitRecords(t, 1, map[string]string{"event": "denied", "client": in.from.String()})
	}
}

// TestTransferEnds: a finished transfer's flow and permission end after
// the linger time, and the server's last block sent again within it still
// reaches the client; a datagram from the server's transfer port then gets
// nothing. The last block is known by the block size the OACK agreed on.
// An ERROR ends a transfer at once; an idle one ends after the idle time:
// the rule's idle setting, or twice the timeout the OACK agreed on if
// longer.
func TestTransferEnds(t *testing.T) {
	const size = 2*1428 + 1000 // the last block is short only for blksize 1428
	blksize := tftp.Option{Name: "blksize", Value: "1428"}
	for _, tt := range []struct {
		name     string
		errorAt  uint16
		stall    uint16
		opts     []tftp.Option
		settings string // the rule's filter_settings
		advance  time.Duration
	}{
		{"finished", 0, 0, nil, "", 3 * time.Second},
		{"finished, blksize", 0, 0, []tftp.Option{blksize}, "", 3 * time.Second},
		{"error", 2, 0, nil, "", 0},
		{"idle", 0, 1, nil, "", 60 * time.Second},
		{"idle setting", 0, 1, nil, "{idle: 90s}", 90 * time.Second},
		{"idle, timeout option", 0, 1, []tftp.Option{{Name: "timeout", Value: "40"}}, "", 80 * time.Second},
	} {
		t.Run(tt.name, func(t *testing.T) {
			policy := tftpPolicy
			if tt.settings != "" {
				policy = strings.Replace(policy, "protocols: [tftp]}", "protocols: [tftp], filter_settings: "+tt.settings+"}", 1)
			}
			l := newLab(t, policy)
			srv := serve(t, l.Server)
			srv.files["f"] = randomFile(size)
			srv.errorAt, srv.stall = tt.errorAt, tt.stall
			c := newClient(t, l.Client)
			_, err := c.get(serverTFTP, "f", tt.opts...)
			if (err == nil) != (tt.errorAt == 0 && tt.stall == 0) {
				t.Fatalf("get: %v", err)
			}
			<-srv.done
			tid := <-srv.tids
			s := l.Session(t)
			if err == nil {
				// The final ACK was lost, say: the server sends its last
				// block again, within the linger time.
				again, err := l.Server.ListenUDP(tid.Port())
				if err != nil {
					t.Fatal(err)
				}
				bs := tftp.DefaultBlockSize
				if n, ok := tftp.Blksize(tt.opts); ok {
					bs = n
				}
				n := size/bs + 1
				last := block(tftp.OpDATA, uint16(n), srv.file("f")[(n-1)*bs:])
				again.WriteTo(last, net.UDPAddrFromAddrPort(c.external(t, l)))
				again.Close()
				c.c.SetReadDeadline(time.Now().Add(5 * time.Second))
				buf := make([]byte, tftp.MaxPacket)
				if n, _, err := c.c.ReadFrom(buf); err != nil || !bytes.Equal(buf[:n], last) {
					t.Errorf("the last block sent again within the linger time: %v", err)
				}
			}
			if tt.advance > 0 {
				if s.Pinholes() != 1 {
					t.Errorf("%d pinholes before the transfer ended, want its permission", s.Pinholes())
				}
				l.Clock.Advance(tt.advance - time.Second)
				// The timers that fired run on goroutines of their own:
				// give one that would end the transfer early a moment.
				for range 20 {
					if s.Pinholes() != 1 {
						t.Fatal("the transfer ended early")
					}
					time.Sleep(10 * time.Millisecond)
				}
				l.Clock.Advance(time.Second)
			}
			deadline := time.Now().Add(5 * time.Second)
			for s.Pinholes() != 0 && time.Now().Before(deadline) {
				time.Sleep(5 * time.Millisecond)
			}
			if n := s.Pinholes(); n != 0 {
				t.Fatalf("%d pinholes after the transfer ended", n)
			}
			l.Log.WaitRecords(t, 1, map[string]string{"event": "ended", "direction": "inbound", "client": tid.String()})
			// The transfer port gets nothing any more.
			late, err := l.Server.ListenUDP(tid.Port())
			if err != nil {
				t.Fatal(err)
			}
			defer late.Close()
			late.WriteTo([]byte("\x00\x03\x00\x09late"), net.UDPAddrFromAddrPort(c.external(t, l)))
			c.c.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
			if n, _, err := c.c.ReadFrom(make([]byte, 100)); err == nil {
				t.Errorf("a datagram of %d bytes from the ended transfer's port got in", n)
			}
		})
	}
}

// TestRetransmittedRequest: a request sent again before the server
// answers makes no second permission; a new request does.
func TestRetransmittedRequest(t *testing.T) {
	l := newLab(t, tftpPolicy)
	// No server: the requests stay unanswered.
	c := newClient(t, l.Client)
	rrq := request(tftp.OpRRQ, "f")
	for range 3 {
		c.c.WriteTo(rrq, net.UDPAddrFromAddrPort(serverTFTP))
	}
	s := l.Session(t)
	deadline := time.Now().Add(5 * time.Second)
	for s.Pinholes() == 0 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	time.Sleep(100 * time.Millisecond)
	if n := s.Pinholes(); n != 1 {
		t.Fatalf("%d pinholes for one request sent three times, want 1", n)
	}
	c.c.WriteTo(request(tftp.OpRRQ, "g"), net.UDPAddrFromAddrPort(serverTFTP))
	deadline = time.Now().Add(5 * time.Second)
	for s.Pinholes() != 2 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	if n := s.Pinholes(); n != 2 {
		t.Fatalf("%d pinholes after a second request, want 2", n)
	}
	// Unanswered, they lapse after the pinhole timeout.
	l.Clock.Advance(61 * time.Second)
	l.FW.Expire()
	if n := s.Pinholes(); n != 0 {
		t.Errorf("%d pinholes after the timeout, want 0", n)
	}
}

// TestPublishedServer: an outside client reads from and writes to a TFTP
// server behind fwx; the server's answers leave from its transfer port.
func TestPublishedServer(t *testing.T) {
	l := newLab(t, tftpPolicy)
	srv := serve(t, l.Client) // 10.0.0.2:69, published on fwx's :69
	data := randomFile(3000)
	c := newClient(t, l.Server)
	pub := netip.AddrPortFrom(fwxlab.FWOutside, 69)
	if err := c.put(pub, "up", data, tftp.Option{Name: "blksize", Value: "1024"}); err != nil {
		t.Fatalf("put: %v", err)
	}
	if err := <-srv.done; err != nil {
		t.Fatal(err)
	}
	got, err := c.get(pub, "up")
	if err != nil {
		t.Fatalf("get: %v", err)
	}
	if !bytes.Equal(got, data) {
		t.Errorf("got %d bytes, want %d", len(got), len(data))
	}
	<-srv.done
	// The server's answers are logged with the publication's rule.
	l.Log.WaitRecords(t, 1, map[string]string{"event": "allowed", "direction": "outbound", "rule": "tftpd", "opened_by": "tftp"})
}

// TestReadOnly: a rule's read_only setting refuses writes with an ERROR
// from fwx; the server never sees them; reads work.
func TestReadOnly(t *testing.T) {
	l := newLab(t, strings.Replace(tftpPolicy, "protocols: [tftp]}", "protocols: [tftp], filter_settings: {read_only: true}}", 1))
	srv := serve(t, l.Server)
	srv.files["f"] = []byte("readable")
	c := newClient(t, l.Client)
	err := c.put(serverTFTP, "f", []byte("new"))
	if err == nil || !strings.Contains(err.Error(), "refused by the firewall") {
		t.Errorf("put: %v; want fwx's ERROR", err)
	}
	if got, err := c.get(serverTFTP, "f"); err != nil || string(got) != "readable" {
		t.Errorf("get: %q, %v", got, err)
	}
	<-srv.done
	srv.mu.Lock()
	defer srv.mu.Unlock()
	if srv.requests != 1 {
		t.Errorf("the server got %d requests, want only the read", srv.requests)
	}
}

// TestStrangerBeforeTheAnswer: before the server has answered, the
// transfer's permission admits the server's address only: a third host
// that guesses the client's port and sends first gets nothing, and the
// server's answer, from the port it chose, still gets through.
func TestStrangerBeforeTheAnswer(t *testing.T) {
	l := newLab(t, tftpPolicy)
	port69, err := l.Server.ListenUDP(69) // the server reads the request, and waits
	if err != nil {
		t.Fatal(err)
	}
	defer port69.Close()
	c := newClient(t, l.Client)
	c.c.WriteTo(request(tftp.OpRRQ, "f"), net.UDPAddrFromAddrPort(serverTFTP))
	port69.SetReadDeadline(time.Now().Add(5 * time.Second))
	buf := make([]byte, 512)
	_, from, err := port69.ReadFrom(buf)
	if err != nil {
		t.Fatal(err)
	}
	ext := net.UDPAddrFromAddrPort(from.(*net.UDPAddr).AddrPort())
	waitFor(t, "the transfer's permission", func() bool { return l.Session(t).Pinholes() == 1 })
	for _, tt := range []struct {
		host *lab.Host
		data string
		want bool
	}{
		{l.Server2, "\x00\x03\x00\x01stranger", false},
		{l.Server, "\x00\x03\x00\x01server", true},
	} {
		s, err := tt.host.ListenUDP(0)
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		s.WriteTo([]byte(tt.data), ext)
		c.c.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
		if tt.want {
			c.c.SetReadDeadline(time.Now().Add(5 * time.Second))
		}
		n, _, err := c.c.ReadFrom(buf)
		if got := err == nil && string(buf[:n]) == tt.data; got != tt.want {
			t.Errorf("%q from %v: got through %v, want %v", tt.data, tt.host.Addr(), got, tt.want)
		}
	}
}

// waitFor waits up to 5 s for cond.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); !cond(); time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("no %s after 5 s", what)
		}
	}
}

// TestPublishedServerHairpin: an inside client reaches the published TFTP
// server at fwx's outside address (hairpinning, RFC 4787 REQ-9): the
// request passes from one user-mode flow of the filter's to another.
func TestPublishedServerHairpin(t *testing.T) {
	l := newLab(t, tftpPolicy)
	srv := serve(t, l.Client) // 10.0.0.2:69, published on fwx's :69
	srv.files["f"] = randomFile(3000)
	got, err := newClient(t, l.Client2).get(netip.AddrPortFrom(fwxlab.FWOutside, 69), "f")
	if err != nil {
		t.Fatalf("get: %v", err)
	}
	if !bytes.Equal(got, srv.file("f")) {
		t.Errorf("got %d bytes, want %d", len(got), len(srv.file("f")))
	}
	<-srv.done
}
