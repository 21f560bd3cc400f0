package policy

import (
	"maps"
	"net/netip"
	"slices"
	"strconv"
)

// The second half of Parse: resolve the names that rules and publish rules
// use, check what needs the whole file (duplicates, references, conflicts),
// and build the runtime form.

// Built-in network names. Built-in networks are sides of the gateway, like
// ISA Server's Internal and External networks, not address sets.
const (
	netInternal = "internal"
	netExternal = "external"
	netAny      = "any"
)

func isBuiltinNetwork(name string) bool {
	return name == netInternal || name == netExternal || name == netAny
}

// builtinProtocol returns the built-in protocol called name. All built-ins
// match both directions and every port.
func builtinProtocol(name string) (*protocolDef, bool) {
	var ts uint8
	switch name {
	case "any":
		ts = allTransports
	case "any-tcp":
		ts = bit(TCP)
	case "any-udp":
		ts = bit(UDP)
	case "ping":
		ts = bit(ICMP)
	default:
		return nil, false
	}
	return &protocolDef{name: name, transports: ts, dir: dirBoth, valid: true}, true
}

func isBuiltinProtocol(name string) bool {
	_, ok := builtinProtocol(name)
	return ok
}

// match returns the runtime form of pd.
func (pd *protocolDef) match() protoMatch {
	return protoMatch{name: pd.name, filter: pd.filter, transports: pd.transports, ports: pd.ports}
}

// single returns pd's transport when it has exactly one, else 0.
func (pd *protocolDef) single() Transport {
	for _, t := range []Transport{TCP, UDP, ICMP} {
		if pd.transports == bit(t) {
			return t
		}
	}
	return 0
}

// singlePort returns pd's port when it has exactly one, else 0.
func (pd *protocolDef) singlePort() uint16 {
	if len(pd.ports) == 1 && pd.ports[0].lo == pd.ports[0].hi {
		return pd.ports[0].lo
	}
	return 0
}

// compile resolves c and builds the Policy. It reports problems to d; the
// Policy it returns is meaningful only if there were none.
func (d *decoder) compile(c *config) *Policy {
	nets := make(map[string]*networkDef, len(c.networks))
	for _, n := range c.networks {
		nets[n.name] = n // networks reported duplicates already
	}
	protos := make(map[string]*protocolDef, len(c.protocols))
	for _, pd := range c.protocols {
		if pd.name == "" || isBuiltinProtocol(pd.name) {
			continue
		}
		if first, dup := protos[pd.name]; dup {
			d.errorf(pd.at, "duplicate protocol %q (first defined at line %d)", pd.name, first.at.line)
			continue
		}
		protos[pd.name] = pd
	}
	r := resolver{d: d, nets: nets, protos: protos}
	p := &Policy{opts: c.opts, file: d.file}
	p.rules = r.rules(c.rules)
	p.pubs = r.publications(c.publish)
	p.filters = r.filters
	p.settings = r.settings
	p.warnings = r.warnings
	return p
}

// resolver looks up the names a file uses.
type resolver struct {
	d      *decoder
	nets   map[string]*networkDef
	protos map[string]*protocolDef

	filters  []filterAt    // the filters of the protocols used, in file order
	settings []settingsUse // the rules' filter_settings, in file order
	warnings []*Error
}

// filterAt is a filter name and where a protocol definition that a rule or
// publication uses names it.
type filterAt struct {
	name string
	at   pos
}

// protocol returns the protocol ref names, reporting it if unknown; nil if
// unknown or itself invalid (already reported).
func (r *resolver) protocol(ref ref) *protocolDef {
	if pd, ok := builtinProtocol(ref.name); ok {
		return pd
	}
	pd, ok := r.protos[ref.name]
	if !ok {
		r.d.errorf(ref.at, "unknown protocol %q%s", ref.name, suggest(ref.name, r.protocolNames()))
		return nil
	}
	if !pd.valid {
		return nil
	}
	if pd.filter != "" && !slices.ContainsFunc(r.filters, func(f filterAt) bool { return f.at == pd.filterAt }) {
		r.filters = append(r.filters, filterAt{pd.filter, pd.filterAt})
	}
	return pd
}

// addrSet resolves a list of network names as seen from one side of the
// gateway: side is the built-in network that contains every address there.
func (r *resolver) addrSet(refs []ref, side string) addrSet {
	var s addrSet
	for _, ref := range refs {
		switch ref.name {
		case netAny, side:
			s.all = true
		case netInternal, netExternal:
			// The other side's built-in network holds no address seen here.
		default:
			n, ok := r.nets[ref.name]
			if !ok {
				r.d.errorf(ref.at, "unknown network %q%s", ref.name, suggest(ref.name, r.networkNames()))
				continue
			}
			s.prefixes = appendNew(s.prefixes, n.prefixes...)
		}
	}
	if s.all {
		s.prefixes = nil
	}
	return s
}

// appendNew appends to dst the prefixes it does not hold yet.
func appendNew(dst []netip.Prefix, ps ...netip.Prefix) []netip.Prefix {
	for _, p := range ps {
		dup := false
		for _, q := range dst {
			dup = dup || p == q
		}
		if !dup {
			dst = append(dst, p)
		}
	}
	return dst
}

