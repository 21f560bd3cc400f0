package fwx

import (
	"net/netip"
	"slices"
	"time"

	"github.com/fwx-dev/fwx/nat"
	"github.com/fwx-dev/fwx/nat/gateway"
	"github.com/fwx-dev/fwx/session"
)

// Status is a snapshot of a running firewall for its operator: its flows
// the way conntrack -L shows them, what the filters' sessions hold, and
// totals. Taking one reads the flow table shard by shard, as a lookup
// does: forwarding never waits for it.
type Status struct {
	Time time.Time `json:"time"`
	// InsideAddrs and OutsideAddrs are all of fwx's addresses on each
	// side, Config.InsideAddr and OutsideAddr first.
	InsideAddrs  []netip.Prefix  `json:"inside_addrs"`
	OutsideAddrs []netip.Prefix  `json:"outside_addrs"`
	Flows        []FlowStatus    `json:"flows"`
	Sessions     []SessionStatus `json:"sessions"`
	Totals       Totals          `json:"totals"`
}

// SessionStatus is what a filter SDK session holds.
type SessionStatus = session.SessionStatus

// FlowStatus is one flow, seen as the firewall log sees it: Client started
// it to Destination, and Translated is fwx's outside endpoint for it
// (outbound) or the inside server it reaches (inbound).
type FlowStatus struct {
	Protocol    string         `json:"protocol"`  // tcp, udp or icmp
	Direction   string         `json:"direction"` // outbound or inbound
	Client      netip.AddrPort `json:"client"`
	Destination netip.AddrPort `json:"destination"`
	Translated  netip.AddrPort `json:"translated"`
	// State is the TCP connection's state (syn-sent, syn-received,
	// established, closing, closed, reset); for UDP and ICMP, replied once
	// the other side answered, else unreplied.
	State string `json:"state"`
	// Path is fast or user; Filter the application filter of the flow's
	// protocol; Grant is set when a filter's grant (a pinhole) let it in.
	Path   string `json:"path"`
	Rule   string `json:"rule"`
	Policy string `json:"policy_protocol,omitempty"`
	Filter string `json:"filter,omitempty"`
	Grant  bool   `json:"grant,omitempty"`
	// Age runs from the first packet to now, Idle from the last; seconds.
	Start time.Time `json:"start"`
	Age   float64   `json:"age"`
	Idle  float64   `json:"idle"`
	// Sent is from the client to the destination, Received back.
	BytesSent       uint64 `json:"bytes_sent"`
	BytesReceived   uint64 `json:"bytes_received"`
	PacketsSent     uint64 `json:"packets_sent"`
	PacketsReceived uint64 `json:"packets_received"`
}

// Totals are the firewall's counters.
type Totals struct {
	// Flows counts the live flows, also by state, path and protocol, and
	// by protocol and path together.
	Flows          int                       `json:"flows"`
	ByState        map[string]int            `json:"by_state"`
	ByPath         map[string]int            `json:"by_path"`
	ByProtocol     map[string]int            `json:"by_protocol"`
	ByProtocolPath map[string]map[string]int `json:"by_protocol_path"`
	// Mappings counts the live SecureNAT mappings (an inside endpoint
	// bound to an outside one, shared by its flows).
	Mappings int `json:"mappings"`
	// Ports counts the outside ports (ICMP: identifiers) in use per
	// protocol, out of Size.
	Ports map[string]PortUse `json:"ports"`
	// Bytes and packets every flow carried since fwx started, sent
	// (client to destination) and received.
	BytesSent       uint64 `json:"bytes_sent"`
	BytesReceived   uint64 `json:"bytes_received"`
	PacketsSent     uint64 `json:"packets_sent"`
	PacketsReceived uint64 `json:"packets_received"`
	// Created counts flows admitted, Denied attempts refused (every
	// packet that tried to open a refused flow), by rule, since start.
	Created map[string]uint64 `json:"created"`
	Denied  map[string]uint64 `json:"denied"`
	// FilterRefusals counts connections application filters refused,
	// by the filter of their protocol.
	FilterRefusals map[string]uint64 `json:"filter_refusals"`
	// Pinholes counts the filters' live grants; Sessions the filter SDK
	// sessions.
	Pinholes int `json:"pinholes"`
	Sessions int `json:"sessions"`
	// Started is when fwx started.
	Started time.Time `json:"started"`
	// Drops counts the packets dropped and flows refused, by reason
	// (nat.DropReason), since the start; EarlyDrops the flows reclaimed
	// before their time to make room; PickedUp the TCP connections taken
	// up mid-stream after a start that lost them.
	Drops      map[string]uint64 `json:"drops"`
	EarlyDrops uint64            `json:"early_drops"`
	PickedUp   uint64            `json:"picked_up"`
}

