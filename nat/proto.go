package nat

import "strconv"

// Proto is a transport protocol that fwx translates: fwx's one transport
// type, which the policy (policy.Transport) and the filter SDK
// (session.Transport) name Transport. Its values are the IP protocol
// numbers.
type Proto uint8

// Protocols fwx translates.
const (
	ICMP Proto = 1
	TCP  Proto = 6
	UDP  Proto = 17
)

// String returns the protocol's lower-case name.
func (p Proto) String() string {
	switch p {
	case ICMP:
		return "icmp"
	case TCP:
		return "tcp"
	case UDP:
		return "udp"
	}
	return "proto-" + strconv.Itoa(int(p))
}

// Direction says which side of fwx started a flow.
type Direction uint8

// Directions of a flow.
const (
	// Outbound flows are started by a client on the inside.
	Outbound Direction = iota
	// Inbound flows are started from the outside: published servers and
	// packets admitted by a mapping's filtering behaviour.
	Inbound
)

// String returns "outbound" or "inbound".
func (d Direction) String() string {
	if d == Inbound {
		return "inbound"
	}
	return "outbound"
}

// Filtering is the NAT's filtering behaviour for packets from the outside to
// an existing mapping that match no flow yet (RFC 4787 section 5).
type Filtering uint8

// Filtering behaviours.
const (
	// AddressDependent admits packets from an address the mapping has sent
	// to, from any port (RFC 4787 REQ-8's choice when stringency matters).
	AddressDependent Filtering = iota
	// EndpointIndependent admits packets from any outside endpoint.
	EndpointIndependent
	// AddressAndPortDependent admits packets only from the exact endpoints
	// the mapping has sent to.
	AddressAndPortDependent
)

// String returns the RFC 4787 name of the behaviour.
func (f Filtering) String() string {
	switch f {
	case EndpointIndependent:
		return "endpoint-independent"
	case AddressAndPortDependent:
		return "address-and-port-dependent"
	}
	return "address-dependent"
}
