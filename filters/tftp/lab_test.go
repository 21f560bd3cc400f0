package tftp_test

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/fwx-dev/fwx/filters"
	"github.com/fwx-dev/fwx/filters/tftp"
	"github.com/fwx-dev/fwx/netstack/lab"
	"github.com/fwx-dev/fwx/netstack/lab/fwxlab"
)

// The lab's TFTP peers: a server and a client written for these tests
// (RFC 1350 with blksize, tsize and windowsize), over the lab hosts'
// sockets. The server answers each request from a port of its own, as
// every TFTP server does.

// tftpPolicy turns the filter on for TFTP and nothing else, under the
// strictest filtering, where TFTP cannot work without it.
const tftpPolicy = `
protocols:
  - {name: tftp, transport: udp, ports: [69], filter: tftp}
  - {name: tftp-in, transport: udp, ports: [69], direction: inbound, filter: tftp}
rules:
  - {name: tftp-out, action: allow, from: [internal], to: [external], protocols: [tftp]}
publish:
  - {name: tftpd, protocol: tftp-in, server: "10.0.0.2:69"}
options:
  filtering: address-and-port-dependent
`

// newLab starts fwx with the TFTP filter; the filter's timers run on the
// lab's manual clock, fwx's.
func newLab(t *testing.T, policy string) *fwxlab.Lab {
	t.Helper()
	reg := &filters.Registry{}
	tftp.Register(reg)
	return fwxlab.New(t, fwxlab.Options{Policy: policy, Filters: reg})
}

// wait is how long a lab peer waits for a packet: no loss in the lab, so a
// wait that ends means the packet is not coming.
const wait = 2 * time.Second

// server is a TFTP server on a lab host.
type server struct {
	t    *testing.T
	host *lab.Host
	mu   sync.Mutex
	// files are served by name; uploads land there.
	files map[string][]byte
	// requests counts the requests received.
	requests int
	// errorAt, if set, makes read transfers send an ERROR instead of
	// that block.
	errorAt uint16
	// stall, if set, makes read transfers stop after that block.
	stall uint16
	// tids receives the endpoint each transfer runs from.
	tids chan netip.AddrPort
	// done receives each transfer's outcome.
	done chan error
}

func serve(t *testing.T, h *lab.Host) *server {
	t.Helper()
	c, err := h.ListenUDP(69)
	if err != nil {
		t.Fatal(err)
	}
	s := &server{t: t, host: h, files: map[string][]byte{}, tids: make(chan netip.AddrPort, 16), done: make(chan error, 16)}
	t.Cleanup(func() { c.Close() })
	go func() {
		buf := make([]byte, 1024)
		for {
			n, from, err := c.ReadFrom(buf)
			if err != nil {
				return
			}
			req, err := tftp.ParseRequest(buf[:n])
			if err != nil {
				continue
			}
			s.mu.Lock()
			s.requests++
			s.mu.Unlock()
			go s.transfer(req, from.(*net.UDPAddr).AddrPort())
		}
	}()
	return s
}

func (s *server) file(name string) []byte {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.files[name]
}

// transfer runs one transfer from a new port.
func (s *server) transfer(req tftp.Request, client netip.AddrPort) {
	c, err := s.host.ListenUDP(0)
	if err != nil {
		s.done <- err
		return
	}
	s.tids <- netip.AddrPortFrom(s.host.Addr(), c.LocalAddr().(*net.UDPAddr).AddrPort().Port())
	p := peer{c: c, remote: client, blksize: tftp.DefaultBlockSize, window: 1}
	oack := p.negotiate(req.Options)
	if req.Op == tftp.OpRRQ {
		err = p.send(s.file(req.Filename), oack, s.errorAt, s.stall)
	} else {
		var data []byte
		if data, err = p.receive(oack, true); err == nil {
			s.mu.Lock()
			s.files[req.Filename] = data
			s.mu.Unlock()
		}
	}
	c.Close() // before the outcome: a test may take the port again
	s.done <- err
}

// peer is one side of a transfer.
type peer struct {
	c       net.PacketConn
	remote  netip.AddrPort // the other side's TID; unset until it answers
	blksize int
	window  int
}

// negotiate takes the options a server supports and returns the OACK to
// send, or nil.
func (p *peer) negotiate(opts []tftp.Option) []byte {
	if len(opts) == 0 {
		return nil
	}
	oack := []byte{0, byte(tftp.OpOACK)}
	add := func(name, value string) { oack = append(append(append(append(oack, name...), 0), value...), 0) }
	if n, ok := tftp.Blksize(opts); ok {
		p.blksize = n
		add("blksize", strconv.Itoa(n))
	}
	if n, ok := tftp.Windowsize(opts); ok {
		p.window = n
		add("windowsize", strconv.Itoa(n))
	}
	for _, o := range opts {
		if o.Name == "tsize" || o.Name == "timeout" {
			add(o.Name, o.Value)
		}
	}
	return oack
}

func (p *peer) write(b []byte) error {
	_, err := p.c.WriteTo(b, net.UDPAddrFromAddrPort(p.remote))
	return err
}

// read returns the next packet from the other side (learning its TID from
// the first), ignoring others.
func (p *peer) read() ([]byte, error) {
	buf := make([]byte, tftp.MaxPacket)
	for {
		p.c.SetReadDeadline(time.Now().Add(wait))
		n, from, err := p.c.ReadFrom(buf)
		if err != nil {
			return nil, err
		}
		src := from.(*net.UDPAddr).AddrPort()
		if p.remote.Port() == 0 || p.remote.Port() == 69 {
			p.remote = src
		}
		if src != p.remote {
			continue
		}
		if tftp.OpcodeOf(buf[:n]) == tftp.OpERROR {
			return nil, fmt.Errorf("ERROR %q", buf[4:n])
		}
		return bytes.Clone(buf[:n]), nil
	}
}