// PortUse is how many outside ports of a protocol are taken.
type PortUse struct {
	Used int `json:"used"`
	Size int `json:"size"`
}

// StatusFilter selects flows for [Firewall.Status]; its zero value selects
// all. Each field set must match.
type StatusFilter struct {
	// Addr matches a flow with this address as client, destination or
	// translated address.
	Addr netip.Addr
	// Port matches a flow with this port on any of those endpoints.
	Port uint16
	// Rule matches the rule that admitted the flow.
	Rule string
}

func (sf StatusFilter) match(fs *FlowStatus) bool {
	eps := [...]netip.AddrPort{fs.Client, fs.Destination, fs.Translated}
	if sf.Addr.IsValid() && !slices.ContainsFunc(eps[:], func(ap netip.AddrPort) bool { return ap.Addr() == sf.Addr }) {
		return false
	}
	if sf.Port != 0 && !slices.ContainsFunc(eps[:], func(ap netip.AddrPort) bool { return ap.Port() == sf.Port }) {
		return false
	}
	return sf.Rule == "" || fs.Rule == sf.Rule
}

// Status returns a snapshot of the firewall: the flows sf selects, ordered
// by start, and every session and total.
func (fw *Firewall) Status(sf StatusFilter) Status {
	now := fw.clock.Now()
	st := Status{Time: now, InsideAddrs: fw.cfg.insideAddrs(), OutsideAddrs: fw.cfg.outsideAddrs()}
	st.Totals = fw.totals(func(f *nat.Flow) {
		fs := flowStatus(f, now)
		if sf.match(&fs) {
			st.Flows = append(st.Flows, fs)
		}
	})
	slices.SortStableFunc(st.Flows, func(a, b FlowStatus) int { return a.Start.Compare(b.Start) })
	st.Sessions = fw.sessions.Status()
	st.Totals.Pinholes, st.Totals.Sessions = pinholes(st.Sessions), len(st.Sessions)
	return st
}

// Totals returns the firewall's counters; cheaper than a Status, for
// metrics.
func (fw *Firewall) Totals() Totals {
	t := fw.totals(nil)
	sessions := fw.sessions.Status()
	t.Pinholes, t.Sessions = pinholes(sessions), len(sessions)
	return t
}

// pinholes counts the live grants of sessions.
func pinholes(sessions []SessionStatus) int {
	n := 0
	for _, s := range sessions {
		for _, g := range s.Grants {
			if g.Live {
				n++
			}
		}
	}
	return n
}

