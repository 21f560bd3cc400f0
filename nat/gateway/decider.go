package gateway

import (
	"net/netip"
	"sync/atomic"

	"github.com/fwx-dev/fwx/nat"
	"github.com/fwx-dev/fwx/session"
	"github.com/fwx-dev/fwx/session/policy"
)

// decider puts the firewall's policy (the one in force when a flow opens),
// and the filters' hooks and data filter factories of the sessions, in
// front of the NAT table.
type decider struct {
	policy   *atomic.Pointer[policy.Policy] // the policy in force
	sessions *session.Manager
}

var _ nat.Decider = (*decider)(nil)

// Outbound implements nat.Decider.
func (d *decider) Outbound(p nat.Proto, src, dst netip.AddrPort) nat.Decision {
	if p == nat.ICMP {
		// The identifier is not a port: policies see echo queries by address.
		src, dst = netip.AddrPortFrom(src.Addr(), 0), netip.AddrPortFrom(dst.Addr(), 0)
	}
	r := d.policy.Load().Decide(policy.Flow{Transport: p, Direction: policy.Outbound, Src: src, Dst: dst})
	// A flow whose connect event a filter hooked (for its protocol, or for
	// every protocol), or that a session's data filter factory wants,
	// takes the user-mode path, as in ISA.
	userMode := false
	if (p == nat.TCP || p == nat.UDP) && r.Allow {
		userMode = d.sessions.Hooks(session.ConnectEvent(p), r.Filter) || d.sessions.WantsUserMode(p, src.Addr(), dst)
	}
	return nat.Decision{Allow: r.Allow, Rule: r.Rule, UserMode: userMode, Protocol: r.Protocol, Filter: r.Filter}
}

// Inbound implements nat.Decider.
func (d *decider) Inbound(p nat.Proto, src, dst netip.AddrPort) nat.Decision {
	pub, ok := d.policy.Load().Published(p, dst, src.Addr())
	if !ok {
		return nat.Decision{Rule: "default-deny"}
	}
	// A published server's connection whose event a filter hooked takes
	// the user-mode path: an accepted TCP connection, a UDP peer.
	ev := session.EventAcceptedConnection
	if p == nat.UDP {
		ev = session.EventUDPDestination
	}
	userMode := d.sessions.Hooks(ev, pub.Filter)
	return nat.Decision{Allow: true, Rule: pub.Name, UserMode: userMode, Protocol: pub.Protocol, Filter: pub.Filter}
}
