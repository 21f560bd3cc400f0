package ftp

import (
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"sync"
	"time"

	"github.com/rs/zerolog"

	"github.com/fwx-dev/fwx/session"
)

// A pinhole is one data connection the filter let the two ends negotiate:
// a port fwx bound (PORT/EPRT from a client behind fwx, 227/229 of a
// published server) or a permission to connect (227/229 from a server
// outside, PORT/EPRT to a published server). It lives until it is used,
// superseded by the next transfer's command, refused by the server,
// expires, or its control connection ends, and each of these is written
// to the firewall log:
//
//	pinhole-opened      the pinhole admits its connection (PORT/EPRT: on the server's 200)
//	pinhole-used        the data connection came through it
//	pinhole-superseded  a newer PORT/EPRT/PASV/EPSV took its place unused
//	pinhole-refused     the server refused the PORT/EPRT, or the command or reply was refused
//	pinhole-expired     unused for the pinhole timeout
//	pinhole-closed      its control connection ended before it was used
type pinhole struct {
	x    *control
	kind string // PORT, EPRT, PASV or EPSV
	// client and server are the two ends of the data connection: the
	// FTP client's and server's addresses, with the port the command or
	// reply named.
	client, server netip.AddrPort
	bound          *session.Connection     // a port fwx bound, or
	action         *session.FirewallAction // a permission

	ended bool // guarded by sessionFilter.mu: its last record is written

	// made is closed once the data connection is made, end to end (the
	// grant's established-connection event).
	made     chan struct{}
	madeOnce sync.Once
}

// MaxPinholes caps the pinholes one FTP client may hold unused at a time,
// over all its control connections. One control connection holds one at a
// time (each new PORT/EPRT/PASV/EPSV supersedes the last); the cap bounds
// a client that opens many control connections.
const MaxPinholes = 8

// errCap means the client holds MaxPinholes unused pinholes already.
var errCap = errors.New("filters/ftp: too many unused pinholes")

// Causes: the "cause" of pinhole-refused records, and of the superseded
// and closed ones.
const (
	causeNotFTP        = "not-ftp"         // the connection does not speak FTP
	causeBeforeLogin   = "before-login"    // no user logged in yet
	causeServerRefused = "server-refused"  // 4xx/5xx to PORT/EPRT
	causeSuperseded    = "superseded"      // a newer command took its place
	causeControlClosed = "control-closed"  // its control connection ended (pinhole-closed)
	causeCap           = "cap"             // MaxPinholes (or the session's cap) reached
	causeForeign       = "foreign-address" // names a host other than the client (bounce) or the server
	causePrivileged    = "privileged-port" // a port below 1024
	causeMalformed     = "malformed"       // an argument that does not parse
	causeTooLong       = "too-long"        // a line that opens something, longer than MaxLine
	causeNoPort        = "no-port"         // fwx could not bind or grant
	causeReadOnly      = "read-only"       // a command that changes files, in read-only mode (command-refused)
	causeIPv4Only      = "ipv4-only"       // PORT or PASV on an IPv6 control connection (RFC 2428)
)

func (h *pinhole) used() bool {
	if h.bound != nil {
		return h.bound.Used() > 0
	}
	return h.action.Used() > 0
}

func (h *pinhole) live() bool {
	if h.bound != nil {
		return h.bound.Live()
	}
	return h.action.Live()
}

// revoke withdraws the pinhole from the table.
func (h *pinhole) revoke() {
	if h.bound != nil {
		h.bound.Kill()
	} else {
		h.action.Cancel()
	}
}

