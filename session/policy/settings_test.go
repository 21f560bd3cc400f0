package policy_test

import (
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/fwx-dev/fwx/session/policy"
)

const settingsHead = `protocols:
  - {name: ftp, transport: tcp, ports: [21], filter: ftp}
  - {name: tftp, transport: udp, ports: [69], filter: tftp}
  - {name: web, transport: tcp, ports: [80]}
  - {name: ftp-in, transport: tcp, ports: [21], direction: inbound, filter: ftp}
`

// TestSettingsParse: the shape of filter_settings is checked when the file
// is parsed, each problem with its line.
func TestSettingsParse(t *testing.T) {
	for _, tt := range []struct {
		name, rules, want string
	}{
		{"not a mapping", `  - {name: r, action: allow, from: internal, to: external, protocols: [ftp], filter_settings: [a]}`,
			`p:7: rules[0].filter_settings: must be a mapping of setting names to values`},
		{"nested", "  - {name: r, action: allow, from: internal, to: external, protocols: [ftp], filter_settings: {a: {b: 1}}}",
			`p:7: rules[0].filter_settings.a: must be a single value, not a mapping`},
		{"twice", "  - {name: r, action: allow, from: internal, to: external, protocols: [ftp], filter_settings: {a: 1, a: 2}}",
			`p:7: rules[0].filter_settings.a: setting given twice (first at line 7)`},
		{"no value", "  - {name: r, action: allow, from: internal, to: external, protocols: [ftp], filter_settings: {a: }}",
			`p:7: rules[0].filter_settings.a: setting has no value`},
		{"bad name", "  - {name: r, action: allow, from: internal, to: external, protocols: [ftp], filter_settings: {'a b': 1}}",
			`bad name "a b"`},
		{"no filter", "  - {name: r, action: allow, from: internal, to: external, protocols: [web], filter_settings: {a: 1}}",
			`p:7: rules[0].filter_settings: no protocol of this rule has a filter to take the settings`},
		{"two filters", "  - {name: r, action: allow, from: internal, to: external, protocols: [ftp, web, tftp], filter_settings: {a: 1}}",
			`p:7: rules[0].filter_settings: the rule's protocols name several filters (ftp, tftp)`},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, err := policy.Parse("p", []byte(settingsHead+"rules:\n"+tt.rules+"\n"))
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %v\nwant it to say %s", err, tt.want)
			}
		})
	}
}

// TestSettingsSchema: CheckSettings holds each key to its filter's schema;
// the typed accessors give the values; Decide, Permits and Settings hand a
// rule's settings over.
func TestSettingsSchema(t *testing.T) {
	p, err := policy.Parse("p", []byte(settingsHead+`rules:
  - name: r
    action: allow
    from: [internal]
    to: [external]
    protocols: [ftp]
    filter_settings: {read_only: true, max: 0x10, name: x, idle: 90s}
  - {name: plain, action: allow, from: internal, to: external, protocols: [tftp]}
publish:
  - {name: pub, protocol: ftp-in, server: 10.0.0.2, filter_settings: {read_only: false}}
`))
	if err != nil {
		t.Fatal(err)
	}
	schema := map[string][]policy.Setting{"ftp": {
		{Name: "read_only", Type: policy.BoolSetting}, {Name: "max", Type: policy.IntSetting},
		{Name: "name", Type: policy.StringSetting}, {Name: "idle", Type: policy.DurationSetting},
	}}
	lookup := func(f string) ([]policy.Setting, bool) { s, ok := schema[f]; return s, ok }
	if err := p.CheckSettings(lookup); err != nil {
		t.Fatal(err)
	}
	s := p.Decide(policy.Flow{Transport: policy.TCP, Direction: policy.Outbound,
		Src: netip.MustParseAddrPort("10.0.0.2:1000"), Dst: netip.MustParseAddrPort("192.0.2.1:21")}).Settings
	if s != p.Settings("r", false) || s.Len() != 4 {
		t.Fatalf("Decide gave settings of %d keys, not the rule's", s.Len())
	}
	if v, ok := s.Bool("read_only"); !v || !ok {
		t.Errorf("read_only = %v, %v", v, ok)
	}
	if v, ok := s.Int("max"); v != 16 || !ok {
		t.Errorf("max = %v, %v", v, ok)
	}
	if v, ok := s.String("name"); v != "x" || !ok {
		t.Errorf("name = %q, %v", v, ok)
	}
	if v, ok := s.Duration("idle"); v != 90*time.Second || !ok {
		t.Errorf("idle = %v, %v", v, ok)
	}
	if _, ok := s.Bool("max"); ok {
		t.Error("an int read as a bool")
	}
	if _, ok := p.Settings("plain", false).Bool("read_only"); ok {
		t.Error("a rule without settings has some")
	}
	if v, ok := p.Settings("pub", true).Bool("read_only"); v || !ok {
		t.Errorf("the publish rule's read_only = %v, %v", v, ok)
	}
	if d := p.Permits(netip.MustParseAddr("10.0.0.2"), "ftp"); d.Settings != s {
		t.Error("Permits does not give the permitting rule's settings")
	}

	schema["ftp"] = []policy.Setting{{Name: "read_only", Type: policy.BoolSetting}, {Name: "max", Type: policy.DurationSetting}}
	err = p.CheckSettings(lookup)
	for _, want := range []string{
		`p:12: rules[0].filter_settings.max: duration setting of filter "ftp": want a Go duration such as "30s" or "5m", not "0x10"`,
		`p:12: rules[0].filter_settings.name: filter "ftp" has no setting "name"; it takes read_only, max`,
	} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("error %v\nwant it to say %s", err, want)
		}
	}
	delete(schema, "ftp")
	if err := p.CheckSettings(lookup); err != nil {
		t.Errorf("an unknown filter's settings: %v (CheckFilters reports the filter)", err)
	}
}
