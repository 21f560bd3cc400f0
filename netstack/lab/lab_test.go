package lab

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"net/netip"
	"os"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.zx2c4.com/wireguard/tun"
	"gvisor.dev/gvisor/pkg/tcpip/header"
)

func TestTCPEcho(t *testing.T) {
	tp := newTopo(t, Options{})
	ctx := Context(t, 10*time.Second)
	ln, err := tp.server.ListenTCP(7)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	remote := make(chan net.Addr, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			t.Errorf("Accept: %v", err)
			return
		}
		defer c.Close()
		remote <- c.RemoteAddr()
		io.Copy(c, c)
	}()

	c, err := tp.client.DialTCP(ctx, netip.AddrPortFrom(tp.server.Addr(), 7))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	// Far more than one window, so that batches of many packets cross.
	msg := bytes.Repeat([]byte("0123456789abcdef"), 64<<10/16*4)
	go func() {
		if _, err := c.Write(msg); err != nil {
			t.Errorf("Write: %v", err)
		}
		c.(interface{ CloseWrite() error }).CloseWrite()
	}()
	got, err := io.ReadAll(c)
	if err != nil {
		t.Fatalf("ReadAll: %v", err)
	}
	if !bytes.Equal(got, msg) {
		t.Fatalf("echoed %d bytes, want %d identical bytes", len(got), len(msg))
	}
	if ra := (<-remote).(*net.TCPAddr).AddrPort(); ra.Addr() != tp.client.Addr() {
		t.Errorf("server saw connection from %v, want %v", ra, tp.client.Addr())
	}
	if st := tp.in.Stats(); st.FromHosts == 0 || st.ToHosts == 0 || st.Captured != 0 {
		t.Errorf("int segment stats = %+v; want traffic both ways, nothing captured", st)
	}
}

func TestPing(t *testing.T) {
	tp := newTopo(t, Options{})
	ctx := Context(t, 10*time.Second)
	tests := []struct {
		name     string
		from, to *Host
		id, seq  uint16
	}{
		{"client to server", tp.client, tp.server, 7, 1},
		{"server to client", tp.server, tp.client, 8, 2},
		{"ephemeral id", tp.client, tp.server, 0, 3},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			reply, err := tt.from.Ping(ctx, tt.to.Addr(), tt.id, tt.seq, []byte("payload"))
			if err != nil {
				t.Fatal(err)
			}
			if reply != tt.to.Addr() {
				t.Errorf("reply from %v, want %v", reply, tt.to.Addr())
			}
			req := tp.fwd.waitPacket(t, "echo request", func(p []byte) bool {
				ip, err := parseIP(p)
				return err == nil && ip.proto == protoICMPv4 && ip.src == tt.from.Addr() &&
					header.ICMPv4(ip.payload).Type() == header.ICMPv4Echo && header.ICMPv4(ip.payload).Sequence() == tt.seq
			})
			if id := header.ICMPv4(req[20:]).Ident(); tt.id != 0 && id != tt.id {
				t.Errorf("echo request id = %d, want %d", id, tt.id)
			}
		})
	}
	t.Run("no reply", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
		defer cancel()
		// Nobody owns this address: the request ends up captured.
		_, err := tp.client.Ping(ctx, netip.MustParseAddr("10.0.2.99"), 9, 1, nil)
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("Ping to nobody = %v, want deadline exceeded", err)
		}
		p := <-tp.out.Captured()
		if !strings.Contains(PacketString(p), "echo-request") {
			t.Errorf("captured %s, want the echo request", PacketString(p))
		}
	})
}

