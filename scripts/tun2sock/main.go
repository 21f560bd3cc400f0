//go:build linux

// Command tun2sock is the baseline of the host-mode row of scripts/bench,
// not part of fwx. It is a deliberately plain TUN-to-socket forwarder of the
// tun2socks kind (github.com/xjasonlyu/tun2socks), wired the way tun2socks
// wires gVisor on Linux, so that "fwx host mode against a gVisor forwarder"
// compares fwx with what such tools do, not with a straw man:
//
//   - the TUN is attached by name as a plain fd (IFF_TUN|IFF_NO_PI, no
//     virtio-net header, no offloads) and served by gVisor's fdbased link
//     endpoint in readv mode;
//   - one gVisor stack, its NIC promiscuous (it accepts every destination)
//     and spoofing (it answers from every destination), a default route to
//     the NIC, tun2socks's stack defaults (below);
//   - a tcp.Forwarder completes each client handshake, then net.Dial()s the
//     connection's real destination from the host's stack and copies both
//     ways with io.Copy, passing half-closes on with CloseWrite.
//
// IPv4 TCP only: UDP, ICMP and IPv6 are dropped, which is all the bench's
// tcp, cps and rr tests need. It needs root or CAP_NET_ADMIN only to attach
// to a TUN it does not own; the bench runs it as root.
//
//	tun2sock -tun NAME
package main

import (
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"net/netip"
	"os"
	"os/signal"
	"sync"
	"syscall"

	"gvisor.dev/gvisor/pkg/rawfile"
	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/adapters/gonet"
	"gvisor.dev/gvisor/pkg/tcpip/header"
	"gvisor.dev/gvisor/pkg/tcpip/link/fdbased"
	"gvisor.dev/gvisor/pkg/tcpip/link/tun"
	"gvisor.dev/gvisor/pkg/tcpip/network/ipv4"
	"gvisor.dev/gvisor/pkg/tcpip/stack"
	"gvisor.dev/gvisor/pkg/tcpip/transport/tcp"
	"gvisor.dev/gvisor/pkg/waiter"
)

const (
	nicID = 1
	// maxInFlight is tun2socks's cap on handshakes under way (2<<10);
	// further SYNs are ignored until one completes.
	maxInFlight = 2 << 10
)

func main() {
	name := flag.String("tun", "", "name of the TUN device to attach to (required)")
	flag.Parse()
	if *name == "" || flag.NArg() != 0 {
		flag.Usage()
		os.Exit(2)
	}
	log.SetPrefix("tun2sock: ")
	log.SetFlags(0)
	if err := run(*name); err != nil {
		log.Fatal(err)
	}
}

// run serves the TUN until SIGINT or SIGTERM.
func run(name string) error {
	s, err := newStack(name)
	if err != nil {
		return err
	}
	fwd := tcp.NewForwarder(s, 0, maxInFlight, forward)
	// As in tun2socks, the handler is in place before the NIC exists, so
	// that no packet reaches a stack without one.
	s.SetTransportProtocolHandler(tcp.ProtocolNumber, fwd.HandlePacket)
	if err := attach(s, name); err != nil {
		return err
	}
	log.Printf("forwarding TCP from %s", name)
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGINT, syscall.SIGTERM)
	<-sig
	// Connections in flight die with the process; the bench stops it only
	// after its tests.
	return nil
}

