package sip_test

import (
	"strings"
	"testing"
	"time"

	"github.com/fwx-dev/fwx"
	"github.com/fwx-dev/fwx/filters"
	"github.com/fwx-dev/fwx/filters/sip"
	"github.com/fwx-dev/fwx/session/policy"
)

func TestInit(t *testing.T) {
	tests := []struct {
		cfg sip.Config
		ok  bool
	}{
		{sip.Config{}, true},
		{sip.Config{MaxMessage: 1024, MaxFields: 16, MaxMedia: 1, MaxCalls: 1, MaxRegistrations: 1, RingTimeout: 10 * time.Second, MediaIdle: 30 * time.Second}, true},
		{sip.Config{MaxMessage: 1023}, false},
		{sip.Config{MaxMessage: 65536}, false},
		{sip.Config{MaxFields: 15}, false},
		{sip.Config{MaxMedia: 17}, false},
		{sip.Config{MaxCalls: -1}, false},
		{sip.Config{MaxRegistrations: 65}, false},
		{sip.Config{RingTimeout: time.Second}, false},
		{sip.Config{MediaIdle: 25 * time.Hour}, false},
	}
	for _, tt := range tests {
		if _, err := sip.New(tt.cfg).Init(); (err == nil) != tt.ok {
			t.Errorf("%+v: Init error %v, want ok %v", tt.cfg, err, tt.ok)
		}
	}
}

// TestRegistered: fwx run knows the filter, with its settings.
func TestRegistered(t *testing.T) {
	schema, ok := filters.Default.Schema(sip.Name)
	if !ok || len(schema) != len(sip.Settings) {
		t.Fatalf("filters.Default: %v %v, want the sip filter with its settings", schema, ok)
	}
}

// TestSettingsChecked: a key the filter does not take, or a value of the
// wrong type, stops fwx with the line.
func TestSettingsChecked(t *testing.T) {
	reg := &filters.Registry{}
	sip.Register(reg)
	for _, bad := range []string{"{max_call: 1}", `{third_party_media: "maybe"}`, "{ring_timeout: 3}"} {
		pol, err := policy.Parse("p.yaml", []byte(strings.Replace(sipPolicy,
			"protocols: [sip, sip-tcp]}", "protocols: [sip, sip-tcp], filter_settings: "+bad+"}", 1)))
		if err != nil {
			t.Fatal(err)
		}
		if err := fwx.CheckPolicy(pol, reg); err == nil || !strings.Contains(err.Error(), "p.yaml:6: rules[0].filter_settings") {
			t.Errorf("%s: %v, want an error at p.yaml:6", bad, err)
		}
	}
}
