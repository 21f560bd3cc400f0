package policy

import (
	"bytes"
	"fmt"
	"io"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"
)

// Load reads and parses the policy file at path; see [Parse].
func Load(path string) (*Policy, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("policy: %w", err)
	}
	return Parse(path, data)
}

// Parse parses and validates a policy file (see the package documentation
// for its format). name is the file's name for error messages; "policy" if
// empty. An empty file is a valid policy that denies everything.
//
// When the file has problems, Parse returns every one of them, each an
// [*Error] on its own line, joined into one error.
func Parse(name string, data []byte) (*Policy, error) {
	if name == "" {
		name = "policy"
	}
	d := &decoder{errorList{file: name}}
	root := d.document(data)
	if len(d.errs) > 0 {
		return nil, d.err()
	}
	var c config
	if root != nil {
		d.config(root, &c)
	}
	p := d.compile(&c)
	if err := d.err(); err != nil {
		return nil, err
	}
	return p, nil
}

// document parses data as YAML and returns its root node, or nil for an
// empty document. It reports syntax errors and files of several documents.
func (d *decoder) document(data []byte) *yaml.Node {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var doc yaml.Node
	if err := dec.Decode(&doc); err != nil {
		if err != io.EOF {
			d.syntax(err, data)
		}
		return nil
	}
	var next yaml.Node
	switch err := dec.Decode(&next); {
	case err == io.EOF:
	case err != nil:
		d.syntax(err, data)
	default:
		d.errorf(pos{line: next.Line}, "a policy file holds one YAML document; this is a second one")
	}
	if doc.Kind != yaml.DocumentNode || len(doc.Content) == 0 || isNull(doc.Content[0]) {
		return nil
	}
	return doc.Content[0]
}

// config is a policy file as decoded, before names are resolved. Each part
// keeps its position for the errors that resolving may find.
type config struct {
	networks  []*networkDef
	protocols []*protocolDef
	rules     []*ruleDef
	publish   []*publishDef
	opts      Options
}

// ref is a use of a name (a network or a protocol) in a rule.
type ref struct {
	name string
	at   pos
}

type networkDef struct {
	name     string
	at       pos
	prefixes []netip.Prefix
}

// protoDir is a protocol definition's direction: which flows it describes.
type protoDir uint8

const (
	dirOutbound protoDir = iota
	dirInbound
	dirBoth
)

func (d protoDir) outbound() bool { return d != dirInbound }
func (d protoDir) inbound() bool  { return d != dirOutbound }

type protocolDef struct {
	name       string
	at         pos
	transports uint8 // a set of Transport.bit; one bit for a user protocol
	ports      []portRange
	dir        protoDir
	filter     string
	filterAt   pos
	valid      bool // decoded without error; only valid ones are checked further
}

type ruleDef struct {
	name                string
	at                  pos
	action              Action
	from, to, protocols []ref
	settings            Settings
	settingsAt          *pos // nil: no filter_settings
}

type publishDef struct {
	name     string
	at       pos
	protocol ref
	listen   netip.AddrPort // Port 0: take the protocol's port
	listenAt pos
	server   netip.AddrPort // Port 0: the listen port
	serverAt pos
	from     []ref // nil: any

	settings   Settings
	settingsAt *pos // nil: no filter_settings
}

// config decodes the root mapping.
func (d *decoder) config(root *yaml.Node, c *config) {
	d.fields(root, "",
		field{name: "networks", decode: func(v *yaml.Node, p pos) { d.networks(v, p, c) }},
		field{name: "protocols", decode: func(v *yaml.Node, p pos) {
			d.items(v, p, func(v *yaml.Node, p pos) { c.protocols = append(c.protocols, d.protocol(v, p)) })
		}},
		field{name: "rules", decode: func(v *yaml.Node, p pos) {
			d.items(v, p, func(v *yaml.Node, p pos) { c.rules = append(c.rules, d.rule(v, p)) })
		}},
		field{name: "publish", decode: func(v *yaml.Node, p pos) {
			d.items(v, p, func(v *yaml.Node, p pos) { c.publish = append(c.publish, d.publish(v, p)) })
		}},
		field{name: "options", decode: func(v *yaml.Node, p pos) { d.options(v, p, &c.opts) }},
	)
}