// totals counts over the live flows, calling each (if set) with every one.
func (fw *Firewall) totals(each func(*nat.Flow)) Totals {
	t := Totals{
		ByState:        map[string]int{},
		ByPath:         map[string]int{},
		ByProtocol:     map[string]int{},
		ByProtocolPath: map[string]map[string]int{},
		Ports:          map[string]PortUse{},
		Drops:          map[string]uint64{},
	}
	t.Started = fw.started
	ns := fw.table.Stats()
	t.Mappings, t.EarlyDrops, t.PickedUp = ns.Mappings, ns.EarlyDrops, ns.PickedUp
	for r, n := range ns.Drops {
		if n > 0 {
			t.Drops[nat.DropReason(r).String()] = n
		}
	}
	ended := fw.gw.Ended()
	t.BytesSent, t.BytesReceived, t.PacketsSent, t.PacketsReceived = ended.BytesSent, ended.BytesReceived, ended.PacketsSent, ended.PacketsReceived
	ports := map[nat.Proto]map[netip.AddrPort]bool{}
	for _, f := range fw.table.Flows() {
		t.Flows++
		t.ByState[flowState(f)]++
		t.ByPath[gateway.Path(f)]++
		t.ByProtocol[f.Proto().String()]++
		if t.ByProtocolPath[f.Proto().String()] == nil {
			t.ByProtocolPath[f.Proto().String()] = map[string]int{}
		}
		t.ByProtocolPath[f.Proto().String()][gateway.Path(f)]++
		if ports[f.Proto()] == nil {
			ports[f.Proto()] = map[netip.AddrPort]bool{}
		}
		ports[f.Proto()][f.External()] = true
		if s := f.TCPState(); s != nat.TCPClosed && s != nat.TCPReset {
			// Until its end is logged; then the log's counts have it.
			c := gateway.ClientCounters(f)
			t.BytesSent += c.BytesSent
			t.BytesReceived += c.BytesReceived
			t.PacketsSent += c.PacketsSent
			t.PacketsReceived += c.PacketsReceived
		}
		if each != nil {
			each(f)
		}
	}
	for _, pub := range fw.policy().Publications() {
		p := pub.Transport
		if ports[p] == nil {
			ports[p] = map[netip.AddrPort]bool{}
		}
		if listen, err := fw.gw.ListenAddr(pub); err == nil {
			ports[p][listen] = true
		}
	}
	for _, p := range []nat.Proto{nat.TCP, nat.UDP, nat.ICMP} {
		size := 65535 // ports 1 to 65535
		if p == nat.ICMP {
			size = 65536 // identifiers 0 to 65535
		}
		t.Ports[p.String()] = PortUse{Used: len(ports[p]), Size: size}
	}
	t.Created, t.Denied = fw.gw.RuleCounts()
	t.FilterRefusals = fw.sessions.Refusals()
	if t.FilterRefusals == nil {
		t.FilterRefusals = map[string]uint64{}
	}
	return t
}

func flowStatus(f *nat.Flow, now time.Time) FlowStatus {
	fs := FlowStatus{
		Protocol:  f.Proto().String(),
		Direction: f.Origin().String(),
		State:     flowState(f),
		Path:      gateway.Path(f),
		Rule:      f.Rule(),
		Policy:    f.Protocol(),
		Filter:    f.Filter(),
		Grant:     f.Expectation() != nil,
		Start:     f.Start(),
		Age:       now.Sub(f.Start()).Seconds(),
		Idle:      max(0, now.Sub(f.LastSeen()).Seconds()),
	}
	if f.Origin() == nat.Inbound {
		fs.Client, fs.Destination, fs.Translated = f.Remote(), f.External(), f.Inside()
	} else {
		fs.Client, fs.Destination, fs.Translated = f.Inside(), f.Remote(), f.External()
	}
	c := gateway.ClientCounters(f)
	fs.BytesSent, fs.BytesReceived, fs.PacketsSent, fs.PacketsReceived = c.BytesSent, c.BytesReceived, c.PacketsSent, c.PacketsReceived
	return fs
}

// flowState names a flow's state: its TCP state, or whether a UDP or
// ICMP flow was answered.
func flowState(f *nat.Flow) string {
	if f.Proto() == nat.TCP {
		return f.TCPState().String()
	}
	if _, _, pout, pin := f.Counters(); (f.Origin() == nat.Outbound && pin > 0) || (f.Origin() == nat.Inbound && pout > 0) {
		return "replied"
	}
	return "unreplied"
}
