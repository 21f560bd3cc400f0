package fwx_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log"
	"net/netip"
	"os"
	"os/signal"
	"sync"

	"github.com/rs/zerolog"

	"github.com/fwx-dev/fwx"
	"github.com/fwx-dev/fwx/filters"
	"github.com/fwx-dev/fwx/netstack/hostnet"
	"github.com/fwx-dev/fwx/netstack/lab"
	"github.com/fwx-dev/fwx/netstack/vnettun"
	"github.com/fwx-dev/fwx/session"
	"github.com/fwx-dev/fwx/session/policy"
	"github.com/fwx-dev/fwx/session/stream"
)

// network is the examples' setting: a client behind fwx and a server in
// front of it, on in-memory links (netstack/lab), so no root and no TUN.
type network struct {
	*lab.Network
	inside, outside *lab.Segment
	client, server  *lab.Host
}

func newNetwork() *network {
	n := &network{Network: lab.New(lab.Options{Seed: 1})}
	n.inside, n.outside = n.NewSegment("inside"), n.NewSegment("outside")
	var err error
	if n.client, err = n.inside.AddHost("client", netip.MustParsePrefix("10.0.0.2/24"), netip.MustParseAddr("10.0.0.1")); err != nil {
		log.Fatal(err)
	}
	if n.server, err = n.outside.AddHost("server", netip.MustParsePrefix("198.51.100.2/24"), netip.MustParseAddr("198.51.100.1")); err != nil {
		log.Fatal(err)
	}
	return n
}

// config is fwx in router mode between the two segments' devices.
func (n *network) config() fwx.Config {
	return fwx.Config{
		Inside:      n.inside.Device(),
		InsideAddr:  netip.MustParsePrefix("10.0.0.1/24"),
		Outside:     n.outside.Device(),
		OutsideAddr: netip.MustParsePrefix("198.51.100.1/24"),
		Seed:        1, // the same external ports every run
	}
}

// start runs fw until the returned function is called; that function
// returns once Run has returned, which closes both devices.
func start(fw *fwx.Firewall) (stop func()) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- fw.Run(ctx) }()
	return func() {
		cancel()
		if err := <-done; err != nil {
			log.Fatal(err)
		}
	}
}

// echo serves one connection on the server's port: it sends back what it
// reads until the client closes.
func echo(srv *lab.Host, port uint16) {
	ln, err := srv.ListenTCP(port)
	if err != nil {
		log.Fatal(err)
	}
	go func() {
		defer ln.Close()
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		io.Copy(c, c)
	}()
}

// Router mode with in-memory devices: fwx between a client and a server,
// the server seeing fwx's outside address.
func Example() {
	n := newNetwork()
	defer n.Close()
	fw, err := fwx.New(n.config()) // the built-in default policy: out yes, in no
	if err != nil {
		log.Fatal(err)
	}
	stop := start(fw)
	defer stop()

	ln, err := n.server.ListenTCP(80)
	if err != nil {
		log.Fatal(err)
	}
	defer ln.Close()
	c, err := n.client.DialTCP(context.Background(), netip.MustParseAddrPort("198.51.100.2:80"))
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()
	sc, err := ln.Accept()
	if err != nil {
		log.Fatal(err)
	}
	defer sc.Close()
	from := netip.MustParseAddrPort(sc.RemoteAddr().String())
	fmt.Println("the client connects from", c.LocalAddr())
	fmt.Println("the server sees", from.Addr())
	fmt.Println("live flows:", fw.Flows())
	// Output:
	// the client connects from 10.0.0.2:35375
	// the server sees 198.51.100.1
	// live flows: 1
}

