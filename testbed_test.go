package fwx_test

import (
	"testing"

	"github.com/fwx-dev/fwx"
	"github.com/fwx-dev/fwx/netstack/lab/fwxlab"
	"github.com/fwx-dev/fwx/session"
)

// The lab topology every test here uses is fwxlab's:
//
//	client 10.0.0.2 ┐                              ┌ server  198.51.100.2
//	client2 10.0.0.3├─ inside ─ fwx ─ outside ─────┤ server2 198.51.100.3
//	                   10.0.0.1       198.51.100.1 └
var (
	fwIn      = fwxlab.InsidePrefix
	fwOut     = fwxlab.OutsidePrefix
	clientIP  = fwxlab.ClientPrefix
	serverIP  = fwxlab.ServerPrefix
	server2IP = fwxlab.Server2Prefix
)

// sdkPolicy allows the client only FTP control connections and ping; every
// secondary connection must come through a pinhole (as the SDK's tests'
// policy of that name in package session).
const sdkPolicy = `
protocols:
  - {name: ftp, transport: tcp, ports: [21]}
  - {name: tftp, transport: udp, ports: [69]}
rules:
  - {name: ftp-out, action: allow, from: [internal], to: [external], protocols: [ftp, tftp, ping]}
`

type testbed struct{ *fwxlab.Lab }

// newTestbed starts fwx in the lab with policy (YAML; empty means the
// built-in default); options adjust fwx's configuration.
func newTestbed(t testing.TB, policyYAML string, opts ...func(*fwx.Config)) *testbed {
	t.Helper()
	return &testbed{fwxlab.New(t, fwxlab.Options{
		Policy: policyYAML,
		Configure: func(c *fwx.Config) {
			for _, o := range opts {
				o(c)
			}
		},
	})}
}

func withFilter(name string, f session.Filter) func(*fwx.Config) {
	return func(c *fwx.Config) { c.Filters = fwxlab.Registry(name, f) }
}
