package fwx_test

import (
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/fwx-dev/fwx"
	"github.com/fwx-dev/fwx/nat"
	"github.com/fwx-dev/fwx/netstack/lab"
	"github.com/fwx-dev/fwx/netstack/lab/fwxlab"
	"github.com/fwx-dev/fwx/session"
	"github.com/fwx-dev/fwx/session/policy"
)

// The two policies reload tests switch between: both allow port 8000;
// only allowAll allows port 8001.
const (
	allowAll = `
protocols:
  - {name: p8000, transport: tcp, ports: [8000]}
  - {name: p8001, transport: tcp, ports: [8001]}
rules:
  - {name: out, action: allow, from: [internal], to: [external], protocols: [any]}
options: {reload: %s}
`
	deny8001 = `
protocols:
  - {name: p8000, transport: tcp, ports: [8000]}
  - {name: p8001, transport: tcp, ports: [8001]}
rules:
  - {name: no-8001, action: deny, from: [internal], to: [any], protocols: [p8001]}
  - {name: out2, action: allow, from: [internal], to: [external], protocols: [any]}
options: {reload: %s}
`
)

func mustPolicy(t testing.TB, src string) *policy.Policy {
	t.Helper()
	p, err := policy.Parse("reload.yaml", []byte(src))
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// echoLines sends numbered lines on a TCP echo connection and checks each
// comes back, until stop; it counts the lines echoed in n and returns the
// first error.
func echoLines(c io.ReadWriter, n *atomic.Int64, stop <-chan struct{}) error {
	buf := make([]byte, 64)
	for i := 0; ; i++ {
		select {
		case <-stop:
			return nil
		default:
		}
		msg := fmt.Sprintf("line %08d\n", i)
		if _, err := io.WriteString(c, msg); err != nil {
			return err
		}
		if _, err := io.ReadFull(c, buf[:len(msg)]); err != nil {
			return err
		}
		if string(buf[:len(msg)]) != msg {
			return fmt.Errorf("echo %q, want %q", buf[:len(msg)], msg)
		}
		n.Add(1)
	}
}

// TestReloadUnderTraffic: reloads swap the policy for new flows while
// established ones carry on, not a packet dropped, and (options.reload:
// keep) even the flows the new policy would refuse.
func TestReloadUnderTraffic(t *testing.T) {
	a, b := fmt.Sprintf(allowAll, "keep"), fmt.Sprintf(deny8001, "keep")
	tb := newTestbed(t, a)
	fwxlab.EchoTCP(t, tb.Server, 8000)
	fwxlab.EchoTCP(t, tb.Server, 8001)
	udp := fwxlab.EchoUDP(t, tb.Server, 7000)
	var conns []net.Conn
	for _, port := range []uint16{8000, 8001} {
		c, err := tb.Client.DialTCP(lab.Context(t, 5*time.Second), netip.AddrPortFrom(serverIP.Addr(), port))
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(30 * time.Second))
		conns = append(conns, c)
	}
	u, err := tb.Client.DialUDP(netip.AddrPortFrom(clientIP.Addr(), 7001), netip.AddrPortFrom(serverIP.Addr(), 7000))
	if err != nil {
		t.Fatal(err)
	}
	defer u.Close()

	stop := make(chan struct{})
	var wg sync.WaitGroup
	lines := make([]atomic.Int64, len(conns))
	errs := make([]error, len(conns))
	for i, c := range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = echoLines(c, &lines[i], stop)
		}()
	}
	// echoed waits until every connection has echoed a line more than it
	// had at before: each reload is followed by traffic on every flow,
	// however slow the machine.
	echoed := func(reload int, before []int64) {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for i := range conns {
			for lines[i].Load() <= before[i] {
				if time.Now().After(deadline) {
					t.Fatalf("connection %d echoed nothing within 10 s of reload %d", i, reload)
				}
				time.Sleep(time.Millisecond)
			}
		}
	}
	counts := func() []int64 {
		n := make([]int64, len(conns))
		for i := range conns {
			n[i] = lines[i].Load()
		}
		return n
	}
	const datagrams = 200
	for i := range 20 {
		src := a
		if i%2 == 0 {
			src = b
		}
		before := counts()
		if _, err := tb.FW.Reload(mustPolicy(t, src)); err != nil {
			t.Fatalf("reload %d: %v", i, err)
		}
		for j := range datagrams / 20 {
			fmt.Fprintf(u, "datagram %d.%d", i, j)
		}
		echoed(i, before)
	}
	close(stop)
	wg.Wait()
	for i := range conns {
		if errs[i] != nil {
			t.Errorf("connection %d: %d lines echoed across the reloads, then %v", i, lines[i].Load(), errs[i])
		}
	}
	for range datagrams {
		fwxlab.Recv(t, udp)
	}
	// fwx dropped nothing: no drop of any reason, no packet lost on the
	// way. (The hosts' retransmissions are shown, not judged: on a loaded
	// machine a retransmission timer can fire without a loss.)
	for r, n := range tb.FW.Stats().Drops {
		if n != 0 {
			t.Errorf("fwx dropped %d packets (%v) across the reloads", n, nat.DropReason(r))
		}
	}
	for _, seg := range []*lab.Segment{tb.Inside, tb.Outside} {
		if st := seg.Stats(); st.CaptureDrops+st.ClosedDrops+st.Captured != 0 {
			t.Errorf("segment %s: %+v", seg.Name(), st)
		}
	}
	for _, h := range []*lab.Host{tb.Client, tb.Server} {
		if st := h.Stats(); st.SendDrops != 0 {
			t.Errorf("host %s: %+v", h.Name(), st)
		}
	}
	t.Logf("retransmissions: client %d, server %d", tb.Client.Stack().Stats().TCP.Retransmits.Value(), tb.Server.Stack().Stats().TCP.Retransmits.Value())
	if n := tb.FW.Flows(); n != 3 {
		t.Errorf("%d flows, want the same 3 as before the reloads", n)
	}
	// The last reload (i = 19) put a in force: 8001 opens again; then b
	// refuses new connections to 8001.
	if _, err := tb.FW.Reload(mustPolicy(t, b)); err != nil {
		t.Fatal(err)
	}
	if _, err := tb.Client.DialTCP(lab.Context(t, 5*time.Second), netip.AddrPortFrom(serverIP.Addr(), 8001)); !errors.Is(err, syscall.ECONNREFUSED) {
		t.Errorf("a new connection to 8001 under the policy that denies it: %v, want refused", err)
	}
	fwxlab.RoundTrip(t, conns[1], "the established one still works")
}

