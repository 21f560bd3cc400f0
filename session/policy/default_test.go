package policy

import (
	"os"
	"reflect"
	"strings"
	"testing"
)

// sampleFlows are flows of every transport and direction, for comparing
// policies by behaviour.
var sampleFlows = []Flow{
	flow(TCP, Outbound, "10.0.0.2:40000", "192.0.2.1:80"),
	flow(TCP, Outbound, "10.0.0.2:40000", "192.0.2.1:1"),
	flow(UDP, Outbound, "10.0.0.2:5353", "192.0.2.1:53"),
	flow(UDP, Outbound, "[fd00::2]:5353", "[2001:db8::1]:65535"),
	flow(ICMP, Outbound, "10.0.0.2:0", "192.0.2.1:0"),
	flow(TCP, Inbound, "192.0.2.1:40000", "10.0.0.2:80"),
	flow(UDP, Inbound, "192.0.2.1:40000", "10.0.0.2:53"),
	flow(ICMP, Inbound, "192.0.2.1:0", "10.0.0.2:0"),
	flow(Transport(0), Outbound, "10.0.0.2:1", "192.0.2.1:1"),
}

func TestDefault(t *testing.T) {
	def := Default()
	parsed := mustParse(t, DefaultYAML)
	for _, f := range sampleFlows {
		want := Decision{Allow: true, Rule: "default-outbound", Protocol: "any"}
		if f.Direction == Inbound || f.Transport == 0 {
			want = Decision{Rule: DefaultDeny}
		}
		if got := def.Decide(f); got != want {
			t.Errorf("Default().Decide(%+v) = %+v; want %+v", f, got, want)
		}
		if got, want := parsed.Decide(f), def.Decide(f); got != want {
			t.Errorf("Parse(DefaultYAML).Decide(%+v) = %+v; Default() gives %+v", f, got, want)
		}
	}
	if got, want := parsed.Options(), def.Options(); !reflect.DeepEqual(got, want) {
		t.Errorf("Parse(DefaultYAML).Options() = %+v; Default() gives %+v", got, want)
	}
	if got := def.Options(); !reflect.DeepEqual(got, Options{Reject: RejectReply, Filtering: AddressDependent, Timeouts: DefaultTimeouts(), Limits: defLimits}) {
		t.Errorf("Default().Options() = %+v; want the defaults", got)
	}
	if len(def.Publications()) != 0 || len(parsed.Publications()) != 0 {
		t.Errorf("default policy publishes %v / %v; want nothing", def.Publications(), parsed.Publications())
	}
	if _, ok := def.Published(TCP, mustAddrPort("192.0.2.1:80"), mustAddr("198.51.100.1")); ok {
		t.Error("Default().Published found a publication")
	}
}

// TestExampleFile loads testdata/example.yaml, the commented example.
func TestExampleFile(t *testing.T) {
	p, err := Load("testdata/example.yaml")
	if err != nil {
		t.Fatal(err)
	}
	decisions := []struct {
		name string
		flow Flow
		want Decision
	}{
		{"guest dns to our servers", flow(UDP, Outbound, "10.0.2.5:5000", "192.0.2.53:53"), Decision{Allow: true, Rule: "guests-dns", Protocol: "dns"}},
		{"guest dns elsewhere", flow(UDP, Outbound, "10.0.2.5:5000", "203.0.113.53:53"), Decision{Rule: "guests-nothing-else", Protocol: "any"}},
		{"guest v6 web", flow(TCP, Outbound, "[fd00:2::5]:5000", "[2001:db8::80]:443"), Decision{Allow: true, Rule: "guests-web", Protocol: "web"}},
		{"guest ping", flow(ICMP, Outbound, "10.0.2.5:0", "203.0.113.1:0"), Decision{Rule: "guests-nothing-else", Protocol: "any"}},
		{"lab ftp with filter", flow(TCP, Outbound, "10.0.0.9:5000", "203.0.113.21:21"), Decision{Allow: true, Rule: "allow-web", Protocol: "ftp", Filter: "ftp"}},
		{"lab game", flow(UDP, Outbound, "10.0.0.9:5000", "203.0.113.21:27020"), Decision{Allow: true, Rule: "allow-web", Protocol: "game"}},
		{"lab ssh", flow(TCP, Outbound, "10.0.0.9:5000", "203.0.113.21:22"), Decision{Rule: DefaultDeny}},
	}
	for _, tt := range decisions {
		t.Run(tt.name, func(t *testing.T) {
			if got := p.Decide(tt.flow); got != tt.want {
				t.Errorf("Decide(%+v) = %+v; want %+v", tt.flow, got, tt.want)
			}
		})
	}
	pubs := p.Publications()
	if len(pubs) != 3 || pubs[1].Name != "www-default-port" || pubs[1].Listen.Port() != 80 || pubs[2].Server != mustAddrPort("10.0.0.3:27015") {
		t.Errorf("Publications() = %+v", pubs)
	}
	if got := p.Options(); !reflect.DeepEqual(got, Options{Timeouts: DefaultTimeouts(), Limits: defLimits}) {
		t.Errorf("Options() = %+v; want the defaults, which the example spells out", got)
	}
}

// TestDocExample parses the file format example in doc.go, so the package
// documentation cannot drift from what Parse accepts.
func TestDocExample(t *testing.T) {
	src, err := os.ReadFile("doc.go")
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	in := false
	for line := range strings.SplitSeq(string(src), "\n") {
		code, isCode := strings.CutPrefix(line, "//\t")
		if isCode && strings.HasPrefix(code, "networks:") {
			in = true
		}
		if in && !isCode {
			break
		}
		if in {
			b.WriteString(code + "\n")
		}
	}
	if b.Len() == 0 {
		t.Fatal("no example starting with \"networks:\" in doc.go")
	}
	p, err := Parse("doc.go example", []byte(b.String()))
	if err != nil {
		t.Fatalf("Parse:\n%v\nexample:\n%s", err, b.String())
	}
	if d := p.Decide(flow(TCP, Outbound, "10.0.0.5:4000", "192.0.2.1:8001")); d.Rule != "no-lab-web" || d.Allow {
		t.Errorf("lab web: %+v; want denied by no-lab-web", d)
	}
	if d := p.Decide(flow(TCP, Outbound, "10.9.0.5:4000", "192.0.2.1:443")); d.Rule != "allow-web" || !d.Allow {
		t.Errorf("web: %+v; want allowed by allow-web", d)
	}
	if pub, ok := p.Published(TCP, mustAddrPort("192.0.2.7:8080"), mustAddr("198.51.100.1")); !ok || pub.Server != mustAddrPort("10.0.0.2:80") {
		t.Errorf("Published(:8080) = %+v, %v", pub, ok)
	}
}
