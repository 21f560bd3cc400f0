package sip_test

import (
	"net/netip"
	"strings"
	"testing"

	"github.com/fwx-dev/fwx/filters"
	"github.com/fwx-dev/fwx/filters/sip"
	"github.com/fwx-dev/fwx/netstack/lab"
	"github.com/fwx-dev/fwx/netstack/lab/fwxlab"
	"github.com/fwx-dev/fwx/session"
)

// SIP over IPv6: the lab's dual-stack addresses as a SIP message writes
// them (in brackets, as sipp does in Via, Contact and its descriptions).
var (
	client6    = "[" + fwxlab.ClientAddr6.String() + "]"
	serverSIP6 = netip.AddrPortFrom(fwxlab.ServerAddr6, 5060)
)

// newLab6 is newLab on the dual-stack lab.
func newLab6(t *testing.T) *fwxlab.Lab {
	t.Helper()
	reg := &filters.Registry{}
	reg.Register(sip.Name, func() session.Filter { return sip.New(sip.Config{}) }, sip.Settings...)
	return fwxlab.New(t, fwxlab.Options{Policy: sipPolicy, Filters: reg, IPv6: true})
}

func listen6(t *testing.T, h *lab.Host, addr netip.Addr, port uint16) *udp {
	t.Helper()
	c, err := h.ListenUDPOn(netip.AddrPortFrom(addr, port))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return &udp{t: t, c: c, port: port}
}

// request6 is request from the UA at [fd00::2]:5060 to bob at the
// server's IPv6 address.
func request6(method, callID string, cseq int, body string) string {
	r := request(method, callID, cseq, body)
	r = strings.ReplaceAll(r, "10.0.0.2", client6)
	return strings.ReplaceAll(r, "198.51.100.2", "["+fwxlab.ServerAddr6.String()+"]")
}

// sdp6 is sdp with IPv6 lines, addr written as given (bare, or in
// brackets).
func sdp6(addr string, ports ...uint16) string {
	return strings.ReplaceAll(sdp(addr, ports...), "IN IP4", "IN IP6")
}

// TestIPv6ClientNamesOnlyItself: over IPv6 as over IPv4, a client's Via,
// Contact and description may name only the client (its IPv6 address,
// bare or in brackets): another inside host, fwx, a third party, the
// client's IPv4 address or a name are answered by fwx and open nothing.
func TestIPv6ClientNamesOnlyItself(t *testing.T) {
	other, third, fwx := "[fd00::3]", "["+fwxlab.Server26.String()+"]", "["+fwxlab.FWOutside6.String()+"]"
	invite := func(id, body string) string { return request6("INVITE", id, 1, body) }
	tests := []struct {
		name   string
		msg    string
		status int
	}{
		{"Via: another inside host", strings.Replace(request6("OPTIONS", "v1", 1, ""), "UDP "+client6, "UDP "+other, 1), 403},
		{"Via: fwx", strings.Replace(request6("OPTIONS", "v2", 1, ""), "UDP "+client6, "UDP "+fwx, 1), 403},
		{"Via: the client's IPv4 address", strings.Replace(request6("OPTIONS", "v3", 1, ""), "UDP "+client6, "UDP 10.0.0.2", 1), 403},
		{"Contact: a third party", strings.Replace(request6("REGISTER", "c1", 1, ""), "Contact: <sip:alice@"+client6, "Contact: <sip:alice@"+third, 1), 403},
		{"SDP: another inside host", invite("s1", sdp6("fd00::3", 6000)), 488},
		{"SDP: another inside host in brackets", invite("s2", sdp6(other, 6000)), 488},
		{"SDP: origin elsewhere, in brackets", invite("s3", strings.Replace(sdp6(client6, 6000), "o=- 1 1 IN IP6 "+client6, "o=- 1 1 IN IP6 "+other, 1)), 488},
		{"SDP: origin a name", invite("s4", strings.Replace(sdp6(client6, 6000), "o=- 1 1 IN IP6 "+client6, "o=- 1 1 IN IP6 pc.example", 1)), 488},
		{"SDP: a=rtcp elsewhere, in brackets", invite("s5", sdp6(client6, 6000)+"a=rtcp:6001 IN IP6 "+other+"\r\n"), 488},
	}
	l := newLab6(t)
	ua, uas := listen6(t, l.Client, fwxlab.ClientAddr6, 5060), listen6(t, l.Server, fwxlab.ServerAddr6, 5060)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ua.t, uas.t = t, t
			ua.send(serverSIP6, tt.msg)
			got, from := ua.message()
			if got.Status != tt.status || from != serverSIP6 || !strings.Contains(field(t, got, "warning"), "fwx") {
				t.Errorf("the UA got %d (%s) from %v, want %d from fwx as the peer", got.Status, field(t, got, "warning"), from, tt.status)
			}
			uas.silent()
			if n := l.Session(t).Pinholes(); n != 0 {
				t.Errorf("%d pinholes, want 0", n)
			}
		})
	}
}

// TestIPv6Call: a call over IPv6, written as sipp writes it (addresses in
// brackets). The UAS sees fwx's IPv6 address in every line of the
// description; media cross both ways through the
// pair, which no third party reaches.
func TestIPv6Call(t *testing.T) {
	l := newLab6(t)
	ua, uas := listen6(t, l.Client, fwxlab.ClientAddr6, 5060), listen6(t, l.Server, fwxlab.ServerAddr6, 5060)
	rtp := listen6(t, l.Client, fwxlab.ClientAddr6, 6000)
	peer, intruder := listen6(t, l.Server, fwxlab.ServerAddr6, 7000), listen6(t, l.Server2, fwxlab.Server26, 7000)

	ua.send(serverSIP6, request6("INVITE", "call6", 1, sdp6(client6, 6000)+"a=rtcp:6001 IN IP6 "+client6+"\r\n"))
	inv, from := uas.message()
	if from.Addr() != fwxlab.FWOutside6 {
		t.Fatalf("the INVITE came from %v, want fwx's IPv6 outside address", from)
	}
	if body := string(inv.Body); strings.Contains(body, "fd00:") {
		t.Fatalf("the UAS got a description naming an inside address:\n%s", body)
	}
	addr, port := mediaPort(t, inv)
	if addr != fwxlab.FWOutside6 || port%2 != 0 {
		t.Fatalf("the UAS was told media at %v:%d, want fwx's IPv6 address and an even port", addr, port)
	}
	uas.send(from, reply(inv, 200, "<sip:bob@["+fwxlab.ServerAddr6.String()+"]:5060>", sdp6(fwxlab.ServerAddr6.String(), 7000)))
	if ok, _ := ua.message(); ok.Status != 200 {
		t.Fatalf("the UA got %d", ok.Status)
	}
	pair := netip.AddrPortFrom(fwxlab.FWOutside6, port)
	rtp.send(netip.AddrPortFrom(fwxlab.ServerAddr6, 7000), "rtp from the UA")
	peer.expect("rtp from the UA", pair)
	peer.send(pair, "rtp from the UAS")
	rtp.expect("rtp from the UAS", netip.AddrPortFrom(fwxlab.ServerAddr6, 7000))
	intruder.send(pair, "intruder")
	rtp.silent()
}