// rules resolves the access rules.
func (r *resolver) rules(defs []*ruleDef) []rule {
	first := make(map[string]int)
	out := make([]rule, 0, len(defs))
	for _, rd := range defs {
		if rd.name != "" {
			if line, dup := first[rd.name]; dup {
				r.d.errorf(rd.at, "duplicate rule %q (first defined at line %d)", rd.name, line)
			} else {
				first[rd.name] = rd.at.line
			}
		}
		ru := rule{
			name:   rd.name,
			action: rd.action,
			from:   r.addrSet(rd.from, netInternal),
			to:     r.addrSet(rd.to, netExternal),
		}
		var refs []ref
		var pds []*protocolDef
		for _, ref := range rd.protocols {
			// A protocol with direction inbound describes flows that access
			// rules never see; it is legal here but matches nothing.
			if pd := r.protocol(ref); pd != nil && pd.dir.outbound() {
				ru.protos = append(ru.protos, pd.match())
				refs = append(refs, ref)
				pds = append(pds, pd)
			}
		}
		if rd.settingsAt != nil {
			if f := r.settingsFilter(*rd.settingsAt, pds); f != "" {
				ru.settings = rd.settings
				r.settings = append(r.settings, settingsUse{f, rd.settings})
			}
		}
		out = append(out, ru)
		r.shadows(out, defs, refs)
	}
	return out
}

// publications resolves the publish rules and reports conflicts between them.
func (r *resolver) publications(defs []*publishDef) []publication {
	first := make(map[string]int)
	out := make([]publication, 0, len(defs))
	var outIdx []int // the index in defs of each entry of out, for conflicts
	for i, def := range defs {
		if def.name != "" {
			if line, dup := first[def.name]; dup {
				r.d.errorf(def.at, "duplicate publish rule %q (first defined at line %d)", def.name, line)
			} else {
				first[def.name] = def.at.line
			}
		}
		from := addrSet{all: true}
		if def.from != nil {
			from = r.addrSet(def.from, netExternal)
		}
		if def.protocol.name == "" {
			continue // missing or bad; reported
		}
		pd := r.protocol(def.protocol)
		if pd == nil {
			continue
		}
		t := pd.single()
		switch {
		case t == 0:
			r.d.errorf(def.protocol.at, "protocol %q has no single transport; publishing needs a tcp or udp protocol", pd.name)
			continue
		case t == ICMP:
			r.d.errorf(def.protocol.at, "protocol %q is icmp; only tcp and udp can be published", pd.name)
			continue
		case !pd.dir.inbound():
			r.d.errorf(def.protocol.at, "protocol %q has direction outbound; publishing needs a protocol with direction inbound or both", pd.name)
			continue
		}
		listen := def.listen
		if listen.Port() == 0 {
			port := pd.singlePort()
			if port == 0 {
				r.d.errorf(def.listenAt, "needs a port: protocol %q has no single port to take it from", pd.name)
				continue
			}
			listen = netip.AddrPortFrom(listen.Addr(), port)
		}
		server := def.server
		if !server.Addr().IsValid() {
			continue // missing or bad; reported
		}
		if server.Port() == 0 {
			server = netip.AddrPortFrom(server.Addr(), listen.Port())
		}
		pub := publication{
			Publication: Publication{
				Name:      def.name,
				Transport: t,
				Listen:    listen,
				Server:    server,
				Protocol:  pd.name,
				Filter:    pd.filter,
			},
			from: from,
		}
		if def.settingsAt != nil {
			if f := r.settingsFilter(*def.settingsAt, []*protocolDef{pd}); f != "" {
				pub.Settings = def.settings
				r.settings = append(r.settings, settingsUse{f, def.settings})
			}
		}
		for j := range out {
			o := &out[j]
			k := outIdx[j]
			switch {
			case conflicts(&o.Publication, &pub.Publication):
				r.d.errorf(def.listenAt, "%s %s conflicts with publish[%d] %q (line %d): both listen on it",
					t, listenString(listen), k, o.Name, defs[k].at.line)
			case o.Transport == t && o.Server == server:
				// A server endpoint has one external endpoint
				// (endpoint-independent mapping): its replies could
				// not leave from two.
				r.d.errorf(def.serverAt, "%s server %v is already published by publish[%d] %q (line %d) on %s; "+
					"a server endpoint can be published once: list several sources in one rule's from, or give this one another server port",
					t, server, k, o.Name, defs[k].at.line, listenString(o.Listen))
			}
		}
		out = append(out, pub)
		outIdx = append(outIdx, i)
	}
	return out
}

// conflicts reports whether a and b could both take the same inbound flow:
// same transport and port, and listen addresses that overlap (equal, or
// either one any). Publications on different addresses of a multihomed
// gateway may share a port.
func conflicts(a, b *Publication) bool {
	if a.Transport != b.Transport || a.Listen.Port() != b.Listen.Port() || a.listen6() != b.listen6() {
		return false
	}
	aa, ba := a.Listen.Addr(), b.Listen.Addr()
	return !aa.IsValid() || !ba.IsValid() || aa == ba
}

// listenString formats a listen address as the file spells it, ":PORT" for
// any address.
func listenString(ap netip.AddrPort) string {
	if !ap.Addr().IsValid() {
		return ":" + strconv.Itoa(int(ap.Port()))
	}
	return ap.String()
}

func (r *resolver) networkNames() []string {
	return append([]string{netInternal, netExternal, netAny}, slices.Sorted(maps.Keys(r.nets))...)
}

func (r *resolver) protocolNames() []string {
	return append([]string{"any", "any-tcp", "any-udp", "ping"}, slices.Sorted(maps.Keys(r.protos))...)
}