func TestDialTCPFrom(t *testing.T) {
	tp := newTopo(t, Options{})
	ctx := Context(t, 10*time.Second)
	src := netip.AddrPortFrom(tp.client.Addr(), 40000)
	// One source port to two destinations at once, as an RFC 4787
	// endpoint-independent mapping test does.
	for _, port := range []uint16{80, 81} {
		ln, err := tp.server.ListenTCP(port)
		if err != nil {
			t.Fatal(err)
		}
		defer ln.Close()
		dst := netip.AddrPortFrom(tp.server.Addr(), port)
		c, err := tp.client.DialTCPFrom(ctx, src, dst)
		if err != nil {
			t.Fatalf("dial %v: %v", dst, err)
		}
		defer c.Close()
		s, err := ln.Accept()
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		if got := s.RemoteAddr().(*net.TCPAddr).AddrPort(); got != src {
			t.Errorf("dial %v: server saw %v, want %v", dst, got, src)
		}
		if got := c.LocalAddr().(*net.TCPAddr).AddrPort(); got != src {
			t.Errorf("dial %v: client local address %v, want %v", dst, got, src)
		}
	}
	t.Run("4-tuple in use", func(t *testing.T) {
		_, err := tp.client.DialTCPFrom(ctx, src, netip.AddrPortFrom(tp.server.Addr(), 80))
		if !errors.Is(err, syscall.EADDRNOTAVAIL) {
			t.Errorf("second dial of the same 4-tuple = %v, want EADDRNOTAVAIL", err)
		}
	})
}

func TestConnectionRefused(t *testing.T) {
	tp := newTopo(t, Options{})
	dst := netip.AddrPortFrom(tp.server.Addr(), 81)
	_, err := tp.client.DialTCP(Context(t, 10*time.Second), dst)
	if !errors.Is(err, syscall.ECONNREFUSED) {
		t.Fatalf("DialTCP to a closed port = %v, want ECONNREFUSED", err)
	}
	var op *net.OpError
	if !errors.As(err, &op) || op.Op != "dial" {
		t.Errorf("error %#v is not a dial *net.OpError", err)
	}
	rst := tp.fwd.waitPacket(t, "RST from the server", func(p []byte) bool {
		ip, err := parseIP(p)
		return err == nil && ip.proto == protoTCP && ip.src == dst.Addr() &&
			header.TCP(ip.payload).SourcePort() == dst.Port() &&
			header.TCP(ip.payload).Flags().Contains(header.TCPFlagRst)
	})
	if err := VerifyChecksums(rst); err != nil {
		t.Errorf("RST %s: %v", PacketString(rst), err)
	}
}

func TestInjectCaptured(t *testing.T) {
	tp := newTopo(t, Options{})
	src := netip.MustParseAddrPort("10.0.1.9:1000")
	tests := []struct {
		name string
		pkt  []byte
	}{
		{"udp", UDPPacket(src, netip.MustParseAddrPort("198.51.100.7:2000"), []byte("hello"))},
		{"tcp syn", TCPPacket(src, netip.MustParseAddrPort("198.51.100.7:80"), header.TCPFlagSyn, 1000, 0, nil)},
		{"icmp echo", ICMPEcho(src.Addr(), netip.MustParseAddr("198.51.100.7"), header.ICMPv4Echo, 1, 2)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := tp.in.Inject(tt.pkt); err != nil {
				t.Fatal(err)
			}
			select {
			case got := <-tp.out.Captured():
				if !bytes.Equal(got, tt.pkt) {
					t.Errorf("captured %s\nwant     %s", PacketString(got), PacketString(tt.pkt))
				}
				if err := VerifyChecksums(got); err != nil {
					t.Errorf("captured %s: %v", PacketString(got), err)
				}
			case <-time.After(10 * time.Second):
				t.Fatal("nothing captured")
			}
		})
	}
	if st := tp.out.Stats(); st.Captured != uint64(len(tests)) {
		t.Errorf("Captured = %d, want %d", st.Captured, len(tests))
	}
}

