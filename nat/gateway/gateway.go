// Package gateway moves packets between fwx's devices through the NAT
// table, the user-mode path and host mode. It is fwx's datapath: the
// forward loops (one per device queue), fwx's own answers (echo replies,
// RSTs, ICMP errors), fragments, the user-mode path's netstacks and
// datagrams, host mode's sockets, the policy decider in front of the
// table, server publishing, the firewall log and the flow table's keeping
// across restarts.
//
// The root package fwx is its one user: it checks a configuration, turns
// on filters, and gives embedders the API; a Gateway is everything that
// runs.
package gateway

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rs/zerolog"
	"golang.zx2c4.com/wireguard/tun"

	"github.com/fwx-dev/fwx/nat"
	"github.com/fwx-dev/fwx/netstack/hostnet"
	"github.com/fwx-dev/fwx/session"
	"github.com/fwx-dev/fwx/session/policy"
)

// Config is what a Gateway is built from: its devices and addresses, the
// policy, the clock and the logs. Every field but PinholeTimeout,
// SweepInterval, StateFile, DenialQuiet and the logs is required; the root
// package's New has checked and completed them.
type Config struct {
	// Inside and Outside are the queues of the inside and outside
	// devices, the device itself first (one entry for a device of one
	// queue). In host mode, Outside is the host, which is a device too.
	Inside, Outside []tun.Device
	// Host is the host's network stack in host mode, else nil.
	Host *hostnet.Host
	// InsideAddrs and OutsideAddrs are fwx's addresses on each side; fwx
	// answers from the first of a family.
	InsideAddrs, OutsideAddrs []netip.Prefix
	// Policy is the policy in force at the start ([Gateway.SetPolicy]
	// replaces it).
	Policy *policy.Policy
	// Clock is the time of flow timers and the log.
	Clock session.Clock
	// Seed seeds the choice of outside ports and the netstacks.
	Seed uint64
	// PinholeTimeout is the sessions' (session.Config.PinholeTimeout).
	PinholeTimeout time.Duration
	// SweepInterval is how often Run reclaims expired flows. Zero means 5
	// seconds.
	SweepInterval time.Duration
	// StateFile, if set, keeps the flow table across a restart (see
	// [Gateway.Restore]).
	StateFile string
	// Log receives diagnostics; FirewallLog the flow records (see
	// flowLog), after DenialQuiet without a retry for a denied flow.
	Log, FirewallLog zerolog.Logger
	DenialQuiet      time.Duration
}

// A Gateway is fwx's datapath between two devices. The NAT table, the
// filters' sessions and the user-mode path refer to one another (the table
// asks the decider, which asks the sessions' filters; the sessions dial
// through the user path, which looks flows up in the table and hands the
// sessions their connections): [New] builds them in that order and ties
// the knot before any packet moves. Each part holds what it uses, nothing
// reaches back through the Gateway.
type Gateway struct {
	log                       zerolog.Logger
	clock                     session.Clock
	host                      *hostnet.Host
	inside, outside           queues
	insideAddrs, outsideAddrs []netip.Prefix
	sweepInterval             time.Duration
	stateFile                 string

	table    *nat.Table
	sessions *session.Manager
	user     *userPath
	flows    *flowLog

	// The policy in force, and what of it the packet path reads; see
	// SetPolicy.
	pol    atomic.Pointer[policy.Policy]
	reject atomic.Uint32 // policy.RejectMode
}

