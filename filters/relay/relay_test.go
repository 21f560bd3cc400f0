package relay_test

import (
	"bytes"
	"io"
	"math/rand/v2"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/fwx-dev/fwx/filters"
	"github.com/fwx-dev/fwx/filters/relay"
	"github.com/fwx-dev/fwx/netstack/lab"
	"github.com/fwx-dev/fwx/netstack/lab/fwxlab"
	"github.com/fwx-dev/fwx/session"
)

// TestRegistered: the package registers the filter in filters.Default under
// its name, so `fwx run` knows "filter: relay".
func TestRegistered(t *testing.T) {
	e, ok := filters.Default.Lookup(relay.Name)
	if !ok {
		t.Fatalf("%q is not registered in filters.Default", relay.Name)
	}
	if _, ok := e.New().(*relay.Filter); !ok {
		t.Errorf("the registered constructor makes a %T", e.New())
	}
}

// TestInit: Init accepts a good Config and hooks the connect events of
// both directions; it rejects a bad buffer size.
func TestInit(t *testing.T) {
	for _, tt := range []struct {
		name    string
		size    int
		wantErr string
	}{
		{"default", 0, ""},
		{"one byte", 1, ""},
		{"largest", relay.MaxBufferSize, ""},
		{"negative", -1, "BufferSize -1"},
		{"too large", relay.MaxBufferSize + 1, "BufferSize 4194305"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			hooks, err := relay.New(relay.Config{BufferSize: tt.size}).Init()
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Errorf("Init: %v, want an error about %s", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			want := session.Hooks{Events: session.EventConnectTCP | session.EventAcceptedConnection}
			if hooks != want {
				t.Errorf("Init hooks = %+v, want %+v", hooks, want)
			}
		})
	}
}

// relayPolicy binds TCP port 7 to the relay, outbound (the client to the
// server) and inbound (the server to the client, published on fwx's
// outside port 7).
const relayPolicy = `
protocols:
  - {name: echo, transport: tcp, ports: [7], filter: relay}
  - {name: echo-in, transport: tcp, ports: [7], direction: inbound, filter: relay}
rules:
  - {name: echo-out, action: allow, from: [internal], to: [external], protocols: [echo]}
publish:
  - {name: echod, protocol: echo-in, listen: ":7", server: "10.0.0.2:7"}
`

// relayLab is fwx in the lab with the relay filter, logging to filterLog.
type relayLab struct {
	*fwxlab.Lab
	filterLog *fwxlab.LogBuffer
}

func newLab(t *testing.T, cfg relay.Config) *relayLab {
	t.Helper()
	filterLog := &fwxlab.LogBuffer{}
	cfg.Log = zerolog.New(filterLog).Level(zerolog.DebugLevel)
	reg := &filters.Registry{}
	reg.Register(relay.Name, func() session.Filter { return relay.New(cfg) })
	return &relayLab{fwxlab.New(t, fwxlab.Options{Policy: relayPolicy, Filters: reg}), filterLog}
}

// direction is one way through fwx: which lab host listens, which dials
// and where to, and the firewall log record the flow must produce.
type direction struct {
	name     string
	listener func(*relayLab) *lab.Host
	dialer   func(*relayLab) *lab.Host
	dst      netip.AddrPort
	record   map[string]string
}

var directions = []direction{
	{
		name:     "outbound",
		listener: func(l *relayLab) *lab.Host { return l.Server },
		dialer:   func(l *relayLab) *lab.Host { return l.Client },
		dst:      netip.AddrPortFrom(fwxlab.ServerAddr, 7),
		record:   map[string]string{"event": "allowed", "direction": "outbound", "rule": "echo-out", "path": "user"},
	},
	{
		name:     "inbound",
		listener: func(l *relayLab) *lab.Host { return l.Client },
		dialer:   func(l *relayLab) *lab.Host { return l.Server },
		dst:      netip.AddrPortFrom(fwxlab.FWOutside, 7),
		record:   map[string]string{"event": "allowed", "direction": "inbound", "rule": "echod", "path": "user"},
	},
}

// listen accepts connections on h's port 7 and runs handle on each, in
// its own goroutine, closing the connection after.
func listen(t *testing.T, h *lab.Host, handle func(net.Conn)) {
	t.Helper()
	ln, err := h.ListenTCP(7)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				handle(c)
			}()
		}
	}()
}