// TestReloadStrict: with options.reload: strict, the flows the new policy
// refuses end at the reload, with their ended record; the others stay.
func TestReloadStrict(t *testing.T) {
	tb := newTestbed(t, fmt.Sprintf(allowAll, "strict"))
	fwxlab.EchoTCP(t, tb.Server, 8000)
	fwxlab.EchoTCP(t, tb.Server, 8001)
	var conns []net.Conn
	for _, port := range []uint16{8000, 8001} {
		c, err := tb.Client.DialTCPFrom(lab.Context(t, 5*time.Second), netip.AddrPortFrom(clientIP.Addr(), 41000+port), netip.AddrPortFrom(serverIP.Addr(), port))
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		fwxlab.RoundTrip(t, c, "before")
		conns = append(conns, c)
	}
	r, err := tb.FW.Reload(mustPolicy(t, fmt.Sprintf(deny8001, "strict")))
	if err != nil {
		t.Fatal(err)
	}
	if !r.Strict || r.Ended != 1 {
		t.Errorf("report %+v, want strict with 1 flow ended", r)
	}
	rec := tb.Log.WaitRecords(t, 1, map[string]string{"event": "ended", "destination": "198.51.100.2:8001"})[0]
	if rec["client"] != "10.0.0.2:49001" || rec["rule"] != "out" {
		t.Errorf("ended record %v", rec)
	}
	fwxlab.RoundTrip(t, conns[0], "after: port 8000 is still allowed")
	// The ended connection's next segment is answered with a RST, so its
	// client learns at once instead of waiting for its own timeout.
	conns[1].SetDeadline(time.Now().Add(5 * time.Second))
	conns[1].Write([]byte("after"))
	if n, err := conns[1].Read(make([]byte, 16)); err == nil {
		t.Errorf("the refused connection still carries data: read %d bytes", n)
	} else if ne, ok := err.(net.Error); ok && ne.Timeout() {
		t.Errorf("the refused connection got no RST: %v", err)
	}
	if n := tb.FW.Flows(); n != 1 {
		t.Errorf("%d flows, want the one to 8000", n)
	}
}

