package main

import (
	"io"
	"net/netip"
	"slices"
	"strings"
	"testing"
)

// TestRunAddrs: --in-addr and --out-addr take both families, repeated or
// as lists, in the order given.
func TestRunAddrs(t *testing.T) {
	for _, tt := range []struct {
		name    string
		args    []string
		in, out []string
	}{
		{"ipv4", []string{"--in-addr", "10.0.0.1/24", "--out-addr", "198.51.100.1/24"},
			[]string{"10.0.0.1/24"}, []string{"198.51.100.1/24"}},
		{"dual stack, repeated", []string{"--in-addr", "10.0.0.1/24", "--in-addr", "fd00::1/64", "--out-addr", "198.51.100.1/24", "--out-addr", "2001:db8::1/64"},
			[]string{"10.0.0.1/24", "fd00::1/64"}, []string{"198.51.100.1/24", "2001:db8::1/64"}},
		{"dual stack, lists", []string{"--in-addr", "fd00::1/64, 10.0.0.1/24", "--out-addr", "2001:db8::1/64,198.51.100.1/24,198.51.100.2/24"},
			[]string{"fd00::1/64", "10.0.0.1/24"}, []string{"2001:db8::1/64", "198.51.100.1/24", "198.51.100.2/24"}},
		{"ipv6 only", []string{"--in-addr", "fd00::1/64", "--out-addr", "2001:db8::1/64"},
			[]string{"fd00::1/64"}, []string{"2001:db8::1/64"}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			args := append([]string{"--in-tun", "fwxi", "--out-tun", "fwxo"}, tt.args...)
			c, err := parseRun(args, env{strings.NewReader(""), io.Discard, io.Discard})
			if err != nil {
				t.Fatal(err)
			}
			if got := strs(c.inAddrs); !slices.Equal(got, tt.in) {
				t.Errorf("inside %v, want %v", got, tt.in)
			}
			if got := strs(c.outAddrs); !slices.Equal(got, tt.out) {
				t.Errorf("outside %v, want %v", got, tt.out)
			}
		})
	}
}

func strs(ps []netip.Prefix) []string {
	var s []string
	for _, p := range ps {
		s = append(s, p.String())
	}
	return s
}
