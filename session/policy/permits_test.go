package policy_test

import (
	"net/netip"
	"testing"

	"github.com/fwx-dev/fwx/session/policy"
)

func TestPermits(t *testing.T) {
	p, err := policy.Parse("permits", []byte(`
networks:
  lab: [10.0.0.0/24]
  guest: [10.0.9.0/24]
protocols:
  - {name: ftp, transport: tcp, ports: [21], filter: ftp}
  - {name: web, transport: tcp, ports: [80]}
rules:
  - {name: no-guest-ftp, action: deny, from: [guest], to: [any], protocols: [ftp]}
  - {name: ftp-out, action: allow, from: [internal], to: [external], protocols: [ftp]}
  - {name: guest-any, action: allow, from: [guest], to: [external], protocols: [any]}
`))
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		client, protocol string
		allow            bool
		rule             string
	}{
		{"10.0.0.2", "ftp", true, "ftp-out"},
		{"10.0.9.2", "ftp", false, "no-guest-ftp"},
		{"10.0.9.2", "web", true, "guest-any"},
		{"10.0.0.2", "web", false, policy.DefaultDeny},
		{"10.0.0.2", "nonexistent", false, policy.DefaultDeny},
	} {
		d := p.Permits(netip.MustParseAddr(tt.client), tt.protocol)
		if d.Allow != tt.allow || d.Rule != tt.rule {
			t.Errorf("Permits(%s, %s) = %v by %q, want %v by %q", tt.client, tt.protocol, d.Allow, d.Rule, tt.allow, tt.rule)
		}
	}
}

func TestFilters(t *testing.T) {
	p, err := policy.Parse("filters", []byte(`
protocols:
  - {name: ftp, transport: tcp, ports: [21], filter: ftp}
  - {name: rtsp, transport: tcp, ports: [554], filter: rtsp}
  - {name: unused, transport: tcp, ports: [70], filter: gopher}
  - {name: ftp-in, transport: tcp, ports: [21], direction: inbound, filter: ftp}
rules:
  - {name: out, action: allow, from: [internal], to: [external], protocols: [ftp, rtsp]}
publish:
  - {name: ftpd, protocol: ftp-in, server: "10.0.0.5"}
`))
	if err != nil {
		t.Fatal(err)
	}
	if got := p.Filters(); len(got) != 2 || got[0] != "ftp" || got[1] != "rtsp" {
		t.Errorf("Filters() = %q, want [ftp rtsp] (gopher is bound to no rule)", got)
	}
}

func TestPermitsPublishedServer(t *testing.T) {
	p, err := policy.Parse("pub", []byte(`
protocols:
  - {name: ftp-server, transport: tcp, ports: [21], direction: inbound, filter: ftp}
publish:
  - {name: ftpd, protocol: ftp-server, server: "10.0.0.5"}
`))
	if err != nil {
		t.Fatal(err)
	}
	if d := p.Permits(netip.MustParseAddr("10.0.0.5"), "ftp-server"); !d.Allow || d.Rule != "ftpd" {
		t.Errorf("published server: %+v, want allowed by ftpd", d)
	}
	if d := p.Permits(netip.MustParseAddr("10.0.0.6"), "ftp-server"); d.Allow {
		t.Errorf("another host: %+v, want denied", d)
	}
}