// TestReloadStrictFilter: a strict reload that puts an application filter
// on a protocol ends that protocol's flows on the fast path, which would
// bypass the filter; a keep reload leaves them.
func TestReloadStrictFilter(t *testing.T) {
	const filtered = `
protocols:
  - {name: p8001, transport: tcp, ports: [8001], filter: pass}
rules:
  - {name: filtered, action: allow, from: [internal], to: [external], protocols: [p8001]}
  - {name: out, action: allow, from: [internal], to: [external], protocols: [any]}
options: {reload: %s}
`
	for _, mode := range []string{"keep", "strict"} {
		t.Run(mode, func(t *testing.T) {
			tb := newTestbed(t, fmt.Sprintf(allowAll, mode), withFilter("pass", passFilter{}))
			fwxlab.EchoTCP(t, tb.Server, 8001)
			c, err := tb.Client.DialTCP(lab.Context(t, 5*time.Second), netip.AddrPortFrom(serverIP.Addr(), 8001))
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			fwxlab.RoundTrip(t, c, "before")
			r, err := tb.FW.Reload(mustPolicy(t, fmt.Sprintf(filtered, mode)))
			if err != nil {
				t.Fatal(err)
			}
			if mode == "keep" {
				if r.Ended != 0 {
					t.Errorf("report %+v, want nothing ended", r)
				}
				fwxlab.RoundTrip(t, c, "after: kept")
				return
			}
			if r.Ended != 1 {
				t.Errorf("report %+v, want the unfiltered flow ended", r)
			}
			c.SetDeadline(time.Now().Add(300 * time.Millisecond))
			c.Write([]byte("after"))
			if n, err := c.Read(make([]byte, 16)); err == nil {
				t.Errorf("the flow that bypasses the new filter still carries data: read %d bytes", n)
			}
		})
	}
}