// Host mode, the laptop case: the inside is a TUN the clients' routes lead
// into, the outside the host's own sockets, bound to the address of the
// interface of its default route. Creating a TUN needs CAP_NET_ADMIN (or
// a persistent TUN made for the user), so this example is compiled, not
// run; TestHostMode runs fwx in host mode in a network namespace of its
// own, with the lab's clients on an in-memory inside.
func Example_hostMode() {
	inside, err := vnettun.Create("fwx0", 1500) // then: ip addr add 10.0.0.2/24 dev fwx0; ip link set fwx0 up (the host is a client; 10.0.0.1 is fwx)
	if err != nil {
		log.Fatal(err)
	}
	dev, addr, err := hostnet.Uplink("")
	if err != nil {
		inside.Close()
		log.Fatal(err)
	}
	host, err := hostnet.New(hostnet.Options{Addr: addr, Device: dev})
	if err != nil {
		inside.Close()
		log.Fatal(err)
	}
	fw, err := fwx.New(fwx.Config{
		Inside:     inside,
		InsideAddr: netip.MustParsePrefix("10.0.0.1/24"),
		Host:       host, // OutsideAddr: the host's address, addr
	})
	if err != nil {
		inside.Close() // New failed: the devices are still ours to close
		host.Close()
		log.Fatal(err)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	if err := fw.Run(ctx); err != nil { // Run closes both devices
		log.Fatal(err)
	}
}

// greeter is a filter for the example below: it puts the connections of
// its protocols on the user-mode path and greets the client before the
// server says anything.
type greeter struct{}

func (greeter) Init() (session.Hooks, error) {
	return session.Hooks{Events: session.EventConnectTCP}, nil
}

func (greeter) AttachToSession(*session.Session) (session.SessionFilter, error) {
	return greeterSession{}, nil
}

func (greeter) Shutdown() {}

type greeterSession struct{}

func (greeterSession) HandleEvent(ev *session.Event) error {
	if ev.Type == session.EventConnectTCP {
		return ev.Conn.AttachDataFilter(greeting{}, session.PriorityMiddle)
	}
	return nil
}

func (greeterSession) Detach() {}

// greeting is greeter's data filter: a line to the client, then the
// bytes of both directions unchanged.
type greeting struct{}

func (greeting) Serve(ctx context.Context, c *session.Connection, internal, external session.Socket) error {
	if _, err := io.WriteString(internal, "hello from fwx\n"); err != nil {
		internal.Abort()
		external.Abort()
		return err
	}
	_, _, err := stream.Relay(ctx, internal, external, 0)
	return err
}

// A custom filter: registered under a name, turned on by the policy's
// protocol that names it.
func Example_filter() {
	n := newNetwork()
	defer n.Close()
	reg := &filters.Registry{}
	reg.Register("greeter", func() session.Filter { return greeter{} })
	pol, err := policy.Parse("example", []byte(`
protocols:
  - {name: echo, transport: tcp, ports: [7], filter: greeter}
rules:
  - {name: echo-out, action: allow, from: [internal], to: [external], protocols: [echo]}
`))
	if err != nil {
		log.Fatal(err)
	}
	cfg := n.config()
	cfg.Policy, cfg.Filters = pol, reg
	fw, err := fwx.New(cfg)
	if err != nil {
		log.Fatal(err)
	}
	stop := start(fw)
	defer stop()

	echo(n.server, 7)
	c, err := n.client.DialTCP(context.Background(), netip.MustParseAddrPort("198.51.100.2:7"))
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()
	fmt.Fprintln(c, "ping")
	r := bufio.NewReader(c)
	for range 2 {
		line, err := r.ReadString('\n')
		if err != nil {
			log.Fatal(err)
		}
		fmt.Print(line)
	}
	// Output:
	// hello from fwx
	// ping
}

// syncBuffer is a bytes.Buffer that fwx's goroutines may write while
// another reads.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) Bytes() []byte {
	b.mu.Lock()
	defer b.mu.Unlock()
	return bytes.Clone(b.buf.Bytes())
}

// Reading the flow log: one JSON record per flow allowed, denied and
// ended. Run ends every flow before it returns, so once it has, each
// allowed flow has its ended record too.
func Example_flowLog() {
	n := newNetwork()
	defer n.Close()
	var records syncBuffer
	cfg := n.config()
	cfg.FirewallLog = zerolog.New(&records)
	fw, err := fwx.New(cfg)
	if err != nil {
		log.Fatal(err)
	}
	stop := start(fw)

	echo(n.server, 7)
	c, err := n.client.DialTCP(context.Background(), netip.MustParseAddrPort("198.51.100.2:7"))
	if err != nil {
		log.Fatal(err)
	}
	fmt.Fprintln(c, "ping")
	if _, err := bufio.NewReader(c).ReadString('\n'); err != nil {
		log.Fatal(err)
	}
	c.Close()
	stop()

	dec := json.NewDecoder(bytes.NewReader(records.Bytes()))
	for {
		var rec struct {
			Event, Protocol, Client, Destination string
			Source                               string `json:"translated_source"`
			Rule, Path                           string
		}
		if err := dec.Decode(&rec); err == io.EOF {
			break
		} else if err != nil {
			log.Fatal(err)
		}
		fmt.Println(rec.Event, rec.Protocol, rec.Client, "->", rec.Destination, "as", rec.Source, "rule", rec.Rule, "path", rec.Path)
	}
	// Output:
	// allowed tcp 10.0.0.2:35375 -> 198.51.100.2:7 as 198.51.100.1:35375 rule default-outbound path fast
	// ended tcp 10.0.0.2:35375 -> 198.51.100.2:7 as 198.51.100.1:35375 rule default-outbound path fast
}