// New builds a gateway ready to run. It does not touch the devices until
// Run.
func New(cfg Config) (*Gateway, error) {
	if cfg.SweepInterval <= 0 {
		cfg.SweepInterval = 5 * time.Second
	}
	opts := cfg.Policy.Options()
	g := &Gateway{
		log:           cfg.Log,
		clock:         cfg.Clock,
		host:          cfg.Host,
		inside:        cfg.Inside,
		outside:       cfg.Outside,
		insideAddrs:   cfg.InsideAddrs,
		outsideAddrs:  cfg.OutsideAddrs,
		sweepInterval: cfg.SweepInterval,
		stateFile:     cfg.StateFile,
		flows:         newFlowLog(cfg.FirewallLog, cfg.Clock, cfg.DenialQuiet),
	}
	g.pol.Store(cfg.Policy)
	g.reject.Store(uint32(opts.Reject))
	dec := &decider{policy: &g.pol}
	ends := &flowEnds{Observer: g.flows}
	table, err := nat.New(nat.Config{
		External:  addrs(cfg.OutsideAddrs),
		Internal:  addrs(cfg.InsideAddrs),
		Timeouts:  opts.Timeouts,
		Filtering: opts.Filtering,
		Decider:   dec,
		Observer:  ends,
		Rand:      rand.New(rand.NewPCG(cfg.Seed, cfg.Seed^0x5eed)),
		Ports:     hostPorts(cfg.Host),
		// Host sockets carry TCP as streams: every TCP flow is
		// terminated in the inside netstack.
		UserModeTCP:         cfg.Host != nil,
		InsideNetworks:      g.insideNetworks(opts),
		SpecialDestinations: opts.SpecialDestinations,
		Limits:              opts.Limits.NAT(),
		NPTv6:               nptv6(opts.NPTv6),
	})
	if err != nil {
		return nil, fmt.Errorf("fwx: %w", err)
	}
	g.table = table
	g.user = &userPath{table: table, clock: cfg.Clock, host: cfg.Host, insideQs: g.inside, outsideQs: g.outside}
	if err := g.user.open(cfg.Log, cfg.Seed, addrs(cfg.OutsideAddrs)); err != nil {
		return nil, err
	}
	g.sessions = session.NewManager(session.Config{
		UserPath:       g.user,
		Table:          table,
		Policy:         cfg.Policy,
		Clock:          cfg.Clock,
		PinholeTimeout: cfg.PinholeTimeout,
		Log:            cfg.Log,
		FirewallLog:    cfg.FirewallLog,
		Decisions:      g.flows,
	})
	dec.sessions, ends.sessions, g.user.sessions = g.sessions, g.sessions, g.sessions
	return g, nil
}

// insideNetworks returns the networks of the inside: the inside
// addresses', and those the policy's options add.
func (g *Gateway) insideNetworks(opts policy.Options) []netip.Prefix {
	var nets []netip.Prefix
	for _, p := range g.insideAddrs {
		nets = append(nets, p.Masked())
	}
	return append(nets, opts.InsideNetworks...)
}

// hostPorts returns the host as the table's port holder, or nil (a nil
// interface, not a nil pointer) in router mode.
func hostPorts(h *hostnet.Host) nat.Ports {
	if h == nil {
		return nil
	}
	return h
}

// nptv6 converts the policy's prefix translations for the table.
func nptv6(ts []policy.NPTv6) []nat.NPTv6 {
	var out []nat.NPTv6
	for _, t := range ts {
		out = append(out, nat.NPTv6{Inside: t.Inside, Outside: t.Outside})
	}
	return out
}

// addrs returns the addresses of ps.
func addrs(ps []netip.Prefix) []netip.Addr {
	as := make([]netip.Addr, len(ps))
	for i, p := range ps {
		as[i] = p.Addr()
	}
	return as
}

// Table returns the NAT table.
func (g *Gateway) Table() *nat.Table { return g.table }

// Sessions returns the filters' sessions.
func (g *Gateway) Sessions() *session.Manager { return g.sessions }

// Policy returns the policy in force.
func (g *Gateway) Policy() *policy.Policy { return g.pol.Load() }

// rejectMode returns how the policy in force refuses denied flows.
func (g *Gateway) rejectMode() policy.RejectMode { return policy.RejectMode(g.reject.Load()) }

