package policy

import (
	"net/netip"
	"slices"
	"testing"
)

const publishPolicy = `
networks:
  partners: [203.0.113.0/24]
protocols:
  - {name: web-in, transport: tcp, ports: [80], direction: inbound}
  - {name: dns, transport: udp, ports: [53], direction: both, filter: dns}
  - {name: range-in, transport: tcp, ports: ["9000-9010"], direction: inbound}
  - {name: https-in, transport: tcp, ports: [443], direction: inbound}
publish:
  - name: www                 # listen omitted: any address, web-in's port
    protocol: web-in
    server: 10.0.0.2
  - name: alt
    protocol: web-in
    listen: "192.0.2.1:8080"
    server: "10.0.0.3:80"
    from: [partners]
  - name: alt2                # same port, another address: no conflict
    protocol: web-in
    listen: "192.0.2.2:8080"
    server: 10.0.0.4
  - name: dns
    protocol: dns
    listen: "0.0.0.0:53"      # unspecified = any
    server: "[fd00::53]:5353"
  - name: range
    protocol: range-in
    listen: ":9005"
    server: 10.0.0.9:9000
  - name: ssh
    protocol: any-tcp
    listen: ":2222"
    server: 10.0.0.10:22
    from: [internal]          # internal holds no outside source: never used
  - name: v6                  # address only: https-in's port
    protocol: https-in
    listen: "[2001:db8::1]"
    server: "[2001:db8:1::80]"
`

func TestPublications(t *testing.T) {
	p := mustParse(t, publishPolicy)
	anyAddr := func(port uint16) netip.AddrPort { return netip.AddrPortFrom(netip.Addr{}, port) }
	want := []Publication{
		{Name: "www", Transport: TCP, Listen: anyAddr(80), Server: mustAddrPort("10.0.0.2:80"), Protocol: "web-in"},
		{Name: "alt", Transport: TCP, Listen: mustAddrPort("192.0.2.1:8080"), Server: mustAddrPort("10.0.0.3:80"), Protocol: "web-in"},
		{Name: "alt2", Transport: TCP, Listen: mustAddrPort("192.0.2.2:8080"), Server: mustAddrPort("10.0.0.4:8080"), Protocol: "web-in"},
		{Name: "dns", Transport: UDP, Listen: anyAddr(53), Server: mustAddrPort("[fd00::53]:5353"), Protocol: "dns", Filter: "dns"},
		{Name: "range", Transport: TCP, Listen: anyAddr(9005), Server: mustAddrPort("10.0.0.9:9000"), Protocol: "range-in"},
		{Name: "ssh", Transport: TCP, Listen: anyAddr(2222), Server: mustAddrPort("10.0.0.10:22"), Protocol: "any-tcp"},
		{Name: "v6", Transport: TCP, Listen: mustAddrPort("[2001:db8::1]:443"), Server: mustAddrPort("[2001:db8:1::80]:443"), Protocol: "https-in"},
	}
	got := p.Publications()
	if !slices.Equal(got, want) {
		t.Errorf("Publications() =\n%+v\nwant\n%+v", got, want)
	}
	got[0].Name = "changed"
	if p.Publications()[0].Name != "www" {
		t.Error("changing the slice Publications returned changed the policy")
	}
}

func TestPublished(t *testing.T) {
	p := mustParse(t, publishPolicy)
	tests := []struct {
		name      string
		transport Transport
		listen    string
		src       string
		want      string // publication name; empty: none
	}{
		{"any address, protocol's port", TCP, "198.51.100.1:80", "192.0.2.200", "www"},
		{"v6 listen address", TCP, "[2001:db8::1]:443", "2001:db8:2::1", "v6"},
		{"v6 listen address, an IPv4 server's port", TCP, "[2001:db8::1]:80", "2001:db8:2::1", ""},
		{"other address, v6's port", TCP, "[2001:db8::2]:443", "2001:db8:2::1", ""},
		{"ipv4-mapped listen and source", TCP, "[::ffff:198.51.100.1]:80", "::ffff:192.0.2.200", "www"},
		{"source in from", TCP, "192.0.2.1:8080", "203.0.113.5", "alt"},
		{"source not in from", TCP, "192.0.2.1:8080", "198.51.100.9", ""},
		{"other listen address", TCP, "192.0.2.2:8080", "198.51.100.9", "alt2"},
		{"listen address not published", TCP, "192.0.2.3:8080", "203.0.113.5", ""},
		{"udp", UDP, "[2001:db8::1]:53", "2001:db8:2::9", "dns"},
		{"an IPv6 server's port on IPv4", UDP, "192.0.2.1:53", "198.51.100.9", ""},
		{"wrong transport", TCP, "192.0.2.1:53", "198.51.100.9", ""},
		{"listen port, not the range", TCP, "192.0.2.1:9005", "198.51.100.9", "range"},
		{"other port of the range", TCP, "192.0.2.1:9006", "198.51.100.9", ""},
		{"from internal matches no outside source", TCP, "192.0.2.1:2222", "198.51.100.9", ""},
		{"icmp", ICMP, "192.0.2.1:0", "198.51.100.9", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			pub, ok := p.Published(tt.transport, mustAddrPort(tt.listen), mustAddr(tt.src))
			if ok != (tt.want != "") || pub.Name != tt.want {
				t.Errorf("Published(%v, %s, %s) = %q, %v; want %q", tt.transport, tt.listen, tt.src, pub.Name, ok, tt.want)
			}
		})
	}
}