func closeWrite(t *testing.T, c net.Conn) {
	t.Helper()
	cw, ok := c.(interface{ CloseWrite() error })
	if !ok {
		t.Fatalf("%T has no CloseWrite", c)
	}
	if err := cw.CloseWrite(); err != nil {
		t.Fatalf("CloseWrite: %v", err)
	}
}

// TestRelayEcho: a few hundred KB pass through the relay and back byte for
// byte, in both directions through fwx; the flow took the user-mode path
// and the relay's data filter copied exactly those bytes.
func TestRelayEcho(t *testing.T) {
	const size = 300 << 10
	want := make([]byte, size)
	rand.NewChaCha8([32]byte{'r', 'e', 'l', 'a', 'y'}).Read(want)

	for _, d := range directions {
		t.Run(d.name, func(t *testing.T) {
			// A small copy buffer makes the relay loop many times.
			l := newLab(t, relay.Config{BufferSize: 4 << 10})
			listen(t, d.listener(l), func(c net.Conn) {
				io.Copy(c, c) // echo until the peer half-closes
				c.(interface{ CloseWrite() error }).CloseWrite()
			})
			c, err := d.dialer(l).DialTCP(lab.Context(t, 10*time.Second), d.dst)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			c.SetDeadline(time.Now().Add(20 * time.Second))

			// Write and read at once: the echo would stall on full
			// windows if the test wrote everything first.
			wrote := make(chan error, 1)
			go func() {
				_, err := c.Write(want)
				if err == nil {
					err = c.(interface{ CloseWrite() error }).CloseWrite()
				}
				wrote <- err
			}()
			got, err := io.ReadAll(c)
			if werr := <-wrote; werr != nil {
				t.Fatalf("write: %v", werr)
			}
			if err != nil {
				t.Fatalf("read after %d bytes: %v", len(got), err)
			}
			if !bytes.Equal(got, want) {
				t.Fatalf("echo: got %d bytes, want %d; first difference at %d", len(got), len(want), firstDiff(got, want))
			}

			l.Log.WaitRecords(t, 1, d.record)
			rec := l.filterLog.WaitRecords(t, 1, map[string]string{"message": "relay: connection ended"})[0]
			for _, k := range []string{"client_to_server", "server_to_client"} {
				if n, _ := rec[k].(float64); n != size {
					t.Errorf("relay log %s = %v, want %d (record %v)", k, rec[k], size, rec)
				}
			}
			if rec["error"] != nil {
				t.Errorf("relay log error = %v, want none", rec["error"])
			}
		})
	}
}

// TestRelayHalfClose: after the dialer half-closes, the listener reads
// EOF and can still send; the dialer reads what it sent, then EOF.
func TestRelayHalfClose(t *testing.T) {
	const request, reply = "request, then FIN", "reply after the request's FIN"
	for _, d := range directions {
		t.Run(d.name, func(t *testing.T) {
			l := newLab(t, relay.Config{})
			heard := make(chan string, 1)
			listen(t, d.listener(l), func(c net.Conn) {
				c.SetDeadline(time.Now().Add(20 * time.Second))
				b, err := io.ReadAll(c) // returns at the dialer's FIN
				if err != nil {
					heard <- "error: " + err.Error()
					return
				}
				heard <- string(b)
				// The other direction is still open.
				io.WriteString(c, reply)
			})
			c, err := d.dialer(l).DialTCP(lab.Context(t, 10*time.Second), d.dst)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			c.SetDeadline(time.Now().Add(20 * time.Second))
			if _, err := io.WriteString(c, request); err != nil {
				t.Fatal(err)
			}
			closeWrite(t, c)

			select {
			case got := <-heard:
				if got != request {
					t.Fatalf("the listener read %q until EOF, want %q", got, request)
				}
			case <-time.After(20 * time.Second):
				t.Fatal("the listener saw no EOF after the dialer's CloseWrite")
			}
			got, err := io.ReadAll(c)
			if err != nil {
				t.Fatalf("read after half-close: %v (got %q)", err, got)
			}
			if string(got) != reply {
				t.Errorf("the dialer read %q after its half-close, want %q", got, reply)
			}
			l.Log.WaitRecords(t, 1, d.record)
		})
	}
}

func firstDiff(a, b []byte) int {
	for i := range min(len(a), len(b)) {
		if a[i] != b[i] {
			return i
		}
	}
	return min(len(a), len(b))
}
