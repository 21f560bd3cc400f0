package fwx

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"slices"
	"sync"
	"time"

	"golang.zx2c4.com/wireguard/tun"

	"github.com/fwx-dev/fwx/filters"
	"github.com/fwx-dev/fwx/nat"
	"github.com/fwx-dev/fwx/nat/gateway"
	"github.com/fwx-dev/fwx/session"
	"github.com/fwx-dev/fwx/session/policy"
)

// Firewall is a running fwx: a SecureNAT gateway between an inside and an
// outside device under a policy. Create one with [New] and start it with
// [Firewall.Run].
type Firewall struct {
	cfg      Config
	clock    Clock
	started  time.Time // when New made it
	gw       *gateway.Gateway
	table    *nat.Table
	sessions *session.Manager

	reloadMu sync.Mutex // serializes reloads; guards filtersOn
	// filtersOn are the filters added to the session manager.
	filtersOn []string
}

// policy returns the policy in force.
func (fw *Firewall) policy() *policy.Policy { return fw.gw.Policy() }

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
	seed := cfg.Seed
	if seed == 0 {
		seed = rand.Uint64()
	}
	gw, err := gateway.New(gateway.Config{
		Inside:         append([]tun.Device{cfg.Inside}, cfg.InsideQueues...),
		Outside:        append([]tun.Device{cfg.Outside}, cfg.OutsideQueues...),
		Host:           cfg.Host,
		InsideAddrs:    cfg.insideAddrs(),
		OutsideAddrs:   cfg.outsideAddrs(),
		Policy:         cfg.Policy,
		Clock:          cfg.Clock,
		Seed:           seed,
		PinholeTimeout: cfg.PinholeTimeout,
		SweepInterval:  cfg.SweepInterval,
		StateFile:      cfg.StateFile,
		Log:            cfg.Log,
		FirewallLog:    cfg.FirewallLog,
		DenialQuiet:    cfg.DenialQuiet,
	})
	if err != nil {
		return nil, err
	}
	fw := &Firewall{cfg: cfg, clock: cfg.Clock, started: cfg.Clock.Now(),
		gw: gw, table: gw.Table(), sessions: gw.Sessions()}
	if err := fw.addFilters(cfg.Policy); err != nil {
		gw.Close()
		return nil, err
	}
	for _, pub := range cfg.Policy.Publications() {
		if err := gw.Publish(pub); err != nil {
			gw.Close()
			return nil, err
		}
	}
	gw.Restore()
	return fw, nil
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
func (fw *Firewall) Run(ctx context.Context) error { return fw.gw.Run(ctx) }

// Expire reclaims the flows whose timers ran out now, ends the sessions
// that have been idle long enough and writes the records of denied flows
// that are due, as the periodic sweep does; a test calls it right after
// advancing its clock. It returns the number of flows reclaimed.
func (fw *Firewall) Expire() int { return fw.gw.Expire() }

// ExternalFor returns the outside address client's flows leave from: the
// one of its family it is paired with (RFC 4787 REQ-2), and false when fwx
// has none of that family.
func (fw *Firewall) ExternalFor(client netip.Addr) (netip.Addr, bool) {
	return fw.table.ExternalFor(client)
}
