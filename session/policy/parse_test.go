package policy

import (
	"errors"
	"fmt"
	"net/netip"
	"os"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"
)

// mustParse parses src or fails the test.
func mustParse(tb testing.TB, src string) *Policy {
	tb.Helper()
	p, err := Parse("test.yaml", []byte(src))
	if err != nil {
		tb.Fatalf("Parse: %v", err)
	}
	return p
}

// TestParseErrors checks that each kind of problem is reported with its
// line and field path.
func TestParseErrors(t *testing.T) {
	tests := []struct {
		name string
		src  string
		line int
		path string // empty: a YAML syntax or document error
		msg  string
	}{
		// The example from the package documentation, at its line 12.
		{"unknown network", `networks:
  lab: [10.0.0.0/24]
rules:
  - name: one
    action: allow
    from: [lab]
    to: [external]
    protocols: [any]
  - name: two
    action: allow
    to: [external]
    from: [lan]
    protocols: [any]
`, 12, "rules[1].from[0]", `unknown network "lan" (did you mean "lab"?)`},

		// Unknown keys.
		{"unknown top-level key", "netwrks:\n  lab: [10.0.0.0/8]\n", 1, "netwrks", `unknown field (did you mean "networks"?)`},
		{"unknown rule key", "rules:\n  - name: r\n    acton: allow\n    from: [internal]\n    to: [external]\n    protocols: [any]\n",
			3, "rules[0].acton", `unknown field (did you mean "action"?)`},
		{"unknown protocol key", "protocols:\n  - name: p\n    transport: tcp\n    port: [80]\n", 4, "protocols[0].port", `(did you mean "ports"?)`},
		{"unknown publish key", "publish:\n  - name: p\n    protocol: any-tcp\n    listen: \":22\"\n    servr: 10.0.0.2\n", 5, "publish[0].servr", `did you mean "server"`},
		{"unknown options key", "options:\n  rejekt: drop\n", 2, "options.rejekt", `did you mean "reject"`},
		{"unknown timeout key", "options:\n  timeouts:\n    tcp: 1h\n", 3, "options.timeouts.tcp", "unknown field"},
		{"odd key is quoted in path", "options:\n  \"a b\": 1\n", 2, `options["a b"]`, "unknown field"},

		// Missing required fields.
		{"rule action missing", "rules:\n  - name: r\n    from: [internal]\n    to: [external]\n    protocols: [any]\n",
			2, "rules[0].action", "required field missing"},
		{"rule action null", "rules:\n  - name: r\n    action:\n    from: [internal]\n    to: [external]\n    protocols: [any]\n",
			3, "rules[0].action", "required field has no value"},
		{"protocol name missing", "protocols:\n  - transport: tcp\n    ports: [80]\n", 2, "protocols[0].name", "required field missing"},
		{"tcp ports missing", "protocols:\n  - name: p\n    transport: tcp\n", 2, "protocols[0].ports", "tcp needs ports"},
		{"udp ports empty", "protocols:\n  - name: p\n    transport: udp\n    ports: []\n", 4, "protocols[0].ports", "needs at least one port"},
		{"publish server missing", "publish:\n  - name: p\n    protocol: any-tcp\n    listen: \":22\"\n", 2, "publish[0].server", "required field missing"},
		{"from list empty", "rules:\n  - name: r\n    action: allow\n    from: []\n    to: [external]\n    protocols: [any]\n",
			4, "rules[0].from", "must name at least one network"},
		{"empty network", "networks:\n  lab: []\n", 2, "networks.lab", "lists no addresses"},
		{"null network", "networks:\n  lab:\n", 2, "networks.lab", "lists no addresses"},

		// Duplicates.
		{"duplicate network", "networks:\n  lab: [10.0.0.0/8]\n  lab: [10.1.0.0/16]\n", 3, "networks.lab", `duplicate network "lab" (first defined at line 2)`},
		{"duplicate protocol", "protocols:\n  - name: p\n    transport: icmp\n  - name: p\n    transport: icmp\n", 4, "protocols[1].name", `duplicate protocol "p" (first defined at line 2)`},
		{"duplicate rule", "rules:\n  - {name: r, action: allow, from: internal, to: external, protocols: any}\n  - {name: r, action: deny, from: internal, to: external, protocols: any}\n",
			3, "rules[1].name", `duplicate rule "r" (first defined at line 2)`},
		{"duplicate publish", "publish:\n  - {name: p, protocol: any-tcp, listen: \":22\", server: 10.0.0.2}\n  - {name: p, protocol: any-tcp, listen: \":23\", server: 10.0.0.2}\n",
			3, "publish[1].name", `duplicate publish rule "p" (first defined at line 2)`},
		{"duplicate field", "rules:\n  - name: r\n    action: allow\n    action: deny\n", 4, "rules[0].action", "field given twice (first at line 3)"},
		{"duplicate section", "rules: []\nrules: []\n", 2, "rules", "field given twice"},

		// Names.
		{"built-in network redefined", "networks:\n  internal: [10.0.0.0/8]\n", 2, "networks.internal", "built-in network"},
		{"built-in protocol redefined", "protocols:\n  - name: ping\n    transport: icmp\n", 2, "protocols[0].name", "built-in protocol"},
		{"reserved rule name", "rules:\n  - {name: default-deny, action: deny, from: any, to: any, protocols: any}\n", 2, "rules[0].name", "reserved"},
		{"bad name", "networks:\n  \"my lab\": [10.0.0.0/8]\n", 2, `networks["my lab"]`, `bad name "my lab"`},
		{"unknown protocol", "protocols:\n  - {name: web, transport: tcp, ports: [80]}\nrules:\n  - name: r\n    action: allow\n    from: [internal]\n    to: [external]\n    protocols: [any, wbe]\n",
			8, "rules[0].protocols[1]", `unknown protocol "wbe" (did you mean "web"?)`},
		{"unknown publish network", "publish:\n  - name: p\n    protocol: any-tcp\n    listen: \":22\"\n    server: 10.0.0.2\n    from: [partners]\n",
			6, "publish[0].from[0]", `unknown network "partners"`},

		// Addresses.
		{"bad prefix length", "networks:\n  lab: [10.0.0.0/33]\n", 2, "networks.lab[0]", `bad prefix "10.0.0.0/33"`},
		{"host bits set", "networks:\n  lab:\n    - 10.0.0.0/8\n    - 10.0.0.1/24\n", 4, "networks.lab[1]", "did you mean 10.0.0.0/24?"},
		{"bad address", "networks:\n  lab: [10.0.0.256]\n", 2, "networks.lab[0]", `bad address "10.0.0.256"`},
		{"mapped address", "networks:\n  lab: [\"::ffff:10.0.0.1\"]\n", 2, "networks.lab[0]", "IPv4-mapped"},
		{"zone", "networks:\n  lab: [\"fe80::1%eth0\"]\n", 2, "networks.lab[0]", "bad address"},

		// Ports.
		{"port zero", "protocols:\n  - name: p\n    transport: tcp\n    ports: [0]\n", 4, "protocols[0].ports[0]", "port 0 out of range 1..65535"},
		{"port too big", "protocols:\n  - name: p\n    transport: udp\n    ports: [80, 70000]\n", 4, "protocols[0].ports[1]", "port 70000 out of range"},
		{"negative port", "protocols:\n  - name: p\n    transport: udp\n    ports: [-5]\n", 4, "protocols[0].ports[0]", "port -5 out of range"},
		{"range backwards", "protocols:\n  - name: p\n    transport: tcp\n    ports:\n      - 80\n      - \"9000-8000\"\n", 6, "protocols[0].ports[1]", "backwards"},
		{"range end too big", "protocols:\n  - name: p\n    transport: tcp\n    ports: [\"9000-65536\"]\n", 4, "protocols[0].ports[0]", "port 65536 out of range"},
		{"port not a number", "protocols:\n  - name: p\n    transport: tcp\n    ports: [http]\n", 4, "protocols[0].ports[0]", `bad port "http"`},
		{"ports on icmp", "protocols:\n  - name: p\n    transport: icmp\n    ports: [8]\n", 4, "protocols[0].ports", "icmp has no ports"},

		// Enumerations.
		{"bad transport", "protocols:\n  - name: p\n    transport: sctp\n    ports: [80]\n", 3, "protocols[0].transport", `bad value "sctp" (did you mean "tcp"?); want one of tcp, udp, icmp`},
		{"bad direction", "protocols:\n  - name: p\n    transport: tcp\n    ports: [80]\n    direction: inbund\n", 5, "protocols[0].direction", `(did you mean "inbound"?)`},
		{"bad action", "rules:\n  - {name: r, action: permit, from: any, to: any, protocols: any}\n", 2, "rules[0].action", `bad value "permit"`},
		{"bad reject", "options:\n  reject: rst\n", 2, "options.reject", "want one of reply, drop"},
		{"bad filtering", "options:\n  filtering: full-cone\n", 2, "options.filtering", "endpoint-independent"},
		{"bad filter name", "protocols:\n  - name: p\n    transport: icmp\n    filter: \"a\\tb\"\n", 4, "protocols[0].filter", "bad filter name"},

		// Durations.
		{"bad duration", "options:\n  timeouts:\n    udp: 5 minutes\n", 3, "options.timeouts.udp", `bad duration "5 minutes"`},
		{"duration without unit", "options:\n  timeouts:\n    icmp: 60\n", 3, "options.timeouts.icmp", "bad duration"},
		{"zero duration", "options:\n  timeouts:\n    tcp-rst: 0s\n", 3, "options.timeouts.tcp-rst", "must be positive"},
		{"negative duration", "options:\n  timeouts:\n    tcp-established: -1h\n", 3, "options.timeouts.tcp-established", "must be positive"},

		// Publish rules.
		{"publish conflict", `protocols:
  - {name: web-in, transport: tcp, ports: [80], direction: inbound}
publish:
  - name: a
    protocol: web-in
    server: 10.0.0.2
  - name: b
    protocol: any-tcp
    listen: "192.0.2.1:80"
    server: 10.0.0.3
`, 9, "publish[1].listen", `tcp 192.0.2.1:80 conflicts with publish[0] "a" (line 4)`},
		{"publish conflict without listen", `protocols:
  - {name: web-in, transport: tcp, ports: [80], direction: both}
publish:
  - {name: a, protocol: web-in, server: 10.0.0.2}
  - {name: b, protocol: web-in, server: 10.0.0.3}
`, 5, "publish[1].listen", `conflicts with publish[0] "a"`},
		{"publish same server twice", `protocols:
  - {name: web-in, transport: tcp, ports: [80], direction: inbound}
publish:
  - {name: www, protocol: web-in, listen: ":8080", server: "10.0.0.2:80"}
  - name: www-default-port
    protocol: web-in
    server: 10.0.0.2
`, 7, "publish[1].server", `tcp server 10.0.0.2:80 is already published by publish[0] "www" (line 4) on :8080`},
		{"publish outbound protocol", "protocols:\n  - {name: web, transport: tcp, ports: [80]}\npublish:\n  - {name: p, protocol: web, server: 10.0.0.2}\n",
			4, "publish[0].protocol", `protocol "web" has direction outbound`},
		{"publish any", "publish:\n  - {name: p, protocol: any, listen: \":80\", server: 10.0.0.2}\n", 2, "publish[0].protocol", "no single transport"},
		{"publish icmp", "publish:\n  - {name: p, protocol: ping, server: 10.0.0.2}\n", 2, "publish[0].protocol", "only tcp and udp"},
		{"publish needs a port", "publish:\n  - name: p\n    protocol: any-udp\n    server: 10.0.0.2\n", 2, "publish[0].listen", "needs a port"},
		{"publish range needs a port", "protocols:\n  - {name: r, transport: tcp, ports: [\"80-81\"], direction: inbound}\npublish:\n  - name: p\n    protocol: r\n    listen: 192.0.2.1\n    server: 10.0.0.2\n",
			6, "publish[0].listen", `protocol "r" has no single port`},
		{"publish unknown protocol", "publish:\n  - {name: p, protocol: web-in, server: 10.0.0.2}\n", 2, "publish[0].protocol", `unknown protocol "web-in"`},
		{"server unspecified", "publish:\n  - {name: p, protocol: any-tcp, listen: \":1\", server: 0.0.0.0}\n", 2, "publish[0].server", "specific unicast"},
		{"server multicast", "publish:\n  - {name: p, protocol: any-tcp, listen: \":1\", server: 224.0.0.1}\n", 2, "publish[0].server", "specific unicast"},
		{"server loopback", "publish:\n  - {name: p, protocol: any-tcp, listen: \":1\", server: \"[::1]:80\"}\n", 2, "publish[0].server", "specific unicast"},
		{"server broadcast", "publish:\n  - {name: p, protocol: any-tcp, listen: \":1\", server: 255.255.255.255}\n", 2, "publish[0].server", "specific unicast"},
		{"server prefix", "publish:\n  - {name: p, protocol: any-tcp, listen: \":1\", server: 10.0.0.0/24}\n", 2, "publish[0].server", `bad server "10.0.0.0/24"`},
		{"bad listen", "publish:\n  - {name: p, protocol: any-tcp, listen: \"8080\", server: 10.0.0.2}\n", 2, "publish[0].listen", `bad listen address "8080"`},
		{"listen port out of range", "publish:\n  - {name: p, protocol: any-tcp, listen: \":65536\", server: 10.0.0.2}\n", 2, "publish[0].listen", "bad listen port"},
		{"listen multicast", "publish:\n  - {name: p, protocol: any-tcp, listen: \"[ff02::1]:80\", server: 10.0.0.2}\n", 2, "publish[0].listen", "not a unicast address"},

		{"inside network multicast", "options:\n  inside-networks: [10.1.0.0/16, 224.0.0.0/8]\n", 2, "options.inside-networks[1]", "never a host's source"},
		{"inside network prefix", "options:\n  inside-networks: 10.1.0.1/16\n", 2, "options.inside-networks", "bits set after the /16"},
		{"limit zero", "options:\n  limits: {client-flows: 0}\n", 2, "options.limits.client-flows", `bad limit "0"`},
		{"limit not a number", "options:\n  limits:\n    client-rate: fast\n", 3, "options.limits.client-rate", `bad limit "fast"`},
		{"limit typo", "options:\n  limits: {client-flow: 10}\n", 2, "options.limits.client-flow", `did you mean "client-flows"`},
		{"special destination unicast", "options:\n  special-destinations: [239.0.0.0/8, 10.0.0.0/8]\n", 2, "options.special-destinations[1]", "ordinary destinations need no option"},

		// Shapes.
		{"rules not a list", "rules:\n  name: r\n", 2, "rules", "must be a list, not a mapping"},
		{"rule not a mapping", "rules:\n  - allow-all\n", 2, "rules[0]", "must be a mapping, not a scalar"},
		{"name not a scalar", "rules:\n  - name: [a, b]\n", 2, "rules[0].name", "must be a single value, not a list"},
		{"alias", "networks:\n  lab: &l [10.0.0.0/8]\n  lab2: *l\n", 3, "networks.lab2", "aliases (*\"l\") are not supported"},
		{"merge key", "rules:\n  - &r {name: a, action: allow, from: any, to: any, protocols: any}\n  - <<: *r\n    name: b\n", 3, `rules[1]["<<"]`, "unknown field"},
		{"root not a mapping", "- a\n- b\n", 1, "", "must be a mapping of sections"},

		// YAML syntax, and documents. yaml.v3 reports some problems at the
		// line where the enclosing block starts, or at the end of the file.
		{"tab indentation", "rules:\n  - name: r\n\taction: allow\n", 2, "", "YAML syntax error: found a tab character"},
		{"unclosed flow list", "networks:\n  lab: [10.0.0.0/8,\n", 3, "", "YAML syntax error"},
		{"bad indentation", "networks:\n  lab:\n    - 10.0.0.0/8\n   - 10.1.0.0/16\n", 2, "", "did not find expected key"},
		{"unknown anchor", "networks:\n  lab: [10.0.0.0/8]\n  lab2: *nope\n", 3, "", "unknown anchor"},
		{"second document", "networks:\n  lab: [10.0.0.0/8]\n---\nrules: []\n", 3, "", "holds one YAML document"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, err := Parse("policy.yaml", []byte(tt.src))
			if err == nil {
				t.Fatalf("Parse succeeded (%+v); want an error", p)
			}
			want := fmt.Sprintf("policy.yaml:%d: ", tt.line)
			if tt.path != "" {
				want += tt.path + ": "
			}
			for line := range strings.SplitSeq(err.Error(), "\n") {
				if strings.HasPrefix(line, want) && strings.Contains(line, tt.msg) {
					return
				}
			}
			t.Errorf("no error line starts with %q and contains %q; got:\n%v", want, tt.msg, err)
		})
	}
}

