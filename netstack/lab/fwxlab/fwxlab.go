// Package fwxlab runs fwx in the in-process lab ([lab]) for tests: a
// client and a second client on the inside, a server and a second server on
// the outside, fwx between them with a given policy and filters, and a
// manual clock. Filter authors test their filters with it, embedders the
// code they put around fwx, and fwx tests itself with it. No root, no real
// time for fwx's timers, no goroutine left behind.
//
//	l := fwxlab.New(t, fwxlab.Options{Policy: yaml, Filters: reg})
//	conn, err := l.Client.DialTCP(ctx, netip.AddrPortFrom(fwxlab.ServerAddr, 21))
//
// The topology:
//
//	client  10.0.0.2 ┐                               ┌ server  198.51.100.2
//	client2 10.0.0.3 ├─ inside ─ fwx ─ outside ──────┤ server2 198.51.100.3
//	                    10.0.0.1       198.51.100.1  ┘
//
// With Options.IPv6 every host and fwx have an IPv6 address too: fd00::N
// inside, 2001:db8:100::N outside, N as in the IPv4 address.
package fwxlab

import (
	"bytes"
	"context"
	"encoding/json"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/fwx-dev/fwx"
	"github.com/fwx-dev/fwx/filters"
	"github.com/fwx-dev/fwx/netstack/hostnet"
	"github.com/fwx-dev/fwx/netstack/lab"
	"github.com/fwx-dev/fwx/session"
	"github.com/fwx-dev/fwx/session/policy"
)

// The lab's addresses.
var (
	InsidePrefix  = netip.MustParsePrefix("10.0.0.1/24")     // fwx's inside address
	OutsidePrefix = netip.MustParsePrefix("198.51.100.1/24") // fwx's outside address
	ClientPrefix  = netip.MustParsePrefix("10.0.0.2/24")
	Client2Prefix = netip.MustParsePrefix("10.0.0.3/24")
	ServerPrefix  = netip.MustParsePrefix("198.51.100.2/24")
	Server2Prefix = netip.MustParsePrefix("198.51.100.3/24")

	FWInside   = InsidePrefix.Addr()
	FWOutside  = OutsidePrefix.Addr()
	ClientAddr = ClientPrefix.Addr()
	ServerAddr = ServerPrefix.Addr()
	Server2    = Server2Prefix.Addr()
)

// The lab's IPv6 addresses, with Options.IPv6.
var (
	InsidePrefix6  = netip.MustParsePrefix("fd00::1/64")
	OutsidePrefix6 = netip.MustParsePrefix("2001:db8:100::1/64")
	ClientPrefix6  = netip.MustParsePrefix("fd00::2/64")
	Client2Prefix6 = netip.MustParsePrefix("fd00::3/64")
	ServerPrefix6  = netip.MustParsePrefix("2001:db8:100::2/64")
	Server2Prefix6 = netip.MustParsePrefix("2001:db8:100::3/64")

	FWInside6   = InsidePrefix6.Addr()
	FWOutside6  = OutsidePrefix6.Addr()
	ClientAddr6 = ClientPrefix6.Addr()
	ServerAddr6 = ServerPrefix6.Addr()
	Server26    = Server2Prefix6.Addr()
)

// Start is the lab clock's initial time.
var Start = time.Date(2026, 11, 23, 9, 0, 0, 0, time.UTC)

// Options configures a [Lab].
type Options struct {
	// Policy is the policy as YAML; empty means the built-in default.
	Policy string
	// Filters are the filters fwx may run; nil means none.
	Filters *filters.Registry
	// Configure, if set, adjusts fwx's configuration before it starts.
	Configure func(*fwx.Config)
	// Seed seeds the hosts' and fwx's random choices; zero means 1.
	Seed int64
	// Deterministic puts the hosts on the lab's Clock too
	// (lab.Options.Clock): with one Seed, a scenario whose steps wait for
	// one another puts the same bytes on both links every run (record
	// them with l.Inside.Pcap and l.Outside.Pcap). The hosts' TCP timers
	// then fire only when the test advances the clock. fwx's own netstacks
	// (the user-mode path) still run on real time.
	Deterministic bool
	// IPv6 makes the lab dual stack: the hosts and fwx get their IPv6
	// addresses too.
	IPv6 bool
	// Host runs fwx in host mode: its outside is this process's own
	// network stack, its sockets bound to HostAddr (and HostAddr6 with
	// IPv6). Run such a test in a namespace of its own (InOwnNetns). The
	// outside segment and its servers stay, apart from fwx.
	Host bool
}

