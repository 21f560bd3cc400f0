package sip_test

import (
	"testing"

	"github.com/fwx-dev/fwx/filters/sip"
)

func TestParseVia(t *testing.T) {
	tests := []struct {
		in, transport, host string
		port                uint16
		ok                  bool
	}{
		{"SIP/2.0/UDP 10.0.0.2:5060;branch=z9hG4bK1;rport", "UDP", "10.0.0.2", 5060, true},
		{"SIP / 2.0 / TCP 10.0.0.2 ;branch=z9hG4bK1", "TCP", "10.0.0.2", 0, true},
		{"sip/2.0/udp [2001:db8::1]:5062;branch=x", "UDP", "[2001:db8::1]", 5062, true},
		{"SIP/2.0/UDP pc33.atlanta.com;branch=x", "UDP", "pc33.atlanta.com", 0, true},
		{"SIP/2.0/UDP 10.0.0.2:0;branch=x", "", "", 0, false},
		{"SIP/2.0/UDP 10.0.0.2:65536", "", "", 0, false},
		{"SIP/3.0/UDP 10.0.0.2", "", "", 0, false},
		{"SIP/2.0/UDP", "", "", 0, false},
		{"SIP/2.0/UDP [2001:db8::1", "", "", 0, false},
		{"SIP/2.0/UDP a@b", "", "", 0, false},
	}
	for _, tt := range tests {
		v, err := sip.ParseVia(tt.in)
		if (err == nil) != tt.ok {
			t.Errorf("%q: error %v, want ok %v", tt.in, err, tt.ok)
			continue
		}
		if err == nil && (v.Transport != tt.transport || v.SentBy.Host != tt.host || v.SentBy.Port != tt.port) {
			t.Errorf("%q: %+v", tt.in, v)
		}
	}
}

func TestParseContact(t *testing.T) {
	tests := []struct {
		in, host, params, out string
		port                  uint16
		ok, star              bool
	}{
		{in: "<sip:alice@10.0.0.2:5060;transport=udp>;expires=3600", host: "10.0.0.2", port: 5060, params: ";expires=3600",
			out: "<sip:alice@10.0.0.2:5060;transport=udp>;expires=3600", ok: true},
		{in: `"Alice, A." <sips:alice@10.0.0.2>`, host: "10.0.0.2", out: `"Alice, A." <sips:alice@10.0.0.2>`, ok: true},
		{in: "sip:alice@10.0.0.2:5070;expires=60", host: "10.0.0.2", port: 5070, params: ";expires=60",
			out: "<sip:alice@10.0.0.2:5070>;expires=60", ok: true},
		{in: "sip:10.0.0.2", host: "10.0.0.2", out: "<sip:10.0.0.2>", ok: true},
		{in: "*", star: true, out: "*", ok: true},
		{in: "<tel:+15551234>"},
		{in: "<sip:alice@10.0.0.2"},
		{in: "<sip:alice@>"},
		{in: "<sip:alice@10.0.0.2> junk"},
	}
	for _, tt := range tests {
		c, err := sip.ParseContact(tt.in)
		if (err == nil) != tt.ok {
			t.Errorf("%q: error %v, want ok %v", tt.in, err, tt.ok)
			continue
		}
		if err != nil {
			continue
		}
		if c.Star != tt.star || (!c.Star && (c.URI.Host.Host != tt.host || c.URI.Host.Port != tt.port)) || c.Params != tt.params {
			t.Errorf("%q: %+v", tt.in, c)
		}
		if c.String() != tt.out {
			t.Errorf("%q: formats as %q, want %q", tt.in, c.String(), tt.out)
		}
	}
}
