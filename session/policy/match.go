package policy

import "net/netip"

// The runtime form of a policy: everything a name referred to in the file is
// resolved at load, so matching walks short slices of values and never
// looks anything up or allocates.

// rule is a compiled access rule.
type rule struct {
	name   string
	action Action
	from   addrSet // matched against the source of an outbound flow
	to     addrSet // matched against the destination
	// protos are the rule's protocols that apply to outbound flows, in the
	// order the rule lists them; the first match names the protocol in the
	// Decision. Protocols with direction inbound are left out at load.
	protos []protoMatch
	// settings are the rule's filter_settings.
	settings Settings
}

// match returns the first of r's protocols that matches transport t and
// destination port, or nil.
func (r *rule) match(t Transport, port uint16) *protoMatch {
	bit := bit(t)
	for i := range r.protos {
		if m := &r.protos[i]; m.transports&bit != 0 && m.hasPort(t, port) {
			return m
		}
	}
	return nil
}

// protoMatch is a compiled protocol definition.
type protoMatch struct {
	name       string
	filter     string
	transports uint8       // set of Transport.bit values
	ports      []portRange // empty means any port
}

// hasPort reports whether port is one of m's ports. ICMP has no ports, so
// every ICMP flow has them all.
func (m *protoMatch) hasPort(t Transport, port uint16) bool {
	if len(m.ports) == 0 || t == ICMP {
		return true
	}
	for _, r := range m.ports {
		if r.lo <= port && port <= r.hi {
			return true
		}
	}
	return false
}

// portRange is an inclusive range of ports, lo <= hi.
type portRange struct{ lo, hi uint16 }

// addrSet is a compiled list of network names, seen from one side of the
// gateway: all is set when the list names "any" or the built-in network of
// the interface the matched address is on ("internal" for the source of an
// outbound flow, "external" for its destination or for the source of an
// inbound one); otherwise the set holds the user networks' prefixes.
type addrSet struct {
	all      bool
	prefixes []netip.Prefix
}

// contains reports whether a is in s. a must already be unmapped.
func (s *addrSet) contains(a netip.Addr) bool {
	if s.all {
		return true
	}
	for _, p := range s.prefixes {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// publication is a compiled publish rule.
type publication struct {
	Publication
	from addrSet // matched against the source of an inbound flow
}