// openActive makes the pinhole of a PORT or EPRT naming the client's
// endpoint ap, unarmed: it admits nothing until the server's 200.
func (x *control) openActive(kind string, ap netip.AddrPort) (*pinhole, error) {
	h := &pinhole{x: x, kind: kind, client: ap, server: netip.AddrPortFrom(x.serverAddr(), 0), made: make(chan struct{})}
	s := x.conn.Session()
	var err error
	if x.conn.Inbound() {
		// The published server connects out to the outside client.
		h.action, err = s.AllowFutureConnect(session.FutureConnect{Addr: ap, Transport: session.TCP,
			Protocol: x.conn.Protocol(), Flags: session.Timeout | session.Unarmed,
			Notify: x.sf, Context: h, Primary: x.conn, OnLapse: x.sf.lapsed(h)})
	} else {
		var res *session.BindResult
		res, err = s.BindForClient(session.BindRequest{
			ClientAddrs: []netip.AddrPort{ap},
			Transport:   session.TCP,
			Protocol:    x.conn.Protocol(),
			Flags:       session.Timeout | session.Unarmed,
			IPFilter:    session.NewIPFilter(x.serverAddr()),
			Notify:      x.sf, Context: h, Primary: x.conn, OnLapse: x.sf.lapsed(h),
		})
		if err == nil {
			h.bound = res.Conns[0]
		}
	}
	if err != nil {
		return nil, err
	}
	return h, x.sf.admit(h)
}

// openPassive opens the pinhole of a 227 or 229 naming the server's
// endpoint ap: a permission for the client to connect there, or for the
// outside client of a published server a port bound on fwx leading there.
func (x *control) openPassive(kind string, ap netip.AddrPort) (*pinhole, error) {
	h := &pinhole{x: x, kind: kind, client: netip.AddrPortFrom(x.clientAddr(), 0), server: ap, made: make(chan struct{})}
	s := x.conn.Session()
	var err error
	if x.conn.Inbound() {
		var res *session.BindResult
		res, err = s.BindForClient(session.BindRequest{
			ClientAddrs: []netip.AddrPort{ap},
			Transport:   session.TCP,
			Protocol:    x.conn.Protocol(),
			Flags:       session.Timeout,
			IPFilter:    session.NewIPFilter(x.clientAddr()),
			Notify:      x.sf, Context: h, Primary: x.conn, OnLapse: x.sf.lapsed(h),
		})
		if err == nil {
			h.bound = res.Conns[0]
		}
	} else {
		h.action, err = s.AllowFutureConnect(session.FutureConnect{Addr: ap, Transport: session.TCP,
			Protocol: x.conn.Protocol(), Flags: session.Timeout,
			Notify: x.sf, Context: h, Primary: x.conn, OnLapse: x.sf.lapsed(h)})
	}
	if err == nil {
		err = x.sf.admit(h)
	}
	if err != nil {
		return nil, err
	}
	x.sf.record("pinhole-opened", time.Time{}, h).Msg("pinhole")
	return h, nil
}

// admit tracks a new pinhole, just granted and not usable yet, if its
// client holds fewer than MaxPinholes unused ones; else it revokes it.
func (sf *sessionFilter) admit(h *pinhole) error {
	sf.mu.Lock()
	// What was used or lapsed no longer counts, whether or not its
	// record is written yet.
	sf.open = slices.DeleteFunc(sf.open, func(o *pinhole) bool { return o.used() || !o.live() })
	n := 0
	for _, o := range sf.open {
		if o.client.Addr() == h.client.Addr() {
			n++
		}
	}
	if n < MaxPinholes {
		sf.open = append(sf.open, h)
	}
	sf.mu.Unlock()
	if n >= MaxPinholes {
		h.revoke()
		return fmt.Errorf("%w: %d held by %v", errCap, n, h.client.Addr())
	}
	return nil
}

// arm lets an active pinhole admit its connection: the server agreed.
func (sf *sessionFilter) arm(h *pinhole) {
	var err error
	if h.bound != nil {
		err = h.bound.Arm()
	} else {
		err = h.action.Arm()
	}
	if err != nil {
		return // gone meanwhile (lapsed, or the session ended): its record says so
	}
	sf.record("pinhole-opened", time.Time{}, h).Msg("pinhole")
}