// networks decodes the networks section: a mapping from name to a list of
// prefixes and addresses. Names are mapping keys, so duplicates are caught
// here rather than by yaml.v3, which accepts them in a Node.
func (d *decoder) networks(n *yaml.Node, p pos, c *config) {
	if n.Kind != yaml.MappingNode {
		d.errorf(p, "must be a mapping from network names to addresses, not %s", kindName(n))
		return
	}
	first := make(map[string]int)
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		kp := at(k, child(p.path, k.Value))
		name, ok := d.name(k, kp)
		if !ok {
			continue
		}
		if isBuiltinNetwork(name) {
			d.errorf(kp, "%q is a built-in network (internal, external, any) and cannot be redefined", name)
			continue
		}
		if line, dup := first[name]; dup {
			d.errorf(kp, "duplicate network %q (first defined at line %d)", name, line)
			continue
		}
		first[name] = k.Line
		net := &networkDef{name: name, at: kp}
		c.networks = append(c.networks, net)
		if v = d.value(v, kp.path); v == nil {
			continue
		}
		count := 0
		if !isNull(v) {
			count = d.list(v, at(v, kp.path), func(v *yaml.Node, p pos) {
				if s, ok := d.scalar(v, p); ok {
					if pfx, err := parsePrefix(s); err != nil {
						d.errorf(p, "%v", err)
					} else {
						net.prefixes = append(net.prefixes, pfx)
					}
				}
			})
		}
		if count == 0 {
			d.errorf(kp, "network %q lists no addresses", name)
		}
	}
}

// parsePrefix parses a network entry: a CIDR prefix or a single address.
func parsePrefix(s string) (netip.Prefix, error) {
	var pfx netip.Prefix
	if strings.Contains(s, "/") {
		var err error
		if pfx, err = netip.ParsePrefix(s); err != nil {
			return netip.Prefix{}, fmt.Errorf("bad prefix %s: want an address/bits prefix such as 10.0.0.0/24", quote(s))
		}
		if m := pfx.Masked(); m != pfx {
			return netip.Prefix{}, fmt.Errorf("prefix %s has bits set after the /%d; did you mean %s?", s, pfx.Bits(), m)
		}
	} else {
		a, err := netip.ParseAddr(s)
		if err != nil || a.Zone() != "" {
			return netip.Prefix{}, fmt.Errorf("bad address %s: want an IP address or a CIDR prefix such as 10.0.0.0/24", quote(s))
		}
		pfx = netip.PrefixFrom(a, a.BitLen())
	}
	if pfx.Addr().Is4In6() {
		return netip.Prefix{}, fmt.Errorf("%s is IPv4-mapped IPv6; write the IPv4 form", s)
	}
	return pfx, nil
}

// protocol decodes one protocol definition.
func (d *decoder) protocol(n *yaml.Node, p pos) *protocolDef {
	errs := len(d.errs)
	pd := &protocolDef{at: p}
	var transport Transport
	var portsAt *pos
	nports := 0
	d.fields(n, p.path,
		field{name: "name", required: true, decode: func(v *yaml.Node, p pos) {
			pd.name, _ = d.name(v, p)
			pd.at = p
			if isBuiltinProtocol(pd.name) {
				d.errorf(p, "%q is a built-in protocol (any, any-tcp, any-udp, ping) and cannot be redefined", pd.name)
			}
		}},
		field{name: "transport", required: true, decode: func(v *yaml.Node, p pos) {
			if i, ok := d.enum(v, p, "tcp", "udp", "icmp"); ok {
				transport = []Transport{TCP, UDP, ICMP}[i]
			}
		}},
		field{name: "ports", decode: func(v *yaml.Node, p pos) {
			portsAt = &p
			nports = d.list(v, p, func(v *yaml.Node, p pos) {
				if s, ok := d.scalar(v, p); ok {
					if r, err := parsePorts(s); err != nil {
						d.errorf(p, "%v", err)
					} else {
						pd.ports = append(pd.ports, r)
					}
				}
			})
		}},
		field{name: "direction", decode: func(v *yaml.Node, p pos) {
			if i, ok := d.enum(v, p, "outbound", "inbound", "both"); ok {
				pd.dir = protoDir(i)
			}
		}},
		field{name: "filter", decode: func(v *yaml.Node, p pos) {
			pd.filterAt = p
			if s, ok := d.scalar(v, p); ok {
				if !isFilterName(s) {
					d.errorf(p, "bad filter name %s: want printable text of at most %d bytes", quote(s), maxName)
				}
				pd.filter = s
			}
		}},
	)
	pd.transports = bit(transport)
	switch {
	case transport == ICMP && portsAt != nil:
		d.errorf(*portsAt, "icmp has no ports (an icmp protocol matches echo requests)")
	case (transport == TCP || transport == UDP) && portsAt == nil:
		d.errorf(pos{line: p.line, path: child(p.path, "ports")}, "required field missing: %s needs ports", transport)
	case (transport == TCP || transport == UDP) && nports == 0:
		d.errorf(*portsAt, "%s needs at least one port", transport)
	}
	pd.valid = len(d.errs) == errs
	return pd
}

