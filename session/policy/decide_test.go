package policy

import (
	"net/netip"
	"testing"
)

func mustAddr(s string) netip.Addr         { return netip.MustParseAddr(s) }
func mustAddrPort(s string) netip.AddrPort { return netip.MustParseAddrPort(s) }

// flow builds a Flow from "addr:port" strings.
func flow(t Transport, dir Direction, src, dst string) Flow {
	return Flow{Transport: t, Direction: dir, Src: mustAddrPort(src), Dst: mustAddrPort(dst)}
}

// decidePolicy exercises rule order, networks, ports and directions.
const decidePolicy = `
networks:
  lab: [10.0.0.0/24, 10.0.1.5]
  blocked: [198.51.100.0/24]
  v6: ["2001:db8::/32"]
protocols:
  - name: web
    transport: tcp
    ports: [80, 443, "8000-8080"]
  - name: dns
    transport: udp
    ports: [53]
    filter: dns-filter
  - name: web-in
    transport: tcp
    ports: [80]
    direction: inbound
  - name: ssh
    transport: tcp
    ports: [22]
    direction: both
rules:
  - name: deny-blocked        # a deny before the allows
    action: deny
    from: [internal]
    to: [blocked]
    protocols: [any]
  - name: inbound-protocol    # never matches: web-in is inbound only
    action: allow
    from: [internal]
    to: [external]
    protocols: [web-in]
  - name: lab-web
    action: allow
    from: [lab]
    to: [external]
    protocols: [web, dns]
  - name: ssh
    action: allow
    from: [internal]
    to: [any]
    protocols: [ssh]
  - name: ping
    action: allow
    from: [internal]
    to: [external]
    protocols: [ping]
  - name: deny-lab-udp
    action: deny
    from: [lab]
    to: [external]
    protocols: [any-udp]
  - name: v6-tcp
    action: allow
    from: [v6]
    to: [v6]
    protocols: [any-tcp]
  - name: to-internal         # never matches: internal holds no destination
    action: allow
    from: [any]
    to: [internal]
    protocols: [any]
  - name: from-external       # never matches: external holds no source
    action: allow
    from: [external]
    to: [any]
    protocols: [any]
`

func TestDecide(t *testing.T) {
	p := mustParse(t, decidePolicy)
	deny := Decision{Rule: DefaultDeny}
	tests := []struct {
		name string
		flow Flow
		want Decision
	}{
		{"first match wins", flow(TCP, Outbound, "10.0.0.7:40000", "192.0.2.1:80"), Decision{Allow: true, Rule: "lab-web", Protocol: "web"}},
		{"second port", flow(TCP, Outbound, "10.0.0.7:40000", "192.0.2.1:443"), Decision{Allow: true, Rule: "lab-web", Protocol: "web"}},
		{"range low end", flow(TCP, Outbound, "10.0.0.7:40000", "192.0.2.1:8000"), Decision{Allow: true, Rule: "lab-web", Protocol: "web"}},
		{"range high end", flow(TCP, Outbound, "10.0.0.7:40000", "192.0.2.1:8080"), Decision{Allow: true, Rule: "lab-web", Protocol: "web"}},
		{"below range", flow(TCP, Outbound, "10.0.0.7:40000", "192.0.2.1:7999"), deny},
		{"above range", flow(TCP, Outbound, "10.0.0.7:40000", "192.0.2.1:8081"), deny},
		{"single address in network", flow(TCP, Outbound, "10.0.1.5:40000", "192.0.2.1:80"), Decision{Allow: true, Rule: "lab-web", Protocol: "web"}},
		{"address next to it", flow(TCP, Outbound, "10.0.1.6:40000", "192.0.2.1:80"), deny},
		{"not in network", flow(TCP, Outbound, "192.168.1.5:40000", "192.0.2.1:80"), deny},
		{"deny rule before allow", flow(TCP, Outbound, "10.0.0.7:40000", "198.51.100.7:80"), Decision{Rule: "deny-blocked", Protocol: "any"}},
		{"deny any transport", flow(ICMP, Outbound, "10.0.0.7:0", "198.51.100.7:0"), Decision{Rule: "deny-blocked", Protocol: "any"}},
		{"second protocol of rule, with filter", flow(UDP, Outbound, "10.0.0.7:5000", "192.0.2.1:53"), Decision{Allow: true, Rule: "lab-web", Protocol: "dns", Filter: "dns-filter"}},
		{"transport must match", flow(UDP, Outbound, "10.0.0.7:5000", "192.0.2.1:80"), Decision{Rule: "deny-lab-udp", Protocol: "any-udp"}},
		{"tcp on a udp port", flow(TCP, Outbound, "10.0.0.7:5000", "192.0.2.1:53"), deny},
		{"inbound protocol ignored by access rule", flow(TCP, Outbound, "192.168.1.5:40000", "192.0.2.1:80"), deny},
		{"both-direction protocol", flow(TCP, Outbound, "192.168.1.5:40000", "192.0.2.1:22"), Decision{Allow: true, Rule: "ssh", Protocol: "ssh"}},
		{"ping", flow(ICMP, Outbound, "192.168.1.5:0", "192.0.2.1:0"), Decision{Allow: true, Rule: "ping", Protocol: "ping"}},
		{"icmp ignores ports", flow(ICMP, Outbound, "192.168.1.5:7", "192.0.2.1:9"), Decision{Allow: true, Rule: "ping", Protocol: "ping"}},
		{"inbound flow never matches access rules", flow(TCP, Inbound, "192.0.2.1:40000", "10.0.0.7:22"), deny},
		{"ipv4-mapped source", flow(TCP, Outbound, "[::ffff:10.0.0.7]:40000", "192.0.2.1:80"), Decision{Allow: true, Rule: "lab-web", Protocol: "web"}},
		{"ipv4-mapped destination", flow(TCP, Outbound, "10.0.0.7:40000", "[::ffff:198.51.100.7]:80"), Decision{Rule: "deny-blocked", Protocol: "any"}},
		{"ipv6 networks", flow(TCP, Outbound, "[2001:db8::1]:40000", "[2001:db8:1::1]:9999"), Decision{Allow: true, Rule: "v6-tcp", Protocol: "any-tcp"}},
		{"ipv6 outside network", flow(TCP, Outbound, "[2001:db8::1]:40000", "[2001:db9::1]:9999"), deny},
		{"invalid transport", flow(Transport(0), Outbound, "10.0.0.7:40000", "198.51.100.7:80"), deny},
		{"unknown transport", flow(Transport(200), Outbound, "10.0.0.7:40000", "198.51.100.7:80"), deny},
		{"zero flow", Flow{}, deny},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := p.Decide(tt.flow); got != tt.want {
				t.Errorf("Decide(%+v) = %+v; want %+v", tt.flow, got, tt.want)
			}
		})
	}
}