// TestParseReportsAll checks that Parse reports every problem, one per line,
// sorted by line, each as an *Error.
func TestParseReportsAll(t *testing.T) {
	const src = `rules:
  - name: r
    acton: allow
    from: [lan]
    to: [external]
    protocols: [any]
networks:
  bad: [10.0.0.0/33]
options:
  timeouts:
    udp: 0s
`
	_, err := Parse("", []byte(src))
	if err == nil {
		t.Fatal("Parse succeeded; want errors")
	}
	want := []string{
		`policy:2: rules[0].action: required field missing`,
		`policy:3: rules[0].acton: unknown field (did you mean "action"?); want one of name, action, from, to, protocols`,
		`policy:4: rules[0].from[0]: unknown network "lan"`,
		`policy:8: networks.bad[0]: bad prefix "10.0.0.0/33": want an address/bits prefix such as 10.0.0.0/24`,
		`policy:11: options.timeouts.udp: duration 0s must be positive (omit the field for the default)`,
	}
	if got := strings.Split(err.Error(), "\n"); !equalPrefixes(got, want) {
		t.Errorf("errors:\n%v\nwant lines starting with:\n%s", err, strings.Join(want, "\n"))
	}
	var e *Error
	if !errors.As(err, &e) {
		t.Fatalf("errors.As(%T, *Error) = false", err)
	}
	if e.File != "policy" || e.Line != 2 || e.Path != "rules[0].action" || e.Msg != "required field missing" {
		t.Errorf("first *Error = %+v", *e)
	}
}

