package policy

import (
	"net/netip"
	"slices"
)

// DefaultDeny is the [Decision.Rule] of a flow that no access rule matched.
// No rule in a policy file may take this name.
const DefaultDeny = "default-deny"

// Policy is a loaded, validated policy: the access rules, the publish rules
// and the options, precompiled so that [Policy.Decide] is cheap.
//
// A Policy is immutable once built, so it is safe for concurrent use; to
// change the policy, load a new one and swap the pointer. The zero Policy has
// no rules: it denies every flow and publishes nothing, like an empty file.
type Policy struct {
	rules []rule
	pubs  []publication
	opts  Options

	file     string        // the name given to Parse, for errors found later
	filters  []filterAt    // where each filter the rules and publications reach is named
	settings []settingsUse // the rules' and publications' filter_settings
	warnings []*Error
}

// Flow describes a new flow for [Policy.Decide]: its transport, the side
// that started it, and its endpoints as the gateway saw them before any
// translation. For ICMP the ports are 0. IPv4-mapped IPv6 addresses are
// treated as IPv4.
type Flow struct {
	Transport Transport
	Direction Direction
	Src, Dst  netip.AddrPort
}

// Decision is the verdict of [Policy.Decide] on a flow.
type Decision struct {
	// Allow reports whether the flow may pass.
	Allow bool
	// Rule is the name of the access rule that matched, or [DefaultDeny].
	Rule string
	// Protocol is the name of the protocol definition through which the
	// rule matched (a built-in such as "any" included); empty for
	// DefaultDeny.
	Protocol string
	// Filter is that protocol's application filter, or empty.
	Filter string
	// Settings are the deciding rule's filter_settings, for Filter.
	Settings Settings
}

// Publication is one server-publishing rule: flows that reach Listen on the
// outside are forwarded to Server on the inside.
type Publication struct {
	// Name is the publish rule's name.
	Name string
	// Transport is TCP or UDP, from the rule's protocol.
	Transport Transport
	// Listen is the outside address and port. An invalid Addr means any of
	// the gateway's outside addresses; the port is always set.
	Listen netip.AddrPort
	// Server is the inside server: a unicast address and a port.
	Server netip.AddrPort
	// Protocol is the name of the rule's protocol definition.
	Protocol string
	// Filter is that protocol's application filter, or empty.
	Filter string
	// Settings are the rule's filter_settings, for Filter.
	Settings Settings
}

// Options returns the policy's options, with every default filled in.
func (p *Policy) Options() Options {
	if p == nil {
		return Options{Timeouts: DefaultTimeouts(), Limits: Limits{}.WithDefaults()}
	}
	o := p.opts
	o.Timeouts = o.Timeouts.WithDefaults()
	o.Limits = o.Limits.WithDefaults()
	return o
}

// Decide applies the access rules to a new flow and returns the verdict of
// the first rule that matches; when none does, the flow is denied by
// [DefaultDeny]. Access rules apply only to outbound flows: an inbound flow
// is always denied here, since only [Policy.Published] lets one in.
//
// A rule matches an outbound flow when the source is in one of its "from"
// networks (the built-in "internal" contains every source), the
// destination is in one of its "to" networks ("external" contains every
// destination), and one of its outbound-capable protocols matches the
// transport and destination port.
//
// Decide does not allocate; the gateway calls it once per new flow.
func (p *Policy) Decide(f Flow) Decision {
	if p == nil || f.Direction != Outbound {
		return Decision{Rule: DefaultDeny}
	}
	src, dst := f.Src.Addr().Unmap(), f.Dst.Addr().Unmap()
	for i := range p.rules {
		r := &p.rules[i]
		if !r.from.contains(src) || !r.to.contains(dst) {
			continue
		}
		if m := r.match(f.Transport, f.Dst.Port()); m != nil {
			return Decision{Allow: r.action == Allow, Rule: r.name, Protocol: m.name, Filter: m.filter, Settings: r.settings}
		}
	}
	return Decision{Rule: DefaultDeny}
}

