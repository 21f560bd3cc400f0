package rtsp_test

import (
	"strings"
	"testing"

	"github.com/fwx-dev/fwx"
	"github.com/fwx-dev/fwx/filters"
	"github.com/fwx-dev/fwx/filters/rtsp"
	"github.com/fwx-dev/fwx/netstack/lab/fwxlab"
	"github.com/fwx-dev/fwx/session/policy"
)

func TestInit(t *testing.T) {
	tests := []struct {
		cfg rtsp.Config
		ok  bool
	}{
		{rtsp.Config{}, true},
		{rtsp.Config{MaxHead: 256, MaxStreams: 1}, true},
		{rtsp.Config{MaxHead: 65536, MaxStreams: 256}, true},
		{rtsp.Config{MaxHead: 255}, false},
		{rtsp.Config{MaxHead: 65537}, false},
		{rtsp.Config{MaxStreams: -1}, false},
		{rtsp.Config{MaxStreams: 257}, false},
	}
	for _, tt := range tests {
		if _, err := rtsp.New(tt.cfg).Init(); (err == nil) != tt.ok {
			t.Errorf("%+v: Init error %v, want ok %v", tt.cfg, err, tt.ok)
		}
	}
}

// TestRegistered: fwx run knows the filter, with its settings.
func TestRegistered(t *testing.T) {
	schema, ok := filters.Default.Schema(rtsp.Name)
	if !ok || len(schema) != 2 {
		t.Fatalf("filters.Default: %v %v, want the rtsp filter with two settings", schema, ok)
	}
}

// TestMaxStreamsSetting: a rule's max_streams applies to the control
// connections it allows.
func TestMaxStreamsSetting(t *testing.T) {
	reg := &filters.Registry{}
	rtsp.Register(reg)
	l := fwxlab.New(t, fwxlab.Options{Filters: reg, Policy: strings.Replace(rtspPolicy,
		"protocols: [rtsp]}", "protocols: [rtsp], filter_settings: {max_streams: 1}}", 1)})
	s := serve(t, l.Server, 554)
	p := dial(t, l.Client, serverControl)
	setupUDP(t, p, s, "rtsp://198.51.100.2/t/1", 5000)
	if r := p.do("SETUP", "rtsp://198.51.100.2/t/2", "Transport: RTP/AVP;unicast;client_port=5002-5003"); r.status != 461 {
		t.Errorf("second SETUP answered %d, want 461 from fwx", r.status)
	}
	s.nothing(t)
}

// TestSettingsChecked: a key the filter does not take, or a value of the
// wrong type, stops fwx with the line.
func TestSettingsChecked(t *testing.T) {
	reg := &filters.Registry{}
	rtsp.Register(reg)
	for _, bad := range []string{"{max_stream: 1}", `{max_streams: "many"}`} {
		pol, err := policy.Parse("p.yaml", []byte(strings.Replace(rtspPolicy,
			"protocols: [rtsp]}", "protocols: [rtsp], filter_settings: "+bad+"}", 1)))
		if err != nil {
			t.Fatal(err)
		}
		if err := fwx.CheckPolicy(pol, reg); err == nil || !strings.Contains(err.Error(), "p.yaml:6: rules[0].filter_settings") {
			t.Errorf("%s: %v, want an error at p.yaml:6", bad, err)
		}
	}
}