// newStack makes an IPv4/TCP stack with tun2socks's TCP defaults: gVisor's
// default buffer sizes (1 MiB, up to 4 MiB), Reno, Nagle off, no receive
// buffer moderation, SACK, RACK loss detection.
func newStack(name string) (*stack.Stack, error) {
	s := stack.New(stack.Options{
		NetworkProtocols:   []stack.NetworkProtocolFactory{ipv4.NewProtocol},
		TransportProtocols: []stack.TransportProtocolFactory{tcp.NewProtocol},
	})
	ttl := tcpip.DefaultTTLOption(64)
	if terr := s.SetNetworkProtocolOption(ipv4.ProtocolNumber, &ttl); terr != nil {
		return nil, fmt.Errorf("set TTL: %s", terr)
	}
	snd := tcpip.TCPSendBufferSizeRangeOption{Min: tcp.MinBufferSize, Default: tcp.DefaultSendBufferSize, Max: tcp.MaxBufferSize}
	rcv := tcpip.TCPReceiveBufferSizeRangeOption{Min: tcp.MinBufferSize, Default: tcp.DefaultReceiveBufferSize, Max: tcp.MaxBufferSize}
	cc := tcpip.CongestionControlOption("reno")
	delay := tcpip.TCPDelayEnabled(false)
	moderate := tcpip.TCPModerateReceiveBufferOption(false)
	sack := tcpip.TCPSACKEnabled(true)
	rack := tcpip.TCPRACKLossDetection
	for _, opt := range []tcpip.SettableTransportProtocolOption{&snd, &rcv, &cc, &delay, &moderate, &sack, &rack} {
		if terr := s.SetTransportProtocolOption(tcp.ProtocolNumber, opt); terr != nil {
			return nil, fmt.Errorf("set TCP option %T: %s", opt, terr)
		}
	}
	return s, nil
}

// attach opens the TUN as a plain fd and makes it the stack's only NIC,
// accepting and answering for every address.
func attach(s *stack.Stack, name string) error {
	fd, err := tun.Open(name)
	if err != nil {
		return fmt.Errorf("open TUN %s: %w", name, err)
	}
	mtu, err := rawfile.GetMTU(name)
	if err != nil {
		return fmt.Errorf("MTU of %s: %w", name, err)
	}
	ep, err := fdbased.New(&fdbased.Options{
		FDs: []int{fd},
		MTU: mtu,
		// A TUN is neither a socket nor a packet socket: readv in, writev
		// out (sendmmsg would fail on it).
		PacketDispatchMode: fdbased.Readv,
	})
	if err != nil {
		return fmt.Errorf("link endpoint on %s: %w", name, err)
	}
	if terr := s.CreateNIC(nicID, ep); terr != nil {
		return fmt.Errorf("create NIC: %s", terr)
	}
	// gVisor has no "any address" range: promiscuous mode delivers every
	// destination locally, spoofing lets replies leave from it.
	if terr := s.SetPromiscuousMode(nicID, true); terr != nil {
		return fmt.Errorf("promiscuous mode: %s", terr)
	}
	if terr := s.SetSpoofing(nicID, true); terr != nil {
		return fmt.Errorf("spoofing: %s", terr)
	}
	s.SetRouteTable([]tcpip.Route{{Destination: header.IPv4EmptySubnet, NIC: nicID}})
	return nil
}

// forward runs on a goroutine of its own for each new connection (the
// forwarder starts it): it completes the client's handshake, dials the
// destination the client asked for and relays. A failed dial closes the
// accepted connection, as tun2socks does.
func forward(r *tcp.ForwarderRequest) {
	id := r.ID()
	var wq waiter.Queue
	ep, terr := r.CreateEndpoint(&wq)
	if terr != nil {
		r.Complete(true) // RST, so no half-open connection lingers
		return
	}
	r.Complete(false)
	client := gonet.NewTCPConn(&wq, ep)
	defer client.Close()

	dst := netip.AddrPortFrom(netip.AddrFrom4(id.LocalAddress.As4()), id.LocalPort)
	c, err := net.Dial("tcp", dst.String())
	if err != nil {
		log.Printf("dial %s: %v", dst, err)
		return
	}
	server := c.(*net.TCPConn)
	defer server.Close()
	relay(client, server)
}

// halfCloser is a connection whose sending side closes on its own.
type halfCloser interface {
	net.Conn
	CloseWrite() error
}

// relay copies both ways until both directions ended. The end of one
// direction is passed on as a FIN (CloseWrite), so half-closed connections
// keep working; an error (a reset) in one direction closes both
// connections, which ends the other direction too.
func relay(a, b halfCloser) {
	var wg sync.WaitGroup
	wg.Add(2)
	pipe := func(dst, src halfCloser) {
		defer wg.Done()
		if _, err := io.Copy(dst, src); err != nil {
			a.Close()
			b.Close()
			return
		}
		_ = dst.CloseWrite()
	}
	go pipe(a, b)
	go pipe(b, a)
	wg.Wait()
}