// parsePorts parses a port ("80") or an inclusive range of ports
// ("8000-8080").
func parsePorts(s string) (portRange, error) {
	bad := fmt.Errorf("bad port %s: want a number from 1 to 65535 or a range such as \"8000-8080\"", quote(s))
	port := func(s string) (uint16, error) {
		n, err := strconv.Atoi(strings.TrimSpace(s))
		switch {
		case err != nil:
			return 0, bad
		case n < 1 || n > 65535:
			return 0, fmt.Errorf("port %d out of range 1..65535", n)
		}
		return uint16(n), nil
	}
	los, his, isRange := strings.Cut(s, "-")
	if !isRange || strings.TrimSpace(los) == "" { // "80", or a negative number
		p, err := port(s)
		return portRange{p, p}, err
	}
	lo, err := port(los)
	if err != nil {
		return portRange{}, err
	}
	hi, err := port(his)
	if err != nil {
		return portRange{}, err
	}
	if lo > hi {
		return portRange{}, fmt.Errorf("port range %d-%d is backwards: low end above high end", lo, hi)
	}
	return portRange{lo, hi}, nil
}

// refs decodes a list of names used by a rule; it reports an empty list.
func (d *decoder) refs(n *yaml.Node, p pos, what string) []ref {
	var refs []ref
	count := d.list(n, p, func(v *yaml.Node, p pos) {
		if name, ok := d.name(v, p); ok {
			refs = append(refs, ref{name: name, at: p})
		}
	})
	if count == 0 {
		d.errorf(p, "must name at least one %s", what)
	}
	return refs
}

// rule decodes one access rule.
func (d *decoder) rule(n *yaml.Node, p pos) *ruleDef {
	rd := &ruleDef{at: p}
	d.fields(n, p.path,
		field{name: "name", required: true, decode: func(v *yaml.Node, p pos) {
			rd.name, _ = d.name(v, p)
			rd.at = p
			if rd.name == DefaultDeny {
				d.errorf(p, "%q is reserved for flows that no rule matches", DefaultDeny)
			}
		}},
		field{name: "action", required: true, decode: func(v *yaml.Node, p pos) {
			if i, ok := d.enum(v, p, "allow", "deny"); ok {
				rd.action = [...]Action{Allow, Deny}[i]
			}
		}},
		field{name: "from", required: true, decode: func(v *yaml.Node, p pos) { rd.from = d.refs(v, p, "network") }},
		field{name: "to", required: true, decode: func(v *yaml.Node, p pos) { rd.to = d.refs(v, p, "network") }},
		field{name: "protocols", required: true, decode: func(v *yaml.Node, p pos) { rd.protocols = d.refs(v, p, "protocol") }},
		field{name: "filter_settings", decode: func(v *yaml.Node, p pos) { rd.settings, rd.settingsAt = d.settings(v, p), &p }},
	)
	return rd
}