// TestReloadRefused: a policy fwx cannot run is refused whole, with the
// reason, and the running one stays in force.
func TestReloadRefused(t *testing.T) {
	running := `
protocols:
  - {name: web-in, transport: tcp, ports: [8080], direction: inbound}
rules:
  - {name: out, action: allow, from: [internal], to: [external], protocols: [any]}
publish:
  - {name: www, protocol: web-in, listen: ":8080", server: "10.0.0.2:80"}
`
	tb := newTestbed(t, running)
	fwxlab.EchoTCP(t, tb.Client, 80)
	fwxlab.EchoTCP(t, tb.Server, 9000)
	// An outbound flow from port 9000 holds external port 9000.
	c, err := tb.Client.DialTCPFrom(lab.Context(t, 5*time.Second), netip.AddrPortFrom(clientIP.Addr(), 9000), netip.AddrPortFrom(serverIP.Addr(), 9000))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	fwxlab.RoundTrip(t, c, "holds 9000")

	tests := []struct {
		name, policy string
		want         string
		is           error
	}{
		{"unregistered filter", `
protocols:
  - {name: ftp, transport: tcp, ports: [21], filter: ftp}
rules:
  - {name: none, action: deny, from: [internal], to: [any], protocols: [ftp, any]}
`, `reload.yaml:3: protocols[0].filter: filter "ftp" is not registered`, nil},
		{"timeouts", `
rules:
  - {name: none, action: deny, from: [internal], to: [any], protocols: [any]}
options: {timeouts: {udp: 10m}}
`, "options.timeouts changed (udp 5m0s → 10m0s)", fwx.ErrRestartNeeded},
		{"filtering", `
rules:
  - {name: none, action: deny, from: [internal], to: [any], protocols: [any]}
options: {filtering: endpoint-independent}
`, "options.filtering changed to endpoint-independent (running address-dependent)", fwx.ErrRestartNeeded},
		{"nptv6", `
rules:
  - {name: none, action: deny, from: [internal], to: [any], protocols: [any]}
options: {nptv6: [{inside: "fd00:1::/64", outside: "2001:db8:1::/64"}]}
`, "options.nptv6 changed", fwx.ErrRestartNeeded},
		{"port in use", `
protocols:
  - {name: in, transport: tcp, ports: [9000], direction: inbound}
rules:
  - {name: none, action: deny, from: [internal], to: [any], protocols: [any]}
publish:
  - {name: other, protocol: in, server: "10.0.0.3:9000"}
`, `publish "other"`, nat.ErrPortInUse},
		{"not fwx's address", `
protocols:
  - {name: in, transport: tcp, ports: [9001], direction: inbound}
rules:
  - {name: none, action: deny, from: [internal], to: [any], protocols: [any]}
publish:
  - {name: elsewhere, protocol: in, listen: "192.0.2.1:9001", server: "10.0.0.3:9001"}
`, "192.0.2.1 is not one of fwx's outside addresses", nil},
		// Strict, the new policy would end the established flow; refused,
		// it ends nothing.
		{"strict, not fwx's address", `
options: {reload: strict}
protocols:
  - {name: in, transport: tcp, ports: [9001], direction: inbound}
rules:
  - {name: none, action: deny, from: [internal], to: [any], protocols: [any]}
publish:
  - {name: elsewhere, protocol: in, listen: "192.0.2.1:9001", server: "10.0.0.3:9001"}
`, "192.0.2.1 is not one of fwx's outside addresses", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := tb.FW.Reload(mustPolicy(t, tt.policy))
			if err == nil || !strings.Contains(err.Error(), tt.want) || (tt.is != nil && !errors.Is(err, tt.is)) {
				t.Fatalf("Reload: %v; want an error containing %q", err, tt.want)
			}
			fwxlab.RoundTrip(t, c, "the established flow after a refused reload")
			// Still the running policy: new flows go out, www comes in.
			o, err := tb.Client.DialTCP(lab.Context(t, 5*time.Second), netip.AddrPortFrom(serverIP.Addr(), 9000))
			if err != nil {
				t.Fatalf("outbound after a refused reload: %v", err)
			}
			o.Close()
			in, err := tb.Server.DialTCP(lab.Context(t, 5*time.Second), netip.AddrPortFrom(fwOut.Addr(), 8080))
			if err != nil {
				t.Fatalf("published www after a refused reload: %v", err)
			}
			fwxlab.RoundTrip(t, in, "www")
			in.Close()
		})
	}
}

