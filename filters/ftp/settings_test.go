package ftp_test

import (
	"net/netip"
	"strings"
	"testing"

	"github.com/fwx-dev/fwx"
	"github.com/fwx-dev/fwx/filters"
	"github.com/fwx-dev/fwx/filters/ftp"
	"github.com/fwx-dev/fwx/netstack/lab/fwxlab"
	"github.com/fwx-dev/fwx/session"
	"github.com/fwx-dev/fwx/session/policy"
)

// settingsPolicy has one FTP protocol per port, one rule read-only by its
// filter_settings, one by the ftp-readonly alias, one made writable again.
const settingsPolicy = `
protocols:
  - {name: ftp, transport: tcp, ports: [21], filter: ftp}
  - {name: ftp-ro, transport: tcp, ports: [2121], filter: ftp}
  - {name: ftp-alias, transport: tcp, ports: [2221], filter: ftp-readonly}
  - {name: ftp-alias-rw, transport: tcp, ports: [2321], filter: ftp-readonly}
rules:
  - {name: ro, action: allow, from: [internal], to: [external], protocols: [ftp-ro], filter_settings: {read_only: true}}
  - {name: alias, action: allow, from: [internal], to: [external], protocols: [ftp-alias]}
  - {name: alias-rw, action: allow, from: [internal], to: [external], protocols: [ftp-alias-rw], filter_settings: {read_only: false}}
  - {name: rw, action: allow, from: [internal], to: [external], protocols: [ftp]}
`

func settingsRegistry() *filters.Registry {
	reg := &filters.Registry{}
	reg.Register(ftp.Name, func() session.Filter { return ftp.New(ftp.Config{}) }, ftp.Settings...)
	reg.Register(ftp.NameReadOnly, func() session.Filter { return ftp.New(ftp.Config{ReadOnly: true}) }, ftp.Settings...)
	return reg
}

// TestReadOnlySetting: a rule's read_only setting makes its connections
// read-only; the ftp-readonly alias is read-only unless its rule says
// otherwise; other rules' connections may upload.
func TestReadOnlySetting(t *testing.T) {
	l := fwxlab.New(t, fwxlab.Options{Policy: settingsPolicy, Filters: settingsRegistry()})
	for _, tt := range []struct {
		port     uint16
		readOnly bool
	}{{21, false}, {2121, true}, {2221, true}, {2321, false}} {
		srv := serve(t, l.Server, tt.port)
		c := dial(t, l.Client, netip.AddrPortFrom(fwxlab.ServerAddr, tt.port))
		if tt.readOnly {
			refused(t, c, srv, "STOR f", "550")
			continue
		}
		c.cmd("STOR f", "200")
		if got := srv.received(t); got != "STOR f" {
			t.Errorf("port %d: server got %q, want the upload", tt.port, got)
		}
	}
}

// TestSettingsChecked: keys the filter does not take and values of the
// wrong type are errors with their lines, for fwx and for `fwx policy`.
func TestSettingsChecked(t *testing.T) {
	pol, err := policy.Parse("p.yaml", []byte(`protocols:
  - {name: ftp, transport: tcp, ports: [21], filter: ftp}
rules:
  - name: a
    action: allow
    from: [internal]
    to: [external]
    protocols: [ftp]
    filter_settings:
      read_onyl: true
  - name: b
    action: allow
    from: [internal]
    to: [external]
    protocols: [ftp]
    filter_settings: {read_only: "yes"}
`))
	if err != nil {
		t.Fatal(err)
	}
	err = fwx.CheckPolicy(pol, settingsRegistry())
	for _, want := range []string{
		`p.yaml:10: rules[0].filter_settings.read_onyl: filter "ftp" has no setting "read_onyl" (did you mean "read_only"?); it takes read_only`,
		`p.yaml:16: rules[1].filter_settings.read_only: bool setting of filter "ftp": want true or false, not "yes"`,
	} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("error %v\nwant it to say %s", err, want)
		}
	}
}
