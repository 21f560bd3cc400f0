package session

import (
	"strings"

	"github.com/fwx-dev/fwx/nat"
)

// Transport is the transport of a secondary connection (ISA's
// FWX_PROTOCOL_TCP and FWX_PROTOCOL_UDP): fwx's one transport type,
// [nat.Proto]. Grants take TCP or UDP. (A request's Protocol is the policy
// protocol it belongs to, by name.)
type Transport = nat.Proto

// The transports of grants.
const (
	TCP = nat.TCP
	UDP = nat.UDP
)

// Flags modify BindForClient, RedirectConnections and AllowFutureConnect
// (ISA's FWX_FLAG_* values).
type Flags uint32

// Flags.
const (
	// AllowMultiple allows more than one connection (TCP) or more than one
	// source of datagrams (UDP); by default a pinhole serves one.
	AllowMultiple Flags = 1 << iota
	// Timeout makes the permission lapse if unused: a TCP bind with no
	// accepted connection after about a minute is closed, a UDP bind is
	// closed when idle, a future connect or redirect expires. Without it
	// the object lives until it is killed or cancelled, or its session
	// ends. It cannot be combined with AllowMultiple.
	Timeout
	// NoKernelMode forces the connection through the user-mode path even
	// when it needs no data filter yet; a filter that will attach one
	// later must ask for it.
	NoKernelMode
	// Bidirectional (UDP, BindForClient only) lets the client send back to
	// the peers that sent to the bound port.
	Bidirectional
	// IncreaseReceiveBuffer (RedirectConnections) gives a UDP secondary a
	// 64 KiB receive buffer against bursts.
	IncreaseReceiveBuffer
	// Unarmed (BindForClient, AllowFutureConnect; fwx's, not ISA's)
	// reserves the pinhole but lets nothing through it until the filter
	// calls Arm on its Connection or FirewallAction, or withdraws it with
	// Kill or Cancel: for a grant one end asked for and the other has yet
	// to agree to (an FTP PORT before the server's 200). A connection that
	// arrives meanwhile is not refused: its SYN is dropped without a
	// reply, and the peer's retransmission (about a second later) finds
	// the pinhole armed or gone. Timeout runs from the grant.
	Unarmed
)

var flagNames = []string{"allow-multiple", "timeout", "no-kernel-mode", "bidirectional", "increase-receive-buffer", "unarmed"}

// String lists the flags set, joined by "|".
func (f Flags) String() string {
	var names []string
	for i, n := range flagNames {
		if f&(1<<i) != 0 {
			names = append(names, n)
		}
	}
	if f>>len(flagNames) != 0 {
		names = append(names, "unknown")
	}
	if len(names) == 0 {
		return "0"
	}
	return strings.Join(names, "|")
}

// Priority orders data filters on a connection, from the client side to the
// server side (ISA's FwxDataFilterPriorityClass). A filter nearer the client
// sees client-to-server bytes first and server-to-client bytes last. Filters
// of one class run in the order they were attached.
type Priority uint8

// Priority classes, client side first.
const (
	// PriorityNAT is for filters that edit addresses for SecureNAT
	// clients (the FTP filter).
	PriorityNAT Priority = iota
	PriorityInternal
	PriorityPostTrust
	// PriorityMiddle is for content scanners.
	PriorityMiddle
	PriorityPreTrust
	PriorityExternal
	// PriorityEmulation is for a filter that plays the server itself.
	PriorityEmulation
)

var priorityNames = []string{"nat", "internal", "post-trust", "middle", "pre-trust", "external", "emulation"}

// String returns the class's name.
func (p Priority) String() string {
	if int(p) < len(priorityNames) {
		return priorityNames[p]
	}
	return "invalid"
}
