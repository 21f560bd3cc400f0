package policy

import (
	"net/netip"
	"strconv"

	"github.com/fwx-dev/fwx/nat"
)

// Transport is the transport protocol of a flow or of a protocol
// definition: fwx's one transport type, [nat.Proto]. The zero Transport is
// invalid and matches no protocol.
type Transport = nat.Proto

// The transports a policy knows, spelled "tcp", "udp" and "icmp" in the
// policy file. ICMP stands for ICMP echo (ping) over IPv4 and IPv6 alike:
// echo queries are the only ICMP messages that start a flow.
const (
	TCP  = nat.TCP
	UDP  = nat.UDP
	ICMP = nat.ICMP
)

// bit returns t's bit in a transport set; 0 for an invalid t, so an invalid
// transport is in no set.
func bit(t Transport) uint8 {
	switch t {
	case TCP:
		return 1 << 1
	case UDP:
		return 1 << 2
	case ICMP:
		return 1 << 3
	}
	return 0
}

// allTransports is the transport set of the built-in protocol "any".
const allTransports = 1<<1 | 1<<2 | 1<<3

// Direction is the direction of a flow: which side started it. The zero
// Direction is Outbound.
type Direction uint8

const (
	// Outbound flows are started by a client on the inside (the TUN side).
	// Access rules apply to them.
	Outbound Direction = iota
	// Inbound flows are started from the outside. Only publish rules let
	// them in (see [Policy.Published]).
	Inbound
)

// String returns "outbound" or "inbound".
func (d Direction) String() string {
	switch d {
	case Outbound:
		return "outbound"
	case Inbound:
		return "inbound"
	}
	return "Direction(" + strconv.Itoa(int(d)) + ")"
}

// Action is what an access rule does with the flows it matches. The zero
// Action is Deny, so that a rule whose action was never set fails closed.
type Action uint8

const (
	// Deny refuses the flow (see [RejectMode] for how).
	Deny Action = iota
	// Allow lets the flow through.
	Allow
)

// String returns the policy file's spelling: "allow" or "deny".
func (a Action) String() string {
	switch a {
	case Allow:
		return "allow"
	case Deny:
		return "deny"
	}
	return "Action(" + strconv.Itoa(int(a)) + ")"
}

// RejectMode says how the gateway refuses a denied flow. The zero RejectMode
// is RejectReply, the default.
type RejectMode uint8

const (
	// RejectReply answers a denied flow: a TCP RST for TCP, ICMP
	// "administratively prohibited" (RFC 1812 section 5.2.7.1; ICMPv6 code 1,
	// RFC 4443) for UDP and ICMP. Clients fail fast instead of timing out.
	RejectReply RejectMode = iota
	// RejectDrop discards a denied flow's packets silently.
	RejectDrop
)

// String returns the policy file's spelling: "reply" or "drop".
func (m RejectMode) String() string {
	switch m {
	case RejectReply:
		return "reply"
	case RejectDrop:
		return "drop"
	}
	return "RejectMode(" + strconv.Itoa(int(m)) + ")"
}

// Filtering is the NAT's filtering behaviour, in the terms of RFC 4787
// section 5: which packets from the outside may use a mapping that an
// outbound flow created. It is the NAT table's own type; the zero value,
// AddressDependent, is the default (RFC 4787 REQ-8 recommends it when
// security matters more than transparency).
type Filtering = nat.Filtering

// Filtering behaviours, as spelled in the policy file's options.
const (
	AddressDependent        = nat.AddressDependent
	EndpointIndependent     = nat.EndpointIndependent
	AddressAndPortDependent = nat.AddressAndPortDependent
)

// Timeouts are the idle timeouts of flows: the NAT table's own type. A zero
// field means "use the default"; [Policy.Options] always returns them
// filled in.
type Timeouts = nat.Timeouts

// DefaultTimeouts returns the built-in timeouts: UDP 5m, TCP SYN sent 2m,
// SYN received 60s, established 2h4m, transitory 4m, after RST 4m, ICMP
// 60s.
func DefaultTimeouts() Timeouts { return nat.DefaultTimeouts() }