func equalPrefixes(got, want []string) bool {
	if len(got) != len(want) {
		return false
	}
	for i := range got {
		if !strings.HasPrefix(got[i], want[i]) {
			return false
		}
	}
	return true
}

// defLimits are the limits a policy without any gets.
var defLimits = Limits{MaxFlows: 1 << 20, ClientFlows: 4096, ClientHalfOpen: 512, ClientRate: 1000, ClientDials: 128}

// TestParseValid checks files that must load, and what they load to.
func TestParseValid(t *testing.T) {
	tests := []struct {
		name string
		src  string
		opts Options
	}{
		{"empty", "", Options{Timeouts: DefaultTimeouts(), Limits: defLimits}},
		{"only comments", "# nothing here\n\n# at all\n", Options{Timeouts: DefaultTimeouts(), Limits: defLimits}},
		{"null document", "~\n", Options{Timeouts: DefaultTimeouts(), Limits: defLimits}},
		{"empty sections", "networks: {}\nprotocols: []\nrules: []\npublish: []\noptions: {}\n", Options{Timeouts: DefaultTimeouts(), Limits: defLimits}},
		{"null sections", "networks:\nprotocols:\nrules:\npublish:\noptions:\n", Options{Timeouts: DefaultTimeouts(), Limits: defLimits}},
		{"options", "options:\n  reject: drop\n  filtering: endpoint-independent\n  timeouts:\n    udp: 30s\n    icmp: 1m30s\n    tcp-syn-recv: 20s\n",
			Options{Reject: RejectDrop, Filtering: EndpointIndependent, Timeouts: Timeouts{
				UDP: 30 * time.Second, TCPSynSent: 2 * time.Minute, TCPSynRecv: 20 * time.Second,
				TCPEstablished: 2*time.Hour + 4*time.Minute, TCPTransitory: 4 * time.Minute,
				TCPRST: 4 * time.Minute, ICMP: 90 * time.Second}, Limits: defLimits}},
		{"limits", "options:\n  limits: {max-flows: 5000, client-flows: off, client-rate: 20}\n",
			Options{Timeouts: DefaultTimeouts(), Limits: Limits{MaxFlows: 5000, ClientFlows: NoLimit,
				ClientHalfOpen: 512, ClientRate: 20, ClientDials: DefaultClientDials}}},
		{"inside networks and special destinations", "options:\n  inside-networks: [10.1.0.0/16, 192.168.7.9]\n  special-destinations: 239.255.255.250\n",
			Options{Timeouts: DefaultTimeouts(), Limits: defLimits,
				InsideNetworks:      []netip.Prefix{netip.MustParsePrefix("10.1.0.0/16"), netip.MustParsePrefix("192.168.7.9/32")},
				SpecialDestinations: []netip.Prefix{netip.MustParsePrefix("239.255.255.250/32")}}},
		{"address-and-port-dependent", "options:\n  filtering: address-and-port-dependent\n",
			Options{Filtering: AddressAndPortDependent, Timeouts: DefaultTimeouts(), Limits: defLimits}},
		{"scalar lists", "networks:\n  lab: 10.0.0.0/8\nprotocols:\n  - {name: w, transport: tcp, ports: 80}\nrules:\n  - {name: r, action: allow, from: lab, to: external, protocols: w}\n",
			Options{Timeouts: DefaultTimeouts(), Limits: defLimits}},
		{"inbound protocol in a rule", "protocols:\n  - {name: w, transport: tcp, ports: [80], direction: inbound}\nrules:\n  - {name: r, action: allow, from: internal, to: external, protocols: w}\n",
			Options{Timeouts: DefaultTimeouts(), Limits: defLimits}},
		{"same port on two addresses", "publish:\n  - {name: a, protocol: any-tcp, listen: \"192.0.2.1:80\", server: 10.0.0.2}\n  - {name: b, protocol: any-tcp, listen: \"192.0.2.2:80\", server: 10.0.0.3}\n  - {name: c, protocol: any-udp, listen: \":80\", server: 10.0.0.3}\n",
			Options{Timeouts: DefaultTimeouts(), Limits: defLimits}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := mustParse(t, tt.src)
			if got := p.Options(); !reflect.DeepEqual(got, tt.opts) {
				t.Errorf("Options() = %+v; want %+v", got, tt.opts)
			}
		})
	}
}