// Permits decides whether client may use protocol, the name of a protocol
// definition, wherever it connects: the check the filter SDK makes before it
// grants a secondary connection of that protocol (ISA's
// FWX_E_PROTOCOL_RULES_DENIED). The first access rule whose "from" contains
// client and that lists the protocol, or a built-in protocol covering all of
// its transports (any), decides; its destinations are not looked at,
// since a secondary's destination is the protocol's business. Failing
// that, a publication of the protocol whose server is client allows it.
func (p *Policy) Permits(client netip.Addr, protocol string) Decision {
	if p == nil {
		return Decision{Rule: DefaultDeny}
	}
	client = client.Unmap()
	for i := range p.rules {
		r := &p.rules[i]
		if !r.from.contains(client) {
			continue
		}
		for j := range r.protos {
			if m := &r.protos[j]; m.name == protocol || m.name == "any" {
				return Decision{Allow: r.action == Allow, Rule: r.name, Protocol: protocol, Filter: m.filter, Settings: r.settings}
			}
		}
	}
	// A published server may use its publication's protocol: the filter
	// of a published FTP server grants its data connections with it.
	for i := range p.pubs {
		if pub := &p.pubs[i]; pub.Protocol == protocol && pub.Server.Addr().Unmap() == client {
			return Decision{Allow: true, Rule: pub.Name, Protocol: protocol, Filter: pub.Filter, Settings: pub.Settings}
		}
	}
	return Decision{Rule: DefaultDeny}
}

// Filters returns the names of the application filters the policy binds to
// the protocols its rules and publications use, each once, in file order.
// A filter no rule reaches stays off.
func (p *Policy) Filters() []string {
	if p == nil {
		return nil
	}
	var out []string
	add := func(name string) {
		if name != "" && !slices.Contains(out, name) {
			out = append(out, name)
		}
	}
	for i := range p.rules {
		for j := range p.rules[i].protos {
			add(p.rules[i].protos[j].filter)
		}
	}
	for i := range p.pubs {
		add(p.pubs[i].Filter)
	}
	return out
}

// Publications returns the policy's publish rules in file order. The slice
// is a copy; the caller may keep or change it.
func (p *Policy) Publications() []Publication {
	if p == nil || len(p.pubs) == 0 {
		return nil
	}
	out := make([]Publication, len(p.pubs))
	for i := range p.pubs {
		out[i] = p.pubs[i].Publication
	}
	return out
}

// Published returns the publish rule for an inbound flow from src that
// reached the gateway's outside at listen over transport t, and whether
// there is one. A rule matches when the transport and listen port are
// equal, its listen address is unset or equal to listen's, and src is in one
// of its "from" networks (the built-in "external" contains every source).
// Published does not allocate.
func (p *Policy) Published(t Transport, listen netip.AddrPort, src netip.Addr) (Publication, bool) {
	if p == nil {
		return Publication{}, false
	}
	addr, src := listen.Addr().Unmap(), src.Unmap()
	for i := range p.pubs {
		pub := &p.pubs[i]
		if pub.Transport != t || pub.Listen.Port() != listen.Port() {
			continue
		}
		if !pub.listensOn(addr) {
			continue
		}
		if !pub.from.contains(src) {
			continue
		}
		return pub.Publication, true
	}
	return Publication{}, false
}

// listensOn reports whether the publication takes connections to fwx's
// address a: the address it names, or, naming none, any of fwx's of the
// server's family.
func (p *Publication) listensOn(a netip.Addr) bool {
	if p.Listen.Addr().IsValid() {
		return p.Listen.Addr() == a
	}
	return a.Is6() == p.Server.Addr().Is6()
}

// listen6 reports whether the publication listens on IPv6.
func (p *Publication) listen6() bool {
	if p.Listen.Addr().IsValid() {
		return p.Listen.Addr().Is6()
	}
	return p.Server.Addr().Is6()
}
