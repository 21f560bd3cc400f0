package fwx_test

import (
	"net/netip"
	"testing"
	"time"

	"github.com/fwx-dev/fwx"
	"github.com/fwx-dev/fwx/netstack/lab"
	"github.com/fwx-dev/fwx/netstack/lab/fwxlab"
	"github.com/fwx-dev/fwx/session"
)

// TestStatus: the status lists flows as conntrack -L would, with their
// state, path, counters and times, the sessions' grants, and totals.
func TestStatus(t *testing.T) {
	tb := newTestbed(t, sdkPolicy+`  - {name: no-81, action: deny, from: [internal], to: [any], protocols: [any]}
`)
	fwxlab.EchoTCP(t, tb.Server, 21)
	c, err := tb.Client.DialTCPFrom(lab.Context(t, 5*time.Second), netip.AddrPortFrom(clientIP.Addr(), 40021), netip.AddrPortFrom(serverIP.Addr(), 21))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	fwxlab.RoundTrip(t, c, "0123456789")
	if _, err := tb.Client.Ping(lab.Context(t, 5*time.Second), serverIP.Addr(), 7, 1, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := tb.Session(t).AllowFutureConnect(session.FutureConnect{Addr: netip.AddrPortFrom(serverIP.Addr(), 2121), Transport: session.TCP, Protocol: "ftp"}); err != nil {
		t.Fatal(err)
	}
	u, err := tb.Client.DialUDP(netip.AddrPortFrom(clientIP.Addr(), 5000), netip.AddrPortFrom(serverIP.Addr(), 81))
	if err != nil {
		t.Fatal(err)
	}
	defer u.Close()
	u.Write([]byte("denied"))
	deadline := time.Now().Add(5 * time.Second)
	for tb.FW.Status(fwx.StatusFilter{}).Totals.Denied["no-81"] == 0 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	tb.Clock.Advance(3 * time.Second)

	st := tb.FW.Status(fwx.StatusFilter{})
	if len(st.Flows) != 2 {
		t.Fatalf("%d flows, want the TCP one and the ping: %+v", len(st.Flows), st.Flows)
	}
	// Both started at the same time on the lab clock: their order is the
	// table's.
	if st.Flows[0].Protocol != "tcp" {
		st.Flows[0], st.Flows[1] = st.Flows[1], st.Flows[0]
	}
	f := st.Flows[0]
	if f.Protocol != "tcp" || f.Client.String() != "10.0.0.2:40021" || f.Destination.String() != "198.51.100.2:21" ||
		f.Translated.String() != "198.51.100.1:40021" || f.State != "established" || f.Path != "fast" || f.Rule != "ftp-out" ||
		f.Policy != "ftp" || f.Age != 3 || f.Idle != 3 || f.PacketsSent < 3 || f.BytesReceived < 10+40*2 {
		t.Errorf("TCP flow %+v", f)
	}
	if p := st.Flows[1]; p.Protocol != "icmp" || p.State != "replied" || p.PacketsSent != 1 || p.PacketsReceived != 1 {
		t.Errorf("ping flow %+v", p)
	}
	tt := st.Totals
	if tt.Flows != 2 || tt.ByState["established"] != 1 || tt.ByPath["fast"] != 2 || tt.ByProtocol["icmp"] != 1 ||
		tt.Ports["tcp"].Used != 1 || tt.Ports["tcp"].Size != 65535 || tt.Created["ftp-out"] != 2 || tt.Denied["no-81"] != 1 ||
		tt.Pinholes != 1 || tt.PacketsSent < 4 {
		t.Errorf("totals %+v", tt)
	}
	if len(st.Sessions) != 1 || len(st.Sessions[0].Grants) != 1 {
		t.Fatalf("sessions %+v", st.Sessions)
	}
	if g := st.Sessions[0].Grants[0]; g.Kind != "connect" || g.Addr.String() != "198.51.100.2:2121" || !g.Live || g.Protocol != "ftp" {
		t.Errorf("grant %+v", g)
	}
	for _, sf := range []struct {
		filter fwx.StatusFilter
		want   int
	}{
		{fwx.StatusFilter{Port: 21}, 1},
		{fwx.StatusFilter{Addr: serverIP.Addr()}, 2},
		{fwx.StatusFilter{Addr: netip.MustParseAddr("192.0.2.1")}, 0},
		{fwx.StatusFilter{Rule: "ftp-out", Port: 40021}, 1},
		{fwx.StatusFilter{Rule: "other"}, 0},
	} {
		if got := len(tb.FW.Status(sf.filter).Flows); got != sf.want {
			t.Errorf("Status(%+v): %d flows, want %d", sf.filter, got, sf.want)
		}
	}
	// What ended flows carried stays in the totals, counted once: the
	// closed TCP flow is still in the table (TIME_WAIT), and its bytes
	// are the ended record's.
	before := tt.BytesSent
	c.Close()
	ended := tb.Log.WaitRecords(t, 1, map[string]string{"event": "ended", "protocol": "tcp"})[0]
	st = tb.FW.Status(fwx.StatusFilter{})
	after := st.Totals.BytesSent
	if after < before {
		t.Errorf("bytes sent went from %d to %d when the flow ended", before, after)
	}
	var ping uint64
	for _, f := range st.Flows {
		if f.Protocol == "icmp" {
			ping = f.BytesSent
		}
	}
	if want := uint64(ended["bytes_sent"].(float64)) + ping; after != want {
		t.Errorf("bytes sent %d after the TCP flow ended, want its ended record's %v and the ping's %d", after, ended["bytes_sent"], ping)
	}
}