func block(op tftp.Opcode, n uint16, data []byte) []byte {
	b := binary.BigEndian.AppendUint16(nil, uint16(op))
	return append(binary.BigEndian.AppendUint16(b, n), data...)
}

// send sends data in blocks, a window at a time, after the OACK if any
// (which the receiver acknowledges with block 0).
func (p *peer) send(data, oack []byte, errorAt, stall uint16) error {
	if oack != nil {
		if err := p.write(oack); err != nil {
			return err
		}
		if err := p.ack(0); err != nil {
			return err
		}
	}
	blocks := len(data)/p.blksize + 1
	for first := 1; first <= blocks; first += p.window {
		last := min(first+p.window-1, blocks)
		for i := first; i <= last; i++ {
			n := uint16(i)
			switch {
			case n == errorAt:
				return p.write(tftp.AppendError(nil, 0, "disk on fire"))
			case stall != 0 && n > stall:
				return errors.New("stalled")
			}
			chunk := data[(i-1)*p.blksize : min(i*p.blksize, len(data))]
			if err := p.write(block(tftp.OpDATA, n, chunk)); err != nil {
				return err
			}
		}
		if err := p.ack(uint16(last)); err != nil {
			return err
		}
	}
	return nil
}

// ack waits for the ACK of block n.
func (p *peer) ack(n uint16) error {
	for {
		b, err := p.read()
		if err != nil {
			return err
		}
		if got, ok := tftp.Block(b); ok && tftp.OpcodeOf(b) == tftp.OpACK && got == n {
			return nil
		}
	}
}

// receive takes DATA blocks until a short one, acknowledging each window;
// a server first acknowledges the request (block 0, or its OACK).
func (p *peer) receive(oack []byte, server bool) ([]byte, error) {
	if server {
		first := block(tftp.OpACK, 0, nil)
		if oack != nil {
			first = oack
		}
		if err := p.write(first); err != nil {
			return nil, err
		}
	}
	var data []byte
	next := uint16(1)
	for {
		b, err := p.read()
		if err != nil {
			return nil, err
		}
		if tftp.OpcodeOf(b) == tftp.OpOACK {
			opts, _ := tftp.ParseOACK(b)
			if n, ok := tftp.Blksize(opts); ok {
				p.blksize = n
			}
			if n, ok := tftp.Windowsize(opts); ok {
				p.window = n
			}
			if err := p.write(block(tftp.OpACK, 0, nil)); err != nil {
				return nil, err
			}
			continue
		}
		n, ok := tftp.Block(b)
		if tftp.OpcodeOf(b) != tftp.OpDATA || !ok || n != next {
			return nil, fmt.Errorf("unexpected %v %d, want DATA %d", tftp.OpcodeOf(b), n, next)
		}
		data = append(data, b[4:]...)
		last := len(b)-4 < p.blksize
		if last || int(next)%p.window == 0 {
			if err := p.write(block(tftp.OpACK, n, nil)); err != nil {
				return nil, err
			}
		}
		if last {
			return data, nil
		}
		next++
	}
}

// client is a TFTP client on a lab host: one socket, like tftp-hpa's.
type client struct {
	t *testing.T
	c net.PacketConn
}

func newClient(t *testing.T, h *lab.Host) *client {
	t.Helper()
	c, err := h.ListenUDP(0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return &client{t, c}
}

func request(op tftp.Opcode, name string, opts ...tftp.Option) []byte {
	return tftp.AppendRequest(nil, tftp.Request{Op: op, Filename: name, Mode: "octet", Options: opts})
}

// get reads a file from srv.
func (c *client) get(srv netip.AddrPort, name string, opts ...tftp.Option) ([]byte, error) {
	p := &peer{c: c.c, remote: srv, blksize: tftp.DefaultBlockSize, window: 1}
	if err := p.write(request(tftp.OpRRQ, name, opts...)); err != nil {
		return nil, err
	}
	return p.receive(nil, false)
}

// put writes a file to srv.
func (c *client) put(srv netip.AddrPort, name string, data []byte, opts ...tftp.Option) error {
	p := &peer{c: c.c, remote: srv, blksize: tftp.DefaultBlockSize, window: 1}
	if err := p.write(request(tftp.OpWRQ, name, opts...)); err != nil {
		return err
	}
	b, err := p.read()
	if err != nil {
		return err
	}
	switch tftp.OpcodeOf(b) {
	case tftp.OpOACK:
		opts, _ := tftp.ParseOACK(b)
		if n, ok := tftp.Blksize(opts); ok {
			p.blksize = n
		}
		if n, ok := tftp.Windowsize(opts); ok {
			p.window = n
		}
	case tftp.OpACK:
	default:
		return fmt.Errorf("answer %v to WRQ", tftp.OpcodeOf(b))
	}
	return p.send(data, nil, 0, 0)
}

// port returns the client's port.
func (c *client) port() uint16 { return c.c.LocalAddr().(*net.UDPAddr).AddrPort().Port() }

// external returns the client's outside endpoint: where its requests
// left fwx from, as the firewall log says.
func (c *client) external(t *testing.T, l *fwxlab.Lab) netip.AddrPort {
	t.Helper()
	client := netip.AddrPortFrom(fwxlab.ClientAddr, c.port()).String()
	recs := l.Log.WaitRecords(t, 1, map[string]string{"event": "allowed", "direction": "outbound", "client": client})
	return netip.MustParseAddrPort(recs[0]["translated_source"].(string))
}