// TestInjectToHost checks that a raw packet reaches a host's stack: a
// SYN to a listening port is answered with a SYN-ACK, which is captured
// because no host owns the spoofed source.
func TestInjectToHost(t *testing.T) {
	tp := newTopo(t, Options{})
	ln, err := tp.server.ListenTCP(80)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	src := netip.MustParseAddrPort("10.0.1.77:5555")
	syn := TCPPacket(src, netip.AddrPortFrom(tp.server.Addr(), 80), header.TCPFlagSyn, 1000, 0, nil)
	if err := tp.in.Inject(syn); err != nil {
		t.Fatal(err)
	}
	synAck := <-tp.in.Captured()
	ip, err := parseIP(synAck)
	if err != nil {
		t.Fatal(err)
	}
	tcp := header.TCP(ip.payload)
	if ip.dst != src.Addr() || tcp.DestinationPort() != src.Port() ||
		tcp.Flags() != header.TCPFlagSyn|header.TCPFlagAck || tcp.AckNumber() != 1001 {
		t.Errorf("reply to injected SYN = %s, want SYN|ACK ack=1001 to %v", PacketString(synAck), src)
	}
	if err := VerifyChecksums(synAck); err != nil {
		t.Error(err)
	}
}

func TestAddAddress(t *testing.T) {
	tp := newTopo(t, Options{})
	second := netip.MustParsePrefix("10.0.2.3/24")
	if err := tp.server.AddAddress(second); err != nil {
		t.Fatal(err)
	}
	if got := tp.server.Addrs(); !slices.Equal(got, []netip.Prefix{serverAddr, second}) {
		t.Errorf("Addrs = %v", got)
	}
	if tp.server.Addr() != serverAddr.Addr() {
		t.Errorf("Addr = %v, want the first address", tp.server.Addr())
	}
	reply, err := tp.client.Ping(Context(t, 10*time.Second), second.Addr(), 1, 1, nil)
	if err != nil || reply != second.Addr() {
		t.Fatalf("Ping(%v) = %v, %v", second.Addr(), reply, err)
	}
	if err := tp.server.AddAddress(second); err == nil {
		t.Error("adding the same address twice succeeded")
	}
	if err := tp.client.AddAddress(netip.MustParsePrefix("10.0.1.3/24")); err != nil {
		t.Errorf("second client address: %v", err)
	}
}

func TestAddHostErrors(t *testing.T) {
	CheckGoroutines(t)
	n := New(Options{})
	defer n.Close()
	seg, other := n.NewSegment("a"), n.NewSegment("b")
	if _, err := seg.AddHost("h", netip.MustParsePrefix("10.0.0.2/24"), netip.MustParseAddr("10.0.0.1")); err != nil {
		t.Fatal(err)
	}
	// Another segment is another network: the same address is fine there.
	if _, err := other.AddHost("h2", netip.MustParsePrefix("10.0.0.2/24"), netip.MustParseAddr("10.0.0.1")); err != nil {
		t.Errorf("same address on another segment: %v", err)
	}
	tests := []struct {
		name string
		addr string
		gw   string
	}{
		{"taken", "10.0.0.2/24", "10.0.0.1"},
		{"ipv6 disabled", "fd00::2/64", "fd00::1"},
		{"gateway family", "10.0.0.3/24", "fd00::1"},
		{"unspecified", "0.0.0.0/0", "10.0.0.1"},
		{"multicast", "224.0.0.1/32", "10.0.0.1"},
		{"mapped", "::ffff:10.0.0.4/120", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var gw netip.Addr
			if tt.gw != "" {
				gw = netip.MustParseAddr(tt.gw)
			}
			if h, err := seg.AddHost(tt.name, netip.MustParsePrefix(tt.addr), gw); err == nil {
				t.Errorf("AddHost(%s, %s) = %v, want error", tt.addr, tt.gw, h.Name())
			} else if !strings.HasPrefix(err.Error(), "lab: ") {
				t.Errorf("error %q lacks the package prefix", err)
			}
		})
	}
	if _, err := seg.AddHost("invalid", netip.Prefix{}, netip.Addr{}); err == nil {
		t.Error("AddHost with the zero Prefix succeeded")
	}
	n.Close()
	if _, err := seg.AddHost("late", netip.MustParsePrefix("10.0.0.9/24"), netip.Addr{}); err == nil {
		t.Error("AddHost after Close succeeded")
	}
}