// Lab is fwx running between virtual hosts.
type Lab struct {
	Net             *lab.Network
	Inside, Outside *lab.Segment
	Client, Client2 *lab.Host
	Server, Server2 *lab.Host
	Clock           *lab.ManualClock
	FW              *fwx.Firewall
	// Log holds fwx's firewall log.
	Log *LogBuffer

	stop  func() error  // stops fwx once; see Stop
	quiet time.Duration // fwx's DenialQuiet
}

// New starts fwx in a new lab and stops everything when the test ends,
// failing the test if goroutines are left behind.
func New(tb testing.TB, opts Options) *Lab {
	tb.Helper()
	lab.CheckGoroutines(tb) // registered first: it runs after fwx and the hosts stopped
	pol := policy.Default()
	if opts.Policy != "" {
		var err error
		if pol, err = policy.Parse("test-policy", []byte(opts.Policy)); err != nil {
			tb.Fatal(err)
		}
	}
	reg := opts.Filters
	if reg == nil {
		reg = &filters.Registry{}
	}
	seed := opts.Seed
	if seed == 0 {
		seed = 1
	}
	l := &Lab{Clock: lab.NewManualClock(Start), Log: &LogBuffer{}}
	labOpts := lab.Options{Seed: seed, IPv6: opts.IPv6}
	if opts.Deterministic {
		labOpts.Clock = l.Clock
	}
	l.Net = lab.New(labOpts)
	l.Inside = l.Net.NewSegment("inside")
	l.Outside = l.Net.NewSegment("outside")
	l.Client = mustHost(tb, l.Inside, "client", ClientPrefix, FWInside)
	l.Client2 = mustHost(tb, l.Inside, "client2", Client2Prefix, FWInside)
	l.Server = mustHost(tb, l.Outside, "server", ServerPrefix, FWOutside)
	l.Server2 = mustHost(tb, l.Outside, "server2", Server2Prefix, FWOutside)
	if opts.IPv6 {
		for _, h := range []struct {
			h *lab.Host
			p netip.Prefix
		}{{l.Client, ClientPrefix6}, {l.Client2, Client2Prefix6}, {l.Server, ServerPrefix6}, {l.Server2, Server2Prefix6}} {
			if err := h.h.AddAddress(h.p); err != nil {
				tb.Fatal(err)
			}
		}
	}
	cfg := fwx.Config{
		Inside:        l.Inside.Device(),
		Outside:       l.Outside.Device(),
		InsideAddr:    InsidePrefix,
		OutsideAddr:   OutsidePrefix,
		Policy:        pol,
		Filters:       reg,
		Clock:         l.Clock,
		Seed:          uint64(seed),
		SweepInterval: time.Hour, // tests sweep by hand with FW.Expire
		FirewallLog:   zerolog.New(l.Log),
	}
	if opts.IPv6 {
		cfg.InsideAddrs = []netip.Prefix{InsidePrefix6}
		cfg.OutsideAddrs = []netip.Prefix{OutsidePrefix6}
	}
	if opts.Host {
		ho := hostnet.Options{Addr: HostAddr}
		if opts.IPv6 {
			ho.Addr6 = HostAddr6
		}
		h, err := hostnet.New(ho)
		if err != nil {
			l.Net.Close()
			tb.Fatal(err)
		}
		cfg.Outside, cfg.OutsideAddr, cfg.OutsideAddrs, cfg.Host = nil, netip.Prefix{}, nil, h
	}
	if opts.Configure != nil {
		opts.Configure(&cfg)
	}
	l.quiet = cfg.DenialQuiet
	if l.quiet <= 0 {
		l.quiet = 30 * time.Second // fwx's default
	}
	fw, err := fwx.New(cfg)
	if err != nil {
		if cfg.Host != nil {
			cfg.Host.Close()
		}
		l.Net.Close()
		tb.Fatal(err)
	}
	l.FW = fw
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- fw.Run(ctx) }()
	l.stop = sync.OnceValue(func() error {
		cancel()
		return <-done
	})
	tb.Cleanup(func() {
		if err := l.stop(); err != nil {
			tb.Errorf("fwx Run: %v", err)
		}
		l.Net.Close()
		if tb.Failed() {
			tb.Logf("firewall log:\n%s", l.Log.String())
		}
	})
	return l
}