// publish decodes one server-publishing rule.
func (d *decoder) publish(n *yaml.Node, p pos) *publishDef {
	pd := &publishDef{at: p, listenAt: pos{line: p.line, path: child(p.path, "listen")}}
	d.fields(n, p.path,
		field{name: "name", required: true, decode: func(v *yaml.Node, p pos) {
			pd.name, _ = d.name(v, p)
			pd.at = p
		}},
		field{name: "protocol", required: true, decode: func(v *yaml.Node, p pos) {
			if name, ok := d.name(v, p); ok {
				pd.protocol = ref{name: name, at: p}
			}
		}},
		field{name: "listen", decode: func(v *yaml.Node, p pos) {
			pd.listenAt = p
			if s, ok := d.scalar(v, p); ok {
				var err error
				if pd.listen, err = parseListen(s); err != nil {
					d.errorf(p, "%v", err)
				}
			}
		}},
		field{name: "server", required: true, decode: func(v *yaml.Node, p pos) {
			pd.serverAt = p
			if s, ok := d.scalar(v, p); ok {
				var err error
				if pd.server, err = parseServer(s); err != nil {
					d.errorf(p, "%v", err)
				}
			}
		}},
		field{name: "from", decode: func(v *yaml.Node, p pos) { pd.from = d.refs(v, p, "network") }},
		field{name: "filter_settings", decode: func(v *yaml.Node, p pos) { pd.settings, pd.settingsAt = d.settings(v, p), &p }},
	)
	return pd
}

// parseListen parses a publish rule's listen address: "[ADDR]:PORT", or
// "ADDR" alone to take the port from the protocol. An unspecified address
// (0.0.0.0, ::) means any address, as if omitted.
func parseListen(s string) (netip.AddrPort, error) {
	var a netip.Addr
	var port uint16
	if ps, ok := strings.CutPrefix(s, ":"); ok {
		n, err := strconv.Atoi(ps)
		if err != nil || n < 1 || n > 65535 {
			return netip.AddrPort{}, fmt.Errorf("bad listen port %s: want 1..65535", quote(ps))
		}
		port = uint16(n)
	} else if s != "" {
		var err error
		if a, port, err = parseAddrPort(s); err != nil {
			return netip.AddrPort{}, fmt.Errorf("bad listen address %s: want [ADDR]:PORT, such as \":8080\" or \"192.0.2.1:443\"", quote(s))
		}
		switch {
		case a.Zone() != "" || a.Is4In6():
			return netip.AddrPort{}, fmt.Errorf("bad listen address %s: no zones or IPv4-mapped IPv6", quote(s))
		case a.IsMulticast() || a == netip.AddrFrom4([4]byte{255, 255, 255, 255}):
			return netip.AddrPort{}, fmt.Errorf("bad listen address %s: not a unicast address", quote(s))
		case a.IsUnspecified():
			a = netip.Addr{}
		}
	}
	return netip.AddrPortFrom(a, port), nil
}

// parseServer parses a publish rule's server: "ADDR[:PORT]", ADDR a specific
// unicast address (IPv6 in brackets when a port follows).
func parseServer(s string) (netip.AddrPort, error) {
	a, port, err := parseAddrPort(s)
	if err != nil {
		return netip.AddrPort{}, fmt.Errorf("bad server %s: want ADDR[:PORT], such as \"10.0.0.2:80\"", quote(s))
	}
	if a.Zone() != "" || a.Is4In6() || !a.IsGlobalUnicast() {
		return netip.AddrPort{}, fmt.Errorf("bad server %s: must be a specific unicast address (not unspecified, loopback, link-local, multicast or broadcast; no zone, no IPv4-mapped IPv6)", quote(s))
	}
	return netip.AddrPortFrom(a, port), nil
}

// parseAddrPort parses "ADDR:PORT", "[V6]:PORT", "ADDR" or "[V6]"; port 0
// means absent.
func parseAddrPort(s string) (netip.Addr, uint16, error) {
	if ap, err := netip.ParseAddrPort(s); err == nil {
		if ap.Port() == 0 {
			return netip.Addr{}, 0, fmt.Errorf("port 0")
		}
		return ap.Addr(), ap.Port(), nil
	}
	if inner, ok := strings.CutPrefix(s, "["); ok {
		s, ok = strings.CutSuffix(inner, "]")
		if !ok {
			return netip.Addr{}, 0, fmt.Errorf("unbalanced [")
		}
	}
	a, err := netip.ParseAddr(s)
	return a, 0, err
}

