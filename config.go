package fwx

import (
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"time"

	"github.com/rs/zerolog"
	"golang.zx2c4.com/wireguard/tun"

	"github.com/fwx-dev/fwx/filters"
	"github.com/fwx-dev/fwx/netstack/hostnet"
	"github.com/fwx-dev/fwx/session"
	"github.com/fwx-dev/fwx/session/policy"
)

// Clock tells fwx the time. Flow timers run on it, so a test can jump past a
// timeout by advancing a manual clock (the lab's ManualClock is one). It is
// [session.Clock], the clock filters see too.
type Clock = session.Clock

// Config configures a [Firewall]. Inside, InsideAddr and an outside are
// required: Outside and OutsideAddr (router mode), or Host (host mode);
// every other field has a useful zero value. Addresses may be IPv4 or
// IPv6: fwx carries a family between an inside and an outside address of
// it (dual stack: one of each on each side).
type Config struct {
	// Inside is the device whose traffic fwx's clients send: every packet
	// read from it comes from a SecureNAT client.
	Inside tun.Device
	// Outside is the device on the external side (router mode).
	Outside tun.Device
	// InsideQueues and OutsideQueues are the other queues of a
	// multi-queue inside or outside device, Inside and Outside being
	// their first (vnettun.CreateQueues returns them all). fwx reads
	// every queue with a goroutine of its own and writes each flow's
	// packets to the queue of the same index on the other side, so the
	// kernel keeps both directions of a flow on one (see vnettun).
	// Empty for a device of one queue. Host mode has no OutsideQueues.
	InsideQueues, OutsideQueues []tun.Device
	// Host, instead of Outside, makes the host's own network stack the
	// external side (host mode): flows leave from host sockets, and
	// OutsideAddr and OutsideAddrs, if unset, are the addresses they bind
	// to.
	Host *hostnet.Host
	// InsideAddr is fwx's own address on the inside, the clients'
	// gateway, with the inside network's prefix length.
	InsideAddr netip.Prefix
	// InsideAddrs are more of fwx's inside addresses: for dual stack the
	// other family's, or the gateways of further inside networks.
	InsideAddrs []netip.Prefix
	// OutsideAddr is fwx's address on the outside, the source address of
	// translated traffic.
	OutsideAddr netip.Prefix
	// OutsideAddrs are more outside addresses: for dual stack the other
	// family's, and more of either to make a pool. The mappings of one
	// client and family all leave from one address of the pool (paired
	// pooling, RFC 4787 REQ-2); a publication may name any.
	OutsideAddrs []netip.Prefix

	// Policy decides which flows may pass. Nil means [policy.Default]: the
	// inside may go out on anything; nothing unsolicited comes in.
	Policy *policy.Policy
	// Filters are the application filters fwx may run; the policy turns
	// on those its protocols name. Nil means [filters.Default], the
	// compiled-in ones.
	Filters *filters.Registry
	// PinholeTimeout is how long a permission a filter grants with
	// session.Timeout waits to be used. Zero means 60 s.
	PinholeTimeout time.Duration

	// Clock is the time source of flow timers. Nil means the system clock.
	Clock Clock
	// Seed seeds the random choice of external ports. Zero means a seed
	// from the operating system; tests set one to be deterministic.
	Seed uint64
	// SweepInterval is how often expired flows are reclaimed and their end
	// logged. Zero means 5 seconds. Expiry itself is exact whatever the
	// interval: a packet never matches an expired flow.
	SweepInterval time.Duration
	// StateFile, if set, keeps the flow table across a restart (an
	// upgrade): when Run returns it writes the flows there, which then go
	// on instead of ending, and New reads them back and removes the file,
	// so that only a clean stop is ever restored. A file that cannot be
	// read is set aside (FILE.bad) and fwx starts with an empty table.
	// When the file is missing (a first start, a crash), fwx picks up for
	// a while the TCP connections whose segments still come from the
	// inside (see nat.Table.SetPickup). Either way, a TCP segment of no
	// connection fwx knows is answered with a RST.
	StateFile string

	// Log receives diagnostics. The zero value discards them.
	Log zerolog.Logger
	// FirewallLog receives one record per flow allowed, denied and ended,
	// and the records application filters write of the pinholes they open
	// and refuse.
	// It is written on the packet path, so its writer must never block:
	// put a [LogQueue] under it. The zero value discards them.
	FirewallLog zerolog.Logger
	// DenialQuiet is how long a denied flow must go without another
	// attempt before its one record (with the count of attempts) is
	// written. Zero means 30 seconds, which covers TCP's SYN retries.
	DenialQuiet time.Duration
}

func (c Config) validate() error {
	var errs []error
	if c.Inside == nil {
		errs = append(errs, errors.New("no inside device"))
	}
	switch {
	case c.Host != nil && (c.Outside != nil || len(c.OutsideQueues) > 0):
		errs = append(errs, errors.New("both an outside device and the host as the outside"))
	case c.Host != nil:
		for _, p := range c.outsideAddrs() {
			if !slices.Contains(c.Host.Addrs(), p.Addr()) {
				errs = append(errs, fmt.Errorf("outside address %v is not a host address fwx binds to (%v)", p.Addr(), c.Host.Addrs()))
			}
		}
	case c.Outside == nil:
		errs = append(errs, errors.New("no outside device"))
	}
	if slices.Contains(c.InsideQueues, nil) || slices.Contains(c.OutsideQueues, nil) {
		errs = append(errs, errors.New("a nil device among the queues"))
	}
	if !c.InsideAddr.IsValid() {
		errs = append(errs, errors.New("no inside address"))
	}
	if c.Host == nil && !c.OutsideAddr.IsValid() {
		errs = append(errs, errors.New("no outside address"))
	}
	seen := map[netip.Addr]string{}
	for _, side := range []struct {
		name  string
		addrs []netip.Prefix
	}{{"inside", c.insideAddrs()}, {"outside", c.outsideAddrs()}} {
		for _, p := range side.addrs {
			a := p.Addr()
			switch {
			case !p.IsValid() || a.Is4In6() || a.Zone() != "" || a.IsUnspecified() || a.IsMulticast() || a.IsLoopback() || a.IsLinkLocalUnicast():
				errs = append(errs, fmt.Errorf("%s address %v: not a unicast address fwx can own", side.name, p))
			case seen[a] == side.name:
				errs = append(errs, fmt.Errorf("%s address %v given twice", side.name, a))
			case seen[a] != "":
				errs = append(errs, fmt.Errorf("address %v both inside and outside", a))
			}
			seen[a] = side.name
		}
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("fwx: config: %w", err)
	}
	return nil
}

// insideAddrs returns fwx's inside addresses, InsideAddr first.
func (c *Config) insideAddrs() []netip.Prefix {
	return append([]netip.Prefix{c.InsideAddr}, c.InsideAddrs...)
}

// outsideAddrs returns fwx's outside addresses, OutsideAddr first; none
// in host mode before New picked the host's.
func (c *Config) outsideAddrs() []netip.Prefix {
	if !c.OutsideAddr.IsValid() {
		return c.OutsideAddrs
	}
	return append([]netip.Prefix{c.OutsideAddr}, c.OutsideAddrs...)
}
