package nat_test

import (
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/fwx-dev/fwx/nat"
	"github.com/fwx-dev/fwx/netstack/lab"
)

// TestConcurrentChurn runs the table as a busy gateway does, all at once:
// clients opening flows, servers answering, unsolicited packets aimed at
// live mappings, the sweep, under the limits. Run with -race it checks the
// locking; at the end, once everything has expired, the table must hold
// nothing: no flow, no mapping, no client's charge.
func TestConcurrentChurn(t *testing.T) {
	tab, _ := newTable(t, nat.Config{Limits: nat.Limits{MaxFlows: 500, ClientFlows: 200, ClientHalfOpen: 50, ClientRate: 2000}})
	var wg sync.WaitGroup
	var clock sync.Mutex
	now := t0
	tick := func() time.Time {
		clock.Lock()
		defer clock.Unlock()
		now = now.Add(time.Millisecond)
		return now
	}
	const rounds = 2000
	for c := range 4 {
		cl := netip.AddrFrom4([4]byte{10, 0, 0, byte(10 + c)})
		wg.Add(1)
		go func() { // a client and its server
			defer wg.Done()
			for i := range rounds {
				src := netip.AddrPortFrom(cl, uint16(20000+i%300))
				dst := netip.AddrPortFrom(server.Addr(), uint16(80+i%7))
				at := tick()
				v, p := out(tab, lab.TCPPacket(src, dst, syn_, 1000, 0, nil), at)
				if v != nat.Forward {
					continue
				}
				if i%3 != 0 { // some handshakes never complete
					in(tab, lab.TCPPacket(dst, p.Src, synAck, 5000, 1001, nil), at)
					out(tab, lab.TCPPacket(src, dst, ack_, 1001, 5001, nil), at)
				}
				if i%2 == 0 {
					out(tab, lab.TCPPacket(src, dst, rst_, 1001, 0, nil), at)
				}
				out(tab, lab.UDPPacket(src, dst, nil), at)
			}
		}()
	}
	wg.Add(2)
	go func() { // an attacker sweeping the external ports
		defer wg.Done()
		for i := range rounds * 2 {
			in(tab, lab.UDPPacket(server2, netip.AddrPortFrom(ext, uint16(20000+i%300)), nil), tick())
		}
	}()
	go func() { // the sweep
		defer wg.Done()
		for range 50 {
			tab.Expire(tick())
		}
	}()
	wg.Wait()
	tab.Expire(now.Add(24 * time.Hour))
	st := tab.Stats()
	if st.Flows != 0 || st.Mappings != 0 {
		t.Fatalf("after everything expired: %+v", st)
	}
	// Every client's charges went back: a client may open its whole
	// allowance of half-open connections again.
	for i := range 50 {
		if v, _ := out(tab, lab.TCPPacket(netip.AddrPortFrom(netip.MustParseAddr("10.0.0.10"), uint16(40000+i)), server, syn_, 1, 0, nil), now.Add(25*time.Hour)); v != nat.Forward {
			t.Fatalf("half-open connection %d refused after the churn: %v", i, v)
		}
	}
}