// options decodes the options section.
func (d *decoder) options(n *yaml.Node, p pos, o *Options) {
	d.fields(n, p.path,
		field{name: "reject", decode: func(v *yaml.Node, p pos) {
			if i, ok := d.enum(v, p, "reply", "drop"); ok {
				o.Reject = [...]RejectMode{RejectReply, RejectDrop}[i]
			}
		}},
		field{name: "reload", decode: func(v *yaml.Node, p pos) {
			if i, ok := d.enum(v, p, "keep", "strict"); ok {
				o.Reload = [...]ReloadMode{ReloadKeep, ReloadStrict}[i]
			}
		}},
		field{name: "filtering", decode: func(v *yaml.Node, p pos) {
			if i, ok := d.enum(v, p, "endpoint-independent", "address-dependent", "address-and-port-dependent"); ok {
				o.Filtering = [...]Filtering{EndpointIndependent, AddressDependent, AddressAndPortDependent}[i]
			}
		}},
		field{name: "timeouts", decode: func(v *yaml.Node, p pos) {
			t := &o.Timeouts
			d.fields(v, p.path,
				field{name: "udp", decode: d.duration(&t.UDP)},
				field{name: "tcp-syn-sent", decode: d.duration(&t.TCPSynSent)},
				field{name: "tcp-syn-recv", decode: d.duration(&t.TCPSynRecv)},
				field{name: "tcp-established", decode: d.duration(&t.TCPEstablished)},
				field{name: "tcp-transitory", decode: d.duration(&t.TCPTransitory)},
				field{name: "tcp-rst", decode: d.duration(&t.TCPRST)},
				field{name: "icmp", decode: d.duration(&t.ICMP)},
			)
		}},
		field{name: "limits", decode: func(v *yaml.Node, p pos) {
			l := &o.Limits
			d.fields(v, p.path,
				field{name: "max-flows", decode: d.limit(&l.MaxFlows)},
				field{name: "client-flows", decode: d.limit(&l.ClientFlows)},
				field{name: "client-half-open", decode: d.limit(&l.ClientHalfOpen)},
				field{name: "client-rate", decode: d.limit(&l.ClientRate)},
				field{name: "client-dials", decode: d.limit(&l.ClientDials)},
			)
		}},
		field{name: "inside-networks", decode: func(v *yaml.Node, p pos) {
			o.InsideNetworks = d.prefixes(v, p, func(pfx netip.Prefix) error {
				if isSpecial(pfx) {
					return fmt.Errorf("%v is a loopback, multicast, broadcast, link-local or reserved block, never a host's source", pfx)
				}
				return nil
			})
		}},
		field{name: "special-destinations", decode: func(v *yaml.Node, p pos) {
			o.SpecialDestinations = d.prefixes(v, p, func(pfx netip.Prefix) error {
				if !isSpecial(pfx) || pfx.Addr().Is6() && !pfx.Addr().IsMulticast() {
					return fmt.Errorf("%v is not within 0.0.0.0/8, 127.0.0.0/8, 224.0.0.0/4, 240.0.0.0/4 or ff00::/8 (loopback, multicast, broadcast); ordinary destinations need no option", pfx)
				}
				return nil
			})
		}},
		field{name: "nptv6", decode: func(v *yaml.Node, p pos) {
			d.items(v, p, func(item *yaml.Node, p pos) {
				var n NPTv6
				d.fields(item, p.path,
					field{name: "inside", required: true, decode: d.nptPrefix(&n.Inside)},
					field{name: "outside", required: true, decode: d.nptPrefix(&n.Outside)},
				)
				switch {
				case !n.Inside.IsValid() || !n.Outside.IsValid():
				case n.Inside.Bits() != n.Outside.Bits():
					d.errorf(p, "inside %v and outside %v must have the same length (RFC 6296)", n.Inside, n.Outside)
				case n.Inside.Overlaps(n.Outside):
					d.errorf(p, "inside %v and outside %v overlap", n.Inside, n.Outside)
				default:
					o.NPTv6 = append(o.NPTv6, n)
				}
			})
		}},
	)
}