// TestEmptyDeniesEverything checks that an empty file and the zero Policy
// deny every flow and publish nothing.
func TestEmptyDeniesEverything(t *testing.T) {
	for name, p := range map[string]*Policy{"empty file": mustParse(t, ""), "zero Policy": {}, "nil": nil} {
		t.Run(name, func(t *testing.T) {
			for _, f := range []Flow{
				flow(TCP, Outbound, "10.0.0.2:1234", "192.0.2.1:80"),
				flow(UDP, Outbound, "10.0.0.2:1234", "192.0.2.1:53"),
				flow(ICMP, Outbound, "10.0.0.2:0", "192.0.2.1:0"),
				flow(TCP, Inbound, "192.0.2.1:1234", "198.51.100.1:80"),
			} {
				if d := p.Decide(f); d != (Decision{Rule: DefaultDeny}) {
					t.Errorf("Decide(%v) = %+v; want default deny", f, d)
				}
			}
			if pubs := p.Publications(); len(pubs) != 0 {
				t.Errorf("Publications() = %v; want none", pubs)
			}
			if _, ok := p.Published(TCP, mustAddrPort("192.0.2.1:80"), mustAddr("198.51.100.1")); ok {
				t.Error("Published found a publication in an empty policy")
			}
			if got := p.Options(); !reflect.DeepEqual(got, Options{Timeouts: DefaultTimeouts(), Limits: defLimits}) {
				t.Errorf("Options() = %+v; want defaults", got)
			}
		})
	}
}

