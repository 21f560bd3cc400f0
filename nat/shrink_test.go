package nat

import (
	"net/netip"
	"testing"
	"time"
)

// TestWaveLeavesNothing: once a wave of flows has expired and been swept,
// the table holds nothing for them: no flow, mapping or client, and the
// maps that grew for them were rebuilt, so their memory goes back.
func TestWaveLeavesNothing(t *testing.T) {
	tab, err := New(Config{External: []netip.Addr{netip.MustParseAddr("198.51.100.1")}, Limits: Limits{ClientRate: NoLimit}})
	if err != nil {
		t.Fatal(err)
	}
	start := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	for i := range 40000 {
		src := netip.AddrPortFrom(netip.AddrFrom4([4]byte{10, 1, byte(i >> 8), byte(i)}), 5000)
		dst := netip.MustParseAddrPort("203.0.113.5:53")
		if f, why := tab.outbound(UDP, src, dst, start.UnixNano()); f == nil {
			t.Fatalf("flow %d refused: %v", i, why)
		}
	}
	tab.Expire(start.Add(time.Hour))
	if st := tab.Stats(); st.Flows != 0 || st.Mappings != 0 {
		t.Fatalf("after the wave: %+v", st)
	}
	for i := range tab.shards {
		if s := &tab.shards[i]; s.out != nil || s.in != nil {
			t.Fatalf("shard %d kept its maps (%d, %d entries)", i, len(s.out), len(s.in))
		}
	}
	for i := range tab.byInside {
		if s := &tab.byInside[i]; s.m != nil && len(s.m) == 0 && s.peak > 256 {
			t.Fatalf("mapping shard %d kept its map", i)
		}
	}
	for i := range tab.clients {
		if s := &tab.clients[i]; s.m != nil {
			t.Fatalf("client shard %d kept %d clients", i, len(s.m))
		}
	}
}
