package fwx

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/fwx-dev/fwx/filters"
	"github.com/fwx-dev/fwx/nat"
	"github.com/fwx-dev/fwx/netstack/hostnet"
	"github.com/fwx-dev/fwx/session"
	"github.com/fwx-dev/fwx/session/policy"
)

// Firewall is a running fwx: a SecureNAT gateway between an inside and an
// outside device under a policy. Create one with [New] and start it with
// [Firewall.Run].
type Firewall struct {
	cfg      Config
	clock    Clock
	seed     uint64
	table    *nat.Table
	log      *flowLog
	sessions *session.Manager
	user     *userPath
	started  time.Time // when New made it

	// The queues of the inside and outside devices (queues.go).
	inside, outside queues

	// The policy in force, and what of it the packet path reads; a
	// reload swaps them (see reload.go).
	pol      atomic.Pointer[policy.Policy]
	reject   atomic.Uint32 // policy.RejectMode
	reloadMu sync.Mutex    // serializes reloads; guards filtersOn
	// filtersOn are the filters added to the session manager.
	filtersOn []string
}

// policy returns the policy in force.
func (fw *Firewall) policy() *policy.Policy { return fw.pol.Load() }

// rejectMode returns how the policy in force refuses denied flows.
func (fw *Firewall) rejectMode() policy.RejectMode { return policy.RejectMode(fw.reject.Load()) }

// New validates cfg and builds a firewall ready to run. It does not touch the
// devices until Run.
func New(cfg Config) (*Firewall, error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	if cfg.Host != nil {
		cfg.Outside = cfg.Host // the host's sockets carry UDP and ICMP as packets
		if !cfg.OutsideAddr.IsValid() {
			for i, a := range cfg.Host.Addrs() {
				p := netip.PrefixFrom(a, a.BitLen())
				if i == 0 {
					cfg.OutsideAddr = p
				} else {
					cfg.OutsideAddrs = append(cfg.OutsideAddrs, p)
				}
			}
		}
	}
	if cfg.Policy == nil {
		cfg.Policy = policy.Default()
	}
	if err := CheckPolicy(cfg.Policy, cfg.Filters); err != nil {
		return nil, fmt.Errorf("fwx: %w", err)
	}
	if cfg.Clock == nil {
		cfg.Clock = session.SystemClock
	}
	if cfg.SweepInterval <= 0 {
		cfg.SweepInterval = 5 * time.Second
	}
	seed := cfg.Seed
	if seed == 0 {
		seed = rand.Uint64()
	}
	opts := cfg.Policy.Options()
	fw := &Firewall{cfg: cfg, clock: cfg.Clock, seed: seed, started: cfg.Clock.Now(),
		inside:  append(queues{cfg.Inside}, cfg.InsideQueues...),
		outside: append(queues{cfg.Outside}, cfg.OutsideQueues...)}
	fw.pol.Store(cfg.Policy)
	fw.reject.Store(uint32(opts.Reject))
	fw.log = newFlowLog(cfg.FirewallLog, cfg.Clock, cfg.DenialQuiet)
	table, err := nat.New(nat.Config{
		External:  addrs(cfg.outsideAddrs()),
		Internal:  addrs(cfg.insideAddrs()),
		Timeouts:  opts.Timeouts,
		Filtering: opts.Filtering,
		Decider:   decider{fw: fw},
		Observer:  flowEnds{fw.log, fw},
		Rand:      rand.New(rand.NewPCG(seed, seed^0x5eed)),
		Ports:     hostPorts(cfg.Host),
		// Host sockets carry TCP as streams: every TCP flow is
		// terminated in the inside netstack.
		UserModeTCP:         cfg.Host != nil,
		InsideNetworks:      insideNetworks(cfg, opts),
		SpecialDestinations: opts.SpecialDestinations,
		Limits:              opts.Limits.NAT(),
		NPTv6:               nptv6(opts.NPTv6),
	})
	if err != nil {
		return nil, fmt.Errorf("fwx: %w", err)
	}
	fw.table = table
	if fw.user, err = newUserPath(fw); err != nil {
		return nil, err
	}
	mgr := session.NewManager(session.Config{
		UserPath:       fw.user,
		Table:          table,
		Policy:         cfg.Policy,
		Clock:          cfg.Clock,
		PinholeTimeout: cfg.PinholeTimeout,
		Log:            cfg.Log,
		FirewallLog:    cfg.FirewallLog,
		Decisions:      fw.log,
	})
	fw.sessions = mgr
	if err := fw.addFilters(cfg.Policy); err != nil {
		mgr.Close()
		fw.user.close()
		return nil, err
	}
	for _, pub := range cfg.Policy.Publications() {
		if err := fw.publish(pub); err != nil {
			mgr.Close()
			fw.user.close()
			return nil, err
		}
	}
	fw.restore()
	return fw, nil
}