// TestReloadPublications: a reload publishes and withdraws servers; a
// withdrawn publication admits no new connection, its established ones go
// on (keep) or end (strict).
func TestReloadPublications(t *testing.T) {
	const none = `
rules:
  - {name: out, action: allow, from: [internal], to: [external], protocols: [any]}
options: {reload: %s}
`
	const www = `
protocols:
  - {name: web-in, transport: tcp, ports: [8080], direction: inbound}
rules:
  - {name: out, action: allow, from: [internal], to: [external], protocols: [any]}
publish:
  - {name: www, protocol: web-in, listen: ":8080", server: "10.0.0.2:80"}
options: {reload: %s}
`
	for _, mode := range []string{"keep", "strict"} {
		t.Run(mode, func(t *testing.T) {
			tb := newTestbed(t, fmt.Sprintf(none, mode))
			fwxlab.EchoTCP(t, tb.Client, 80)
			dst := netip.AddrPortFrom(fwOut.Addr(), 8080)
			dial := func() (net.Conn, error) { return tb.Server.DialTCP(lab.Context(t, time.Second), dst) }
			if c, err := dial(); err == nil {
				c.Close()
				t.Fatal("connected before the publication")
			}
			r, err := tb.FW.Reload(mustPolicy(t, fmt.Sprintf(www, mode)))
			if err != nil || len(r.Published) != 1 || r.Published[0] != "www" {
				t.Fatalf("publish: %+v, %v", r, err)
			}
			old, err := dial()
			if err != nil {
				t.Fatalf("published www: %v", err)
			}
			defer old.Close()
			fwxlab.RoundTrip(t, old, "published")

			r, err = tb.FW.Reload(mustPolicy(t, fmt.Sprintf(none, mode)))
			if err != nil || len(r.Withdrawn) != 1 {
				t.Fatalf("withdraw: %+v, %v", r, err)
			}
			if c, err := dial(); err == nil {
				c.Close()
				t.Error("a new connection came in through the withdrawn publication")
			}
			if mode == "keep" {
				fwxlab.RoundTrip(t, old, "the established connection goes on")
			} else {
				// (The refused dial before the publication may have
				// left a flow too: its SYN retransmitted once www was
				// in.)
				if r.Ended < 1 {
					t.Errorf("report %+v, want the published connection ended", r)
				}
				tb.Log.WaitRecords(t, 1, map[string]string{"event": "ended", "rule": "www", "client": old.LocalAddr().String()})
			}
			if _, err := tb.FW.Reload(mustPolicy(t, fmt.Sprintf(www, mode))); err != nil {
				t.Fatalf("publish again: %v", err)
			}
			again, err := dial()
			if err != nil {
				t.Fatalf("published again: %v", err)
			}
			fwxlab.RoundTrip(t, again, "again")
			again.Close()
		})
	}
}

// TestReloadStrictGrants: a strict reload that takes a protocol from a
// client revokes the grants filters made for it (a permission not yet
// used, the connection that used one); a keep reload leaves them.
func TestReloadStrictGrants(t *testing.T) {
	const without = `
protocols:
  - {name: tftp, transport: udp, ports: [69]}
rules:
  - {name: tftp-out, action: allow, from: [internal], to: [external], protocols: [tftp, ping]}
options: {reload: %s}
`
	for _, mode := range []string{"keep", "strict"} {
		t.Run(mode, func(t *testing.T) {
			tb := newTestbed(t, sdkPolicy+"options: {reload: "+mode+"}\n")
			fwxlab.EchoTCP(t, tb.Server, 7777)
			fwxlab.EchoTCP(t, tb.Server, 7778)
			used, err := tb.Session(t).AllowFutureConnect(session.FutureConnect{Addr: netip.AddrPortFrom(serverIP.Addr(), 7777), Transport: session.TCP, Protocol: "ftp"})
			if err != nil {
				t.Fatal(err)
			}
			c, err := tb.Client.DialTCP(lab.Context(t, 5*time.Second), used.Addr())
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			fwxlab.RoundTrip(t, c, "through the grant")
			unused, err := tb.Session(t).AllowFutureConnect(session.FutureConnect{Addr: netip.AddrPortFrom(serverIP.Addr(), 7778), Transport: session.TCP, Protocol: "ftp"})
			if err != nil {
				t.Fatal(err)
			}
			r, err := tb.FW.Reload(mustPolicy(t, fmt.Sprintf(without, mode)))
			if err != nil {
				t.Fatal(err)
			}
			if mode == "keep" {
				if r.Ended != 0 || r.Revoked != 0 || !unused.Live() {
					t.Errorf("keep: report %+v, unused grant live %v; want nothing ended", r, unused.Live())
				}
				fwxlab.RoundTrip(t, c, "still through the grant")
				return
			}
			if r.Ended != 1 || r.Revoked != 1 || unused.Live() {
				t.Errorf("strict: report %+v, unused grant live %v; want the connection ended and the grant revoked", r, unused.Live())
			}
			if fwxlab.Connects(t, tb.Client, unused.Addr(), 2*time.Second) {
				t.Error("the revoked grant still let the client through")
			}
		})
	}
}
