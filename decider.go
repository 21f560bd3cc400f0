package fwx

import (
	"net/netip"

	"github.com/fwx-dev/fwx/nat"
	"github.com/fwx-dev/fwx/session/policy"
)

// decider puts a policy, and the data filter factories of the sessions, in
// front of the NAT table.
type decider struct {
	p  *policy.Policy
	fw *Firewall
}

var _ nat.Decider = decider{}

func transport(p nat.Proto) policy.Transport {
	switch p {
	case nat.TCP:
		return policy.TCP
	case nat.UDP:
		return policy.UDP
	}
	return policy.ICMP
}

// Outbound implements nat.Decider.
func (d decider) Outbound(p nat.Proto, src, dst netip.AddrPort) nat.Decision {
	if p == nat.ICMP {
		// The identifier is not a port: policies see echo queries by address.
		src, dst = netip.AddrPortFrom(src.Addr(), 0), netip.AddrPortFrom(dst.Addr(), 0)
	}
	r := d.p.Decide(policy.Flow{Transport: transport(p), Direction: policy.Outbound, Src: src, Dst: dst})
	// A protocol with an application filter, or a connection a session's
	// data filter factory wants, takes the user-mode path.
	// The user-mode path terminates TCP only, for now: UDP flows of a
	// filtered protocol stay on the fast path.
	userMode := p == nat.TCP && (r.Filter != "" || (r.Allow && d.fw.sessions.WantsUserMode(src.Addr(), dst)))
	return nat.Decision{Allow: r.Allow, Rule: r.Rule, UserMode: userMode, Protocol: r.Protocol, Filter: r.Filter}
}

// Inbound implements nat.Decider.
func (d decider) Inbound(p nat.Proto, src, dst netip.AddrPort) nat.Decision {
	pub, ok := d.p.Published(transport(p), dst, src.Addr())
	if !ok {
		return nat.Decision{Rule: "default-deny"}
	}
	return nat.Decision{Allow: true, Rule: pub.Name, UserMode: p == nat.TCP && pub.Filter != "", Protocol: pub.Protocol, Filter: pub.Filter}
}