func TestLoadMissingFile(t *testing.T) {
	_, err := Load("testdata/no-such-file.yaml")
	if !errors.Is(err, os.ErrNotExist) || !strings.HasPrefix(err.Error(), "policy: ") {
		t.Errorf("Load(missing) = %v; want a \"policy: \" error wrapping os.ErrNotExist", err)
	}
}

// TestLoadNamesFile checks that Load's errors name the file it was given.
func TestLoadNamesFile(t *testing.T) {
	path := t.TempDir() + "/bad.yaml"
	if err := os.WriteFile(path, []byte("options:\n  reject: maybe\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := Load(path)
	if want := path + ":2: options.reject: "; err == nil || !strings.HasPrefix(err.Error(), want) {
		t.Errorf("Load = %v; want an error starting %q", err, want)
	}
}

func TestParseNPTv6(t *testing.T) {
	p, err := Parse("npt", []byte("rules: []\noptions:\n  nptv6: [{inside: fd01:203:405::/48, outside: 2001:db8:1::/48}]\n"))
	if err != nil {
		t.Fatal(err)
	}
	want := []NPTv6{{netip.MustParsePrefix("fd01:203:405::/48"), netip.MustParsePrefix("2001:db8:1::/48")}}
	if got := p.Options().NPTv6; !slices.Equal(got, want) {
		t.Errorf("nptv6 %v, want %v", got, want)
	}
	for _, tt := range []struct{ yaml, want string }{
		{"[{inside: fd00::/48, outside: 2001:db8::/56}]", "same length"},
		{"[{inside: fd00::/72, outside: 2001:db8::/72}]", "longer than /64"},
		{"[{inside: 10.0.0.0/8, outside: 2001:db8::/8}]", "not an IPv6 prefix"},
		{"[{inside: fd00::/48}]", "required field missing"},
		{"[{inside: fd00::/48, outside: fd00::/48}]", "overlap"},
	} {
		_, err := Parse("npt", []byte("rules: []\noptions:\n  nptv6: "+tt.yaml+"\n"))
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("nptv6: %s: error %v, want one saying %q", tt.yaml, err, tt.want)
		}
	}
}