// SetPolicy makes p the policy in force, at once: the flows that open from
// now on, the table's limits and ingress rules, and the sessions go by it.
// The caller has checked that p changes nothing that takes effect only at
// start.
func (g *Gateway) SetPolicy(p *policy.Policy) {
	opts := p.Options()
	g.pol.Store(p)
	g.reject.Store(uint32(opts.Reject))
	g.table.SetLimits(opts.Limits.NAT())
	g.table.SetIngress(g.insideNetworks(opts), opts.SpecialDestinations)
	g.sessions.SetPolicy(p)
}

// Close releases what New built, for a gateway that will not Run.
func (g *Gateway) Close() {
	g.sessions.Close()
	g.user.close()
}

// Run forwards packets until ctx is done or a device fails. It closes
// both devices (every queue) before it returns, ends the sessions and
// every flow (or saves them, with a StateFile), and writes the last
// records of the firewall log. It returns nil when ctx ended it.
func (g *Gateway) Run(ctx context.Context) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()

	var wg sync.WaitGroup
	errc := make(chan error, len(g.inside)+len(g.outside))
	for _, side := range []struct {
		name     string
		from, to queues
		out      bool
	}{
		{"inside", g.inside, g.outside, true},
		{"outside", g.outside, g.inside, false},
	} {
		// One reader per queue, writing to the queue of its index on
		// the other side.
		for i, from := range side.from {
			wg.Add(2)
			go func() {
				defer wg.Done()
				g.log.Debug().Str("side", side.name).Int("queue", i).Msg("reader started")
				err := g.forward(from, side.to.pair(i), side.out)
				g.log.Debug().Str("side", side.name).Int("queue", i).Err(err).Msg("reader stopped")
				errc <- err
			}()
			go func() {
				defer wg.Done()
				for ev := range from.Events() {
					g.log.Debug().Str("side", side.name).Int("queue", i).Int("event", int(ev)).Msg("device event")
				}
			}()
		}
	}
	wg.Add(2)
	go func() {
		defer wg.Done()
		g.sweep(ctx)
	}()
	go func() {
		defer wg.Done()
		g.flushLog(ctx)
	}()
	g.user.serve()

	var err error
	select {
	case <-ctx.Done():
	case err = <-errc:
		err = fmt.Errorf("fwx: %w", err)
	}
	cancel()
	// Closing the devices is what unblocks their readers.
	errIn, errOut := g.inside.close(), g.outside.close()
	wg.Wait()
	g.Close()
	now := g.clock.Now()
	g.save(now)
	g.table.Close(now)
	g.flows.flush(now, true)
	return errors.Join(err, errIn, errOut)
}

// sweep reclaims expired flows, so their end is logged and their ports are
// freed even when no packet looks them up again.
func (g *Gateway) sweep(ctx context.Context) {
	t := time.NewTicker(g.sweepInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			g.Expire()
		}
	}
}

// flushLog writes the records of denied flows once their retries stop.
// It looks every second, on the real clock, whatever the sweep interval.
func (g *Gateway) flushLog(ctx context.Context) {
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			g.flows.flush(g.clock.Now(), false)
		}
	}
}

// Expire reclaims the flows whose timers ran out now, ends the sessions
// that have been idle long enough and writes the records of denied flows
// that are due, as the periodic sweep does. It returns the number of flows
// reclaimed.
func (g *Gateway) Expire() int {
	now := g.clock.Now()
	n := g.table.Expire(now)
	g.sessions.EndIdle(now)
	g.flows.flush(now, false)
	return n
}

// Ended returns what the flows whose end the firewall log wrote carried,
// from their clients' side.
func (g *Gateway) Ended() Counters { return g.flows.endedCounts() }

// RuleCounts returns how many flows each rule admitted, and how many
// attempts each refused, since the start.
func (g *Gateway) RuleCounts() (created, denied map[string]uint64) { return g.flows.ruleCounts() }