// TestBuiltinNetworksBySide checks that internal and external are sides,
// not address sets: the same address matches "internal" as a source and
// "external" as a destination.
func TestBuiltinNetworksBySide(t *testing.T) {
	p := mustParse(t, `
rules:
  - {name: in-to-out, action: allow, from: internal, to: external, protocols: any-udp}
  - {name: any-to-any, action: allow, from: any, to: any, protocols: any-tcp}
`)
	same := "192.0.2.9"
	tests := []struct {
		name string
		flow Flow
		rule string
	}{
		{"udp from internal to external", flow(UDP, Outbound, same+":1000", same+":53"), "in-to-out"},
		{"tcp via any", flow(TCP, Outbound, same+":1000", same+":53"), "any-to-any"},
		{"icmp matches neither", flow(ICMP, Outbound, same+":0", same+":0"), DefaultDeny},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := p.Decide(tt.flow).Rule; got != tt.rule {
				t.Errorf("Decide(%+v).Rule = %q; want %q", tt.flow, got, tt.rule)
			}
		})
	}
}

// TestDecideAllocs checks that Decide and Published do not allocate: they
// run for every new flow.
func TestDecideAllocs(t *testing.T) {
	p := mustParse(t, decidePolicy)
	flows := []Flow{
		flow(TCP, Outbound, "10.0.0.7:40000", "192.0.2.1:8080"),
		flow(UDP, Outbound, "10.0.0.7:5000", "192.0.2.1:53"),
		flow(ICMP, Outbound, "192.168.1.5:0", "192.0.2.1:0"),
		flow(TCP, Outbound, "[2001:db8::1]:40000", "[2001:db9::1]:9999"),
		flow(TCP, Inbound, "192.0.2.1:40000", "10.0.0.7:22"),
	}
	var sink Decision
	allocs := testing.AllocsPerRun(1000, func() {
		for _, f := range flows {
			sink = p.Decide(f)
		}
	})
	if allocs != 0 {
		t.Errorf("Decide allocates %v times per run; want 0", allocs)
	}
	_ = sink

	pp := mustParse(t, publishPolicy)
	listen, src := mustAddrPort("192.0.2.1:8080"), mustAddr("203.0.113.5")
	allocs = testing.AllocsPerRun(1000, func() {
		if _, ok := pp.Published(TCP, listen, src); !ok {
			panic("not published")
		}
	})
	if allocs != 0 {
		t.Errorf("Published allocates %v times per run; want 0", allocs)
	}
}

func BenchmarkDecide(b *testing.B) {
	p := mustParse(b, decidePolicy)
	f := flow(TCP, Outbound, "[2001:db8::1]:40000", "[2001:db9::1]:9999") // walks every rule
	b.ReportAllocs()
	for b.Loop() {
		p.Decide(f)
	}
}