// insideNetworks returns the networks of the inside: the inside
// addresses', and those the policy's options add.
func insideNetworks(cfg Config, opts policy.Options) []netip.Prefix {
	var nets []netip.Prefix
	for _, p := range cfg.insideAddrs() {
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

// CheckPolicy makes the checks of a policy that need to know the fwx that
// would run it, beyond what parsing checked: every filter it uses is in
// reg (nil means [filters.Default]), and every rule's filter_settings fit
// the schema its filter registered with. New and a reload make them; `fwx
// policy` makes them before anything runs. Errors carry the policy file's
// line, as parse errors do.
func CheckPolicy(p *policy.Policy, reg *filters.Registry) error {
	if reg == nil {
		reg = &filters.Default
	}
	var names []string
	for _, e := range reg.Entries() {
		names = append(names, e.Name)
	}
	return errors.Join(p.CheckFilters(names), p.CheckSettings(reg.Schema))
}

// addFilters turns on the filters pol names that are not on yet, in
// registration order; CheckPolicy made sure the registry has them all.
func (fw *Firewall) addFilters(pol *policy.Policy) error {
	reg := fw.cfg.Filters
	if reg == nil {
		reg = &filters.Default
	}
	on := pol.Filters()
	for _, e := range reg.Entries() {
		if slices.Contains(on, e.Name) && !slices.Contains(fw.filtersOn, e.Name) {
			if err := fw.sessions.AddFilter(e.Name, e.New()); err != nil {
				return fmt.Errorf("fwx: %w", err)
			}
			fw.filtersOn = append(fw.filtersOn, e.Name)
		}
	}
	return nil
}

// Session returns the filter SDK session of a SecureNAT client address,
// creating it (ISA's GetClientSession); nil once the firewall has stopped.
func (fw *Firewall) Session(client netip.Addr) *session.Session { return fw.sessions.Session(client) }

// OutsideAddrs returns fwx's addresses on the outside, OutsideAddr first.
func (fw *Firewall) OutsideAddrs() []netip.Prefix { return fw.cfg.outsideAddrs() }

// InsideAddrs returns fwx's addresses on the inside, InsideAddr first.
func (fw *Firewall) InsideAddrs() []netip.Prefix { return fw.cfg.insideAddrs() }

// OutsideAddr returns fwx's address on the outside, the source address of
// translated flows (in host mode, the host address its sockets bind to).
func (fw *Firewall) OutsideAddr() netip.Prefix { return fw.cfg.OutsideAddr }

// Flows returns the number of live flows.
func (fw *Firewall) Flows() int { return fw.table.Len() }

// Stats returns the NAT table's counters: live flows and mappings, packets
// dropped by reason, flows reclaimed early.
func (fw *Firewall) Stats() nat.Stats { return fw.table.Stats() }

// Run forwards packets until ctx is done or a device fails. Run owns the
// devices: it closes both (every queue) before it returns, and it ends
// every flow, so the firewall log closes each one. It returns nil when ctx
// ended it.
func (fw *Firewall) Run(ctx context.Context) error {
	log := fw.cfg.Log
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()

	var wg sync.WaitGroup
	errc := make(chan error, len(fw.inside)+len(fw.outside))
	for _, side := range []struct {
		name     string
		from, to queues
		out      bool
	}{
		{"inside", fw.inside, fw.outside, true},
		{"outside", fw.outside, fw.inside, false},
	} {
		// One reader per queue, writing to the queue of its index on
		// the other side.
		for i, from := range side.from {
			wg.Add(2)
			go func() {
				defer wg.Done()
				log.Debug().Str("side", side.name).Int("queue", i).Msg("reader started")
				err := fw.forward(from, side.to.pair(i), side.out)
				log.Debug().Str("side", side.name).Int("queue", i).Err(err).Msg("reader stopped")
				errc <- err
			}()
			go func() {
				defer wg.Done()
				for ev := range from.Events() {
					log.Debug().Str("side", side.name).Int("queue", i).Int("event", int(ev)).Msg("device event")
				}
			}()
		}
	}
	wg.Add(2)
	go func() {
		defer wg.Done()
		fw.sweep(ctx)
	}()
	go func() {
		defer wg.Done()
		fw.flushLog(ctx)
	}()
	fw.user.serve()

	var err error
	select {
	case <-ctx.Done():
	case err = <-errc:
		err = fmt.Errorf("fwx: %w", err)
	}
	cancel()
	// Closing the devices is what unblocks their readers.
	errIn, errOut := fw.inside.close(), fw.outside.close()
	wg.Wait()
	fw.sessions.Close()
	fw.user.close()
	now := fw.clock.Now()
	fw.save(now)
	fw.table.Close(now)
	fw.log.flush(now, true)
	return errors.Join(err, errIn, errOut)
}

// sweep reclaims expired flows, so their end is logged and their ports are
// freed even when no packet looks them up again.
func (fw *Firewall) sweep(ctx context.Context) {
	t := time.NewTicker(fw.cfg.SweepInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			fw.Expire()
		}
	}
}

// flushLog writes the records of denied flows once their retries stop.
// It looks every second, on the real clock, whatever the sweep interval.
func (fw *Firewall) flushLog(ctx context.Context) {
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			fw.log.flush(fw.clock.Now(), false)
		}
	}
}

// Expire reclaims the flows whose timers ran out now, ends the sessions
// that have been idle long enough and writes the records of denied flows
// that are due, as the periodic sweep does; a test calls it right after
// advancing its clock. It returns the number of flows reclaimed.
func (fw *Firewall) Expire() int {
	now := fw.clock.Now()
	n := fw.table.Expire(now)
	fw.sessions.EndIdle(now)
	fw.log.flush(now, false)
	return n
}

// ExternalFor returns the outside address client's flows leave from: the
// one of its family it is paired with (RFC 4787 REQ-2), and false when fwx
// has none of that family.
func (fw *Firewall) ExternalFor(client netip.Addr) (netip.Addr, bool) {
	return fw.table.ExternalFor(client)
}

// nptv6 converts the policy's prefix translations for the table.
func nptv6(ts []policy.NPTv6) []nat.NPTv6 {
	var out []nat.NPTv6
	for _, t := range ts {
		out = append(out, nat.NPTv6{Inside: t.Inside, Outside: t.Outside})
	}
	return out
}