// ReloadMode says what a reload of the policy does to the flows and grants
// the old policy allowed.
type ReloadMode uint8

const (
	// ReloadKeep, the default, lets established flows and the grants of
	// filters (pinholes) live on under the new policy: only new flows
	// follow it.
	ReloadKeep ReloadMode = iota
	// ReloadStrict ends the flows and grants the new policy would not
	// allow, each with its ended record.
	ReloadStrict
)

// String returns the policy file's spelling: "keep" or "strict".
func (m ReloadMode) String() string {
	switch m {
	case ReloadKeep:
		return "keep"
	case ReloadStrict:
		return "strict"
	}
	return "ReloadMode(" + strconv.Itoa(int(m)) + ")"
}

// NoLimit, as a limit, turns it off (the file's "off").
const NoLimit = nat.NoLimit

// Limits bound what one client may hold, so that none starves the others,
// and what the gateway holds in all. A client is the address that starts a
// flow. A zero field means the default; [NoLimit] turns it off;
// [Policy.Options] returns them filled in.
type Limits struct {
	// MaxFlows bounds the flows of the gateway (about 300 bytes each):
	// 1048576 by default. When it is reached, a new flow replaces one
	// that is not established, or is refused.
	MaxFlows int
	// ClientFlows bounds a client's concurrent flows: 4096 by default.
	ClientFlows int
	// ClientHalfOpen bounds a client's TCP connections whose handshake
	// has not completed: 512 by default.
	ClientHalfOpen int
	// ClientRate bounds the new flows a client starts per second, with
	// bursts of as many: 1000 by default.
	ClientRate int
	// ClientDials bounds a client's connections on the user-mode path
	// waiting for their server to answer: 128 by default.
	ClientDials int
}

// DefaultClientDials is the default of [Limits].ClientDials.
const DefaultClientDials = 128

// WithDefaults returns l with every zero field replaced by its default.
func (l Limits) WithDefaults() Limits {
	n := l.NAT().WithDefaults()
	l.MaxFlows, l.ClientFlows, l.ClientHalfOpen, l.ClientRate = n.MaxFlows, n.ClientFlows, n.ClientHalfOpen, n.ClientRate
	if l.ClientDials == 0 {
		l.ClientDials = DefaultClientDials
	}
	return l
}

// NAT returns the limits the NAT table enforces.
func (l Limits) NAT() nat.Limits {
	return nat.Limits{MaxFlows: l.MaxFlows, ClientFlows: l.ClientFlows, ClientHalfOpen: l.ClientHalfOpen, ClientRate: l.ClientRate}
}

// Options are a policy's gateway-wide settings (the file's options section).
// The zero Options are the defaults: reject by reply, address-dependent
// filtering, default timeouts, reloads keep established flows.
type Options struct {
	// Reject says how denied flows are refused.
	Reject RejectMode
	// Reload says what becomes of established flows when the policy is
	// reloaded.
	Reload ReloadMode
	// Filtering is the NAT filtering behaviour (RFC 4787).
	Filtering Filtering
	// Timeouts are the flows' idle timeouts.
	Timeouts Timeouts
	// Limits are the per-client and gateway-wide limits.
	Limits Limits
	// InsideNetworks are networks on the inside besides the one of fwx's
	// inside address (routed subnets, a VPN's peers): packets from the
	// inside with a source in none of them are dropped as spoofed (BCP 38).
	InsideNetworks []netip.Prefix
	// SpecialDestinations are the loopback, multicast and broadcast
	// destinations fwx may forward from the inside, still subject to the
	// access rules. By default none is.
	SpecialDestinations []netip.Prefix
	// NPTv6 are IPv6 prefix translations (RFC 6296): inside hosts in an
	// Inside prefix leave from the address with the Outside prefix
	// instead of masquerading behind fwx's outside address.
	NPTv6 []NPTv6
}

// NPTv6 is one IPv6 prefix translation: prefixes of one length, at most
// /64.
type NPTv6 struct {
	Inside, Outside netip.Prefix
}