// nptPrefix returns a field decoder for a prefix of an NPTv6 translation:
// IPv6, at most 64 bits long, not a special block.
func (d *decoder) nptPrefix(dst *netip.Prefix) func(*yaml.Node, pos) {
	return func(v *yaml.Node, p pos) {
		s, ok := d.scalar(v, p)
		if !ok {
			return
		}
		pfx, err := netip.ParsePrefix(s)
		switch {
		case err != nil:
			d.errorf(p, "%q is not a prefix, such as fd00:1::/48", s)
		case !pfx.Addr().Is6() || pfx.Addr().Is4In6():
			d.errorf(p, "%v is not an IPv6 prefix: NPTv6 translates IPv6", pfx)
		case pfx.Bits() > 64:
			d.errorf(p, "%v is longer than /64 (RFC 6296 translates the routing prefix)", pfx)
		case isSpecial(pfx):
			d.errorf(p, "%v is a link-local, multicast or reserved block", pfx)
		default:
			*dst = pfx.Masked()
		}
	}
}

// prefixes decodes a list of prefixes or addresses, each checked by check.
func (d *decoder) prefixes(n *yaml.Node, p pos, check func(netip.Prefix) error) []netip.Prefix {
	var out []netip.Prefix
	d.list(n, p, func(v *yaml.Node, p pos) {
		s, ok := d.scalar(v, p)
		if !ok {
			return
		}
		pfx, err := parsePrefix(s)
		if err == nil {
			err = check(pfx)
		}
		if err != nil {
			d.errorf(p, "%v", err)
			return
		}
		out = append(out, pfx)
	})
	return out
}

// isSpecial reports whether prefix pfx lies within a block that is never a
// unicast host fwx forwards for: 0.0.0.0/8, 127.0.0.0/8, 224.0.0.0/4
// (multicast) or 240.0.0.0/4 (reserved, limited broadcast); for IPv6
// ::/96 (unspecified, loopback, IPv4-compatible), ::ffff:0:0/96
// (IPv4-mapped), fe80::/10 (link-local) and ff00::/8 (multicast).
func isSpecial(pfx netip.Prefix) bool {
	for _, b := range []netip.Prefix{
		netip.MustParsePrefix("0.0.0.0/8"), netip.MustParsePrefix("127.0.0.0/8"),
		netip.MustParsePrefix("224.0.0.0/4"), netip.MustParsePrefix("240.0.0.0/4"),
		netip.MustParsePrefix("::/96"), netip.MustParsePrefix("::ffff:0:0/96"),
		netip.MustParsePrefix("fe80::/10"), netip.MustParsePrefix("ff00::/8"),
	} {
		if b.Bits() <= pfx.Bits() && b.Contains(pfx.Addr()) {
			return true
		}
	}
	return false
}

// limit returns a field decoder for a limit: a positive integer, or "off"
// for none ([NoLimit]).
func (d *decoder) limit(dst *int) func(*yaml.Node, pos) {
	return func(v *yaml.Node, p pos) {
		s, ok := d.scalar(v, p)
		if !ok {
			return
		}
		if s == "off" {
			*dst = NoLimit
			return
		}
		n, err := strconv.Atoi(s)
		if err != nil || n <= 0 {
			d.errorf(p, "bad limit %s: want a positive integer, or off for none (omit the field for the default)", quote(s))
			return
		}
		*dst = n
	}
}

// duration returns a field decoder for a positive Go duration such as "5m".
func (d *decoder) duration(dst *time.Duration) func(*yaml.Node, pos) {
	return func(v *yaml.Node, p pos) {
		s, ok := d.scalar(v, p)
		if !ok {
			return
		}
		t, err := time.ParseDuration(s)
		switch {
		case err != nil:
			d.errorf(p, "bad duration %s: want a Go duration such as \"90s\", \"5m\" or \"2h4m\"", quote(s))
		case t <= 0:
			d.errorf(p, "duration %s must be positive (omit the field for the default)", s)
		default:
			*dst = t
		}
	}
}