// end marks h ended and stops tracking it; it reports false if h had
// ended already (each pinhole has one last record).
func (sf *sessionFilter) end(h *pinhole) bool {
	sf.mu.Lock()
	defer sf.mu.Unlock()
	if h.ended {
		return false
	}
	h.ended = true
	sf.open = slices.DeleteFunc(sf.open, func(o *pinhole) bool { return o == h })
	return true
}

// withdraw revokes an unused pinhole and writes its last record, event
// with cause. A pinhole already used is left to its data connection.
func (sf *sessionFilter) withdraw(h *pinhole, event, cause string) {
	if h.used() {
		return // its pinhole-used record comes from the established event
	}
	h.revoke() // may report that it lapsed first (OnLapse)
	if sf.end(h) {
		sf.record(event, time.Time{}, h).Str("cause", cause).Msg("pinhole")
	}
}

// supersede withdraws the unused pinholes of control connection x: its
// client is negotiating a new data connection.
func (sf *sessionFilter) supersede(x *control) {
	for _, h := range sf.of(x) {
		sf.withdraw(h, "pinhole-superseded", causeSuperseded)
	}
}

// closeAll withdraws the unused pinholes of x when it ends.
func (sf *sessionFilter) closeAll(x *control) {
	for _, h := range sf.of(x) {
		sf.withdraw(h, "pinhole-closed", causeControlClosed)
	}
}

func (sf *sessionFilter) of(x *control) []*pinhole {
	sf.mu.Lock()
	defer sf.mu.Unlock()
	var out []*pinhole
	for _, h := range sf.open {
		if h.x == x {
			out = append(out, h)
		}
	}
	return out
}

// lapsed returns the OnLapse of h's grant.
func (sf *sessionFilter) lapsed(h *pinhole) func(time.Time) {
	return func(at time.Time) {
		if sf.end(h) {
			sf.record("pinhole-expired", at, h).Msg("pinhole")
		}
	}
}

// usedBy writes the record of the data connection that came through h.
func (sf *sessionFilter) usedBy(h *pinhole, ev *session.Event) {
	h.madeOnce.Do(func() { close(h.made) })
	sf.end(h)
	sf.record("pinhole-used", time.Time{}, h).Str("peer", ev.Remote.String()).Msg("pinhole")
}

// record starts a pinhole record: what the control connection is, and
// what the pinhole lets through.
func (sf *sessionFilter) record(event string, at time.Time, h *pinhole) *zerolog.Event {
	ev := h.x.fields(sf.s.FirewallRecord(event, at)).Str("kind", h.kind).
		Str("client", endpoint(h.client)).Str("server", endpoint(h.server))
	if h.bound != nil {
		ev = ev.Str("external", h.bound.Addr().String())
	}
	return ev
}

// refused writes a pinhole-refused record for a command or reply the
// filter refused (kind: PORT, 227, ...; "" for the whole connection), or
// a command-refused record for a command refused in read-only mode.
func (x *control) refused(kind, cause, why string) {
	event := "pinhole-refused"
	if cause == causeReadOnly {
		event = "command-refused"
	}
	ev := x.fields(x.sf.s.FirewallRecord(event, time.Time{})).
		Str("client", x.clientAddr().String()).Str("server", x.serverAddr().String())
	if kind != "" {
		ev = ev.Str("kind", kind)
	}
	ev.Str("cause", cause).Str("reason", why).Msg("pinhole")
}

// fields adds what identifies the control connection: its endpoints, the
// policy rule that allowed it and the filter.
func (x *control) fields(ev *zerolog.Event) *zerolog.Event {
	client, server := x.conn.ClientAddr(), x.conn.Peer()
	if x.conn.Inbound() {
		client, server = x.conn.Peer(), x.conn.ClientAddr()
	}
	return ev.Str("filter", x.conn.FilterName()).Str("rule", x.conn.Rule()).
		Str("control", client.String()+" "+server.String())
}

// endpoint formats an address with its port, or alone when the port is
// not known (0).
func endpoint(ap netip.AddrPort) string {
	if ap.Port() == 0 {
		return ap.Addr().String()
	}
	return ap.String()
}