// TestClose checks that Close ends every socket operation in progress and
// every goroutine the network started, and that the devices fail.
func TestClose(t *testing.T) {
	CheckGoroutines(t)
	n := New(Options{})
	in, out := n.NewSegment("int"), n.NewSegment("ext")
	client, err := in.AddHost("client", clientAddr, clientGW)
	if err != nil {
		t.Fatal(err)
	}
	server, err := out.AddHost("server", serverAddr, serverGW)
	if err != nil {
		t.Fatal(err)
	}
	fwd := startForwarder(in.Device(), out.Device())

	ln, err := server.ListenTCP(80)
	if err != nil {
		t.Fatal(err)
	}
	c, err := client.DialTCP(Context(t, 10*time.Second), netip.AddrPortFrom(server.Addr(), 80))
	if err != nil {
		t.Fatal(err)
	}
	s, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	u, err := server.ListenUDP(53)
	if err != nil {
		t.Fatal(err)
	}

	var wg sync.WaitGroup
	blocked := map[string]func() error{
		"Accept":       func() error { _, err := ln.Accept(); return err },
		"TCP Read":     func() error { _, err := c.Read(make([]byte, 1)); return err },
		"UDP ReadFrom": func() error { _, _, err := u.ReadFrom(make([]byte, 1)); return err },
	}
	for name, f := range blocked {
		wg.Go(func() {
			if f() == nil {
				t.Errorf("%s returned no error after Close", name)
			}
		})
	}
	time.Sleep(10 * time.Millisecond) // let them block; they must end either way
	n.Close()
	n.Close() // idempotent
	wg.Wait()
	fwd.wg.Wait()
	s.Close()

	bufs, sizes := [][]byte{make([]byte, 100)}, []int{0}
	if _, err := in.Device().Read(bufs, sizes, 0); !errors.Is(err, os.ErrClosed) {
		t.Errorf("device Read after Close = %v, want os.ErrClosed", err)
	}
	if err := in.Inject(UDPPacket(netip.MustParseAddrPort("10.0.1.2:1"), netip.MustParseAddrPort("10.0.2.2:2"), nil)); !errors.Is(err, os.ErrClosed) {
		t.Errorf("Inject after Close = %v, want os.ErrClosed", err)
	}
	for ev := range in.Device().Events() {
		if ev != tun.EventUp {
			t.Errorf("event %v; want only EventUp, then a closed channel", ev)
		}
	}
}

// TestDeterminism checks that the seed alone decides a host's random
// choices: the ephemeral ports of a client's first TCP and UDP sockets are
// the same in two networks with the same seed and differ with another
// seed. (TCP initial sequence numbers are not reproducible: RFC 6528 adds
// a clock to them, and gVisor's TCP runs on real time.)
func TestDeterminism(t *testing.T) {
	CheckGoroutines(t)
	firstPorts := func(seed int64) [2]uint16 {
		n := New(Options{Seed: seed})
		defer n.Close()
		seg := n.NewSegment("int")
		// A few hosts first, so the client's index matters too.
		for i := range 3 {
			addr := netip.PrefixFrom(netip.AddrFrom4([4]byte{10, 0, 1, byte(10 + i)}), 24)
			if _, err := seg.AddHost("filler", addr, clientGW); err != nil {
				t.Fatal(err)
			}
		}
		client, err := seg.AddHost("client", clientAddr, clientGW)
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		go client.DialTCP(ctx, netip.MustParseAddrPort("10.0.2.2:80"))
		bufs, sizes := [][]byte{make([]byte, 1500)}, []int{0}
		if _, err := seg.Device().Read(bufs, sizes, 0); err != nil {
			t.Fatal(err)
		}
		syn := header.TCP(bufs[0][20:sizes[0]])
		if syn.Flags() != header.TCPFlagSyn {
			t.Fatalf("first packet %s is not a SYN", PacketString(bufs[0][:sizes[0]]))
		}
		u, err := client.DialUDP(netip.AddrPort{}, netip.MustParseAddrPort("10.0.2.2:53"))
		if err != nil {
			t.Fatal(err)
		}
		defer u.Close()
		return [2]uint16{syn.SourcePort(), u.LocalAddr().(*net.UDPAddr).AddrPort().Port()}
	}
	a, b, c := firstPorts(42), firstPorts(42), firstPorts(43)
	if a != b {
		t.Errorf("seed 42 twice: ports %v, then %v", a, b)
	}
	if a == c {
		t.Errorf("seeds 42 and 43 both gave ports %v", a)
	}
}

