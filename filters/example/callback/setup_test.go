package callback_test

import (
	"net/netip"
	"strings"
	"testing"

	"github.com/fwx-dev/fwx"
	"github.com/fwx-dev/fwx/filters"
	"github.com/fwx-dev/fwx/filters/example/callback"
	"github.com/fwx-dev/fwx/netstack/lab"
	"github.com/fwx-dev/fwx/session"
	"github.com/fwx-dev/fwx/session/policy"
)

// TestRegister: Register adds the filter under its name to the registry it
// is given, and to no other.
func TestRegister(t *testing.T) {
	reg := &filters.Registry{}
	callback.Register(reg)
	e, ok := reg.Lookup("callback")
	if !ok {
		t.Fatal("callback is not registered")
	}
	if _, ok := e.New().(*callback.Filter); !ok {
		t.Errorf("the registered constructor makes a %T", e.New())
	}
	if _, ok := filters.Default.Lookup("callback"); ok {
		t.Error("the example registered itself in filters.Default")
	}
}

// TestInit: Init accepts a good Config and hooks connect events only; it
// rejects a bad one.
func TestInit(t *testing.T) {
	for _, tt := range []struct {
		name    string
		maxLine int
		wantErr string
	}{
		{"default", 0, ""},
		{"smallest", 16, ""},
		{"largest", 1 << 16, ""},
		{"too small for a command", 15, "MaxLine 15"},
		{"negative", -1, "MaxLine -1"},
		{"too large", 1<<16 + 1, "MaxLine 65537"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			hooks, err := callback.New(callback.Config{MaxLine: tt.maxLine}).Init()
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Errorf("Init: %v, want an error about %s", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if want := (session.Hooks{Events: session.EventConnectTCP}); hooks != want {
				t.Errorf("hooks %+v, want %+v", hooks, want)
			}
		})
	}
}

// TestBadConfigStopsFwx: a filter whose Init fails keeps fwx from
// starting, when the policy turns it on.
func TestBadConfigStopsFwx(t *testing.T) {
	lab.CheckGoroutines(t)
	pol, err := policy.Parse("lab-policy", []byte(labPolicy))
	if err != nil {
		t.Fatal(err)
	}
	reg := &filters.Registry{}
	reg.Register(callback.Name, func() session.Filter { return callback.New(callback.Config{MaxLine: 8}) })
	n := lab.New(lab.Options{Seed: 1})
	inside, outside := n.NewSegment("inside"), n.NewSegment("outside")
	_, err = fwx.New(fwx.Config{
		Inside:      inside.Device(),
		Outside:     outside.Device(),
		InsideAddr:  netip.MustParsePrefix("10.0.0.1/24"),
		OutsideAddr: netip.MustParsePrefix("198.51.100.1/24"),
		Policy:      pol,
		Filters:     reg,
	})
	if err == nil || !strings.Contains(err.Error(), "filters/callback: MaxLine 8") {
		t.Errorf("fwx.New: %v, want the filter's configuration error", err)
	}
	n.Close()
}
