package policy

import (
	"strings"
	"testing"
)

// TestCheckFilters: a filter the gateway does not have is reported at the
// protocol definition that names it, with the registered ones.
func TestCheckFilters(t *testing.T) {
	p := mustParse(t, `protocols:
  - {name: ftp, transport: tcp, ports: [21], filter: ftp}
  - name: rtsp
    transport: tcp
    ports: [554]
    filter: rtsq
  - {name: unused, transport: tcp, ports: [1], filter: nowhere}
rules:
  - {name: out, action: allow, from: internal, to: external, protocols: [ftp, rtsp]}
`)
	if err := p.CheckFilters([]string{"ftp", "rtsp"}); err == nil || !strings.HasPrefix(err.Error(),
		`test.yaml:6: protocols[1].filter: filter "rtsq" is not registered in this fwx (did you mean "rtsp"?) (ftp, rtsp are)`) {
		t.Errorf("CheckFilters = %v", err)
	}
	if err := p.CheckFilters([]string{"ftp", "rtsq"}); err != nil {
		t.Errorf("every used filter registered: %v (a protocol no rule uses does not count)", err)
	}
	if err := p.CheckFilters(nil); err == nil || strings.Count(err.Error(), "\n") != 1 {
		t.Errorf("no filters registered: %v, want two errors", err)
	}
}

// TestShadowWarnings: an allow rule above a filtered protocol's rule that
// also matches its connections makes them bypass the filter.
func TestShadowWarnings(t *testing.T) {
	const protos = `networks:
  lab: [10.0.0.0/24]
  other: [10.9.0.0/24]
protocols:
  - {name: ftp, transport: tcp, ports: [21], filter: ftp}
  - {name: web, transport: tcp, ports: [80, 443]}
  - {name: all-high, transport: tcp, ports: ["20-30"]}
  - {name: dns, transport: udp, ports: [21]}
rules:
`
	tests := []struct {
		name, rules string
		line        int
		want        string // empty: no warning
	}{
		{"any above", `  - {name: all, action: allow, from: internal, to: external, protocols: any}
  - {name: ftp-out, action: allow, from: internal, to: external, protocols: ftp}
`, 11, `connections of protocol "ftp" bypass its filter "ftp": rule "all" (line 10) lets protocol "any" through first`},
		{"range above", `  - {name: high, action: allow, from: [lab], to: any, protocols: [all-high]}
  - {name: ftp-out, action: allow, from: internal, to: external, protocols: ftp}
`, 11, `rule "high" (line 10) lets protocol "all-high" through first`},
		{"same rule, listed first", `  - {name: out, action: allow, from: internal, to: external, protocols: [any-tcp, ftp]}
`, 10, `protocol "any-tcp", listed before it in the same rule, matches first`},
		{"same rule, ftp first", `  - {name: out, action: allow, from: internal, to: external, protocols: [ftp, any]}
`, 0, ""},
		{"deny above", `  - {name: no, action: deny, from: internal, to: external, protocols: any}
  - {name: ftp-out, action: allow, from: internal, to: external, protocols: ftp}
`, 0, ""},
		{"other ports", `  - {name: web, action: allow, from: internal, to: external, protocols: [web, dns]}
  - {name: ftp-out, action: allow, from: internal, to: external, protocols: ftp}
`, 0, ""},
		{"other clients", `  - {name: others, action: allow, from: [other], to: external, protocols: any}
  - {name: ftp-out, action: allow, from: [lab], to: external, protocols: ftp}
`, 0, ""},
		{"filtered above too", `  - {name: a, action: allow, from: internal, to: external, protocols: [ftp, any]}
  - {name: b, action: allow, from: internal, to: external, protocols: ftp}
`, 0, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w := mustParse(t, protos+tt.rules).Warnings()
			if tt.want == "" {
				if len(w) != 0 {
					t.Errorf("warnings %v, want none", w)
				}
				return
			}
			if len(w) != 1 || w[0].Line != tt.line || !strings.Contains(w[0].Error(), tt.want) {
				t.Errorf("warnings %v, want one at line %d containing %q", w, tt.line, tt.want)
			}
		})
	}
}
