package policy

import (
	"os"
	"strings"
	"testing"
)

// FuzzParse checks that Parse never panics, that every line of its error
// names the file, and that a policy it accepts can be used.
func FuzzParse(f *testing.F) {
	seeds := []string{
		"",
		DefaultYAML,
		decidePolicy,
		publishPolicy,
		// Shapes the decoder must refuse without crashing.
		"- a\n- b\n",
		"rules: {a: b}\n",
		"rules:\n  - [a]\n",
		"networks:\n  lab: &l [10.0.0.0/8]\n  lab2: *l\n",
		"networks:\n  ? [a]\n  : b\n",
		"rules:\n  - &r {name: a, action: allow, from: any, to: any, protocols: any}\n  - <<: *r\n",
		"a: 1\n---\nb: 2\n",
		// Values at the edges.
		"protocols:\n  - {name: p, transport: tcp, ports: [\"65535-65535\", 1, \"-1\", \"1-\", \"a-b\"]}\n",
		"publish:\n  - {name: p, protocol: any-tcp, listen: \"[::]:1\", server: \"[fe80::1%eth0]:1\"}\n",
		"options:\n  timeouts: {udp: 9999999999999h, icmp: 1ns}\n",
		"networks:\n  \"\\u0000\": [\"::ffff:1.2.3.4/128\"]\n",
		"rules:\n\t- x\n",
	}
	if b, err := os.ReadFile("testdata/example.yaml"); err == nil {
		seeds = append(seeds, string(b))
	}
	for _, s := range seeds {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		p, err := Parse("fuzz", data)
		if err != nil {
			for line := range strings.SplitSeq(err.Error(), "\n") {
				if !strings.HasPrefix(line, "fuzz:") {
					t.Fatalf("error line %q does not start with the file name; error:\n%v", line, err)
				}
			}
			return
		}
		for _, fl := range sampleFlows {
			d := p.Decide(fl)
			if d.Rule == "" || (d.Rule == DefaultDeny && d.Allow) {
				t.Fatalf("Decide(%+v) = %+v", fl, d)
			}
		}
		for _, pub := range p.Publications() {
			if pub.Listen.Port() == 0 || !pub.Server.Addr().IsValid() || pub.Server.Port() == 0 {
				t.Fatalf("bad publication %+v", pub)
			}
			// Whether the source is let in depends on "from"; this only
			// exercises the lookup.
			p.Published(pub.Transport, pub.Listen, mustAddr("192.0.2.1"))
		}
		o := p.Options()
		if o.Timeouts.UDP <= 0 || o.Timeouts.TCPEstablished <= 0 || o.Timeouts.TCPTransitory <= 0 || o.Timeouts.TCPRST <= 0 || o.Timeouts.ICMP <= 0 {
			t.Fatalf("Options() = %+v: a timeout is not positive", o)
		}
	})
}