func TestIPv6(t *testing.T) {
	CheckGoroutines(t)
	n := New(Options{IPv6: true})
	defer n.Close()
	in, out := n.NewSegment("int"), n.NewSegment("ext")
	client, err := in.AddHost("client", netip.MustParsePrefix("fd00:1::2/64"), netip.MustParseAddr("fd00:1::1"))
	if err != nil {
		t.Fatal(err)
	}
	server, err := out.AddHost("server", netip.MustParsePrefix("fd00:2::2/64"), netip.MustParseAddr("fd00:2::1"))
	if err != nil {
		t.Fatal(err)
	}
	// A dual-stack server: IPv4 next to IPv6.
	if err := server.AddAddress(serverAddr); err != nil {
		t.Fatal(err)
	}
	fwd := startForwarder(in.Device(), out.Device())
	defer fwd.wg.Wait()
	defer n.Close()

	reply, err := client.Ping(Context(t, 10*time.Second), server.Addr(), 3, 4, []byte("v6"))
	if err != nil || reply != server.Addr() {
		t.Fatalf("Ping over IPv6 = %v, %v", reply, err)
	}
	c, err := client.DialUDP(netip.AddrPort{}, netip.AddrPortFrom(server.Addr(), 9))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.Write([]byte("x"))
	fwd.waitPacket(t, "IPv6 UDP datagram", func(p []byte) bool {
		s := PacketString(p)
		return strings.HasPrefix(s, "IPv6 UDP [fd00:1::2]:") && strings.Contains(s, "csum=ok")
	})
	// Hosts say nothing unprompted: no router solicitations, no MLD, no DAD.
	select {
	case p := <-out.Captured():
		t.Errorf("unexpected packet captured: %s", PacketString(p))
	case p := <-in.Captured():
		t.Errorf("unexpected packet captured: %s", PacketString(p))
	default:
	}
}

func TestLogf(t *testing.T) {
	var mu sync.Mutex
	var lines []string
	tp := newTopo(t, Options{Logf: func(format string, args ...any) {
		mu.Lock()
		defer mu.Unlock()
		lines = append(lines, strings.TrimSpace(sprintf(format, args...)))
	}})
	if _, err := tp.client.Ping(Context(t, 10*time.Second), tp.server.Addr(), 1, 1, nil); err != nil {
		t.Fatal(err)
	}
	tp.net.Close()
	mu.Lock()
	defer mu.Unlock()
	want := []string{
		"int: client → fwx IPv4 ICMP 10.0.1.2 → 10.0.2.2 echo-request",
		"ext: fwx → server IPv4 ICMP 10.0.1.2 → 10.0.2.2 echo-request",
		"ext: server → fwx IPv4 ICMP 10.0.2.2 → 10.0.1.2 echo-reply",
		"int: fwx → client IPv4 ICMP 10.0.2.2 → 10.0.1.2 echo-reply",
	}
	for _, w := range want {
		if !slices.ContainsFunc(lines, func(l string) bool { return strings.HasPrefix(l, w) }) {
			t.Errorf("no log line starting %q in:\n%s", w, strings.Join(lines, "\n"))
		}
	}
}