// Stop stops fwx as a SIGTERM would, and returns what Run returned. The
// lab's hosts stay until the test ends; fwx's devices are closed.
func (l *Lab) Stop() error { return l.stop() }

// Session returns the filter SDK session of the client.
func (l *Lab) Session(tb testing.TB) *session.Session {
	tb.Helper()
	s := l.FW.Session(ClientAddr)
	if s == nil {
		tb.Fatal("no session")
	}
	return s
}

// WaitDenied waits until the firewall log holds n records of denied flows
// matching match. A denied flow's record is written once the flow has not
// been retried for fwx's DenialQuiet, so each round moves the lab clock
// past that and sweeps ([fwx.Firewall.Expire]).
func (l *Lab) WaitDenied(tb testing.TB, n int, match map[string]string) []map[string]any {
	tb.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		l.Clock.Advance(l.quiet + time.Second)
		l.FW.Expire()
		recs := l.Log.Records(tb, match)
		if len(recs) >= n || time.Now().After(deadline) {
			if len(recs) < n {
				tb.Fatalf("%d log records match %v, want %d", len(recs), match, n)
			}
			return recs
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// Registry returns a registry holding one filter under name.
func Registry(name string, f session.Filter) *filters.Registry {
	reg := &filters.Registry{}
	reg.Register(name, func() session.Filter { return f })
	return reg
}

func mustHost(tb testing.TB, s *lab.Segment, name string, addr netip.Prefix, gw netip.Addr) *lab.Host {
	tb.Helper()
	h, err := s.AddHost(name, addr, gw)
	if err != nil {
		tb.Fatal(err)
	}
	return h
}

// LogBuffer collects fwx's firewall log; it is safe for concurrent use.
type LogBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

// Write implements io.Writer.
func (l *LogBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(p)
}

// String returns the log so far.
func (l *LogBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}

// Records returns the log records whose string fields include all of
// match.
func (l *LogBuffer) Records(tb testing.TB, match map[string]string) []map[string]any {
	tb.Helper()
	var out []map[string]any
	for _, line := range strings.Split(strings.TrimSpace(l.String()), "\n") {
		if line == "" {
			continue
		}
		var rec map[string]any
		if err := json.Unmarshal([]byte(line), &rec); err != nil {
			tb.Fatalf("firewall log line is not JSON: %q", line)
		}
		ok := true
		for k, v := range match {
			if s, _ := rec[k].(string); s != v {
				ok = false
			}
		}
		if ok {
			out = append(out, rec)
		}
	}
	return out
}

// WaitRecords waits until the log holds n records matching match.
func (l *LogBuffer) WaitRecords(tb testing.TB, n int, match map[string]string) []map[string]any {
	tb.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		recs := l.Records(tb, match)
		if len(recs) >= n || time.Now().After(deadline) {
			if len(recs) < n {
				tb.Fatalf("%d log records match %v, want %d", len(recs), match, n)
			}
			return recs
		}
		time.Sleep(5 * time.Millisecond)
	}
}
