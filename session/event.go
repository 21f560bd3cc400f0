package session

import (
	"net/netip"
	"strings"
)

// EventType identifies a firewall event (ISA's FwxFirewallEventType). The
// values are bits, so a filter's hooks OR them together.
type EventType uint32

// Events.
const (
	// EventConnectTCP: a client starts a TCP connection, or a filter calls
	// RedirectConnections. A handler may Deny it, attach a data filter or
	// emulate the server.
	EventConnectTCP EventType = 0x001
	// EventUDPDestination: a UDP flow starts on the user-mode path: a
	// client sends to a new destination, or a new peer sends to a bound or
	// published port, or to a client's socket watched by a filter, whose
	// filtering let it in (ISA: "a packet just arrived for the client from
	// that address"). It is raised when the flow's first datagram arrives, which
	// waits for the handlers. A handler may Deny it (the flow's datagrams
	// are dropped until it idles out) or attach a datagram filter.
	EventUDPDestination EventType = 0x002
	// EventBindTCP and EventBindUDP: a filter calls BindForClient. A
	// handler may Deny it (the bind fails with ErrAddressInUse), attach a
	// data filter or emulate the bind.
	EventBindTCP EventType = 0x004
	EventBindUDP EventType = 0x008
	// EventListen: a TCP bind listens. It cannot be failed.
	EventListen EventType = 0x010
	// EventAcceptedConnection: an inbound connection arrives on a bound
	// port. A handler may Deny it (it is aborted) or attach a data filter.
	EventAcceptedConnection EventType = 0x020
	// EventConnectionTerminating: a connection object is about to end.
	// Every filter that saw the connection gets it; nobody registers for it.
	EventConnectionTerminating EventType = 0x100
	// EventEstablishedConnection: a connection that a filter allowed with
	// BindForClient, RedirectConnections or AllowFutureConnect was made
	// (one accepted on a user-mode bind: once fwx connected it to the
	// client too).
	// Only the SessionFilter given in that call receives it, with the
	// context given there.
	EventEstablishedConnection EventType = 0x200
)

var eventNames = map[EventType]string{
	EventConnectTCP: "connect-tcp", EventUDPDestination: "udp-destination", EventBindTCP: "bind-tcp",
	EventBindUDP: "bind-udp", EventListen: "listen", EventAcceptedConnection: "accepted-connection",
	EventConnectionTerminating: "connection-terminating", EventEstablishedConnection: "established-connection",
}

// String names the events set, joined by "|".
func (e EventType) String() string {
	var names []string
	for bit := EventType(1); bit != 0 && bit <= e; bit <<= 1 {
		if e&bit != 0 {
			if n, ok := eventNames[bit]; ok {
				names = append(names, n)
			} else {
				names = append(names, "unknown")
			}
		}
	}
	if len(names) == 0 {
		return "none"
	}
	return strings.Join(names, "|")
}

// ConnectEvent returns the event a client's new flow of transport p
// raises: EventConnectTCP, or EventUDPDestination.
func ConnectEvent(p Transport) EventType {
	if p == UDP {
		return EventUDPDestination
	}
	return EventConnectTCP
}

// Event is what a SessionFilter's handler receives (ISA's
// FwxFirewallEvent).
type Event struct {
	Type EventType
	// Conn is the connection the event is about. Methods that are legal
	// only during an event (Deny, AttachDataFilter, Emulate*) are legal on
	// it until HandleEvent returns.
	Conn *Connection
	// Addr is the destination of a connect, the requested address of a
	// bind, or the bound address of a listen.
	Addr netip.AddrPort
	// Local and Remote are the endpoints of an accepted or established
	// connection, as fwx sees them.
	Local, Remote netip.AddrPort
	// Protocol names the policy protocol the connection belongs to.
	Protocol string
	// Secondary is true for connections a filter allowed.
	Secondary bool
	// Context is the value given to the BindForClient,
	// RedirectConnections, AllowFutureConnect or RetroactiveAllowBind
	// call the connection came through: in its established-connection
	// event, and in the events of its secondary connections (accepted,
	// connect, UDP destination), so the filter that made the call can tell
	// which of its grants a connection belongs to.
	Context any
}

// SessionFilter is a filter's object in one session (ISA's
// IFWXSessionFilter). fwx calls HandleEvent for the events the filter
// hooked, and Detach once when the session ends. Events of one session may
// arrive from different goroutines; an implementation guards its state.
type SessionFilter interface {
	// HandleEvent handles one event. An error fails the operation that
	// raised it, as a Deny does.
	HandleEvent(ev *Event) error
	// Detach is called when the session ends; release everything.
	Detach()
}

// Filter is an application filter (ISA's IFWXFilter): one instance per
// running fwx.
type Filter interface {
	// Init is called once, before any traffic, and returns the events the
	// filter wants. The filter receives them for the policy protocols bound
	// to it by name.
	Init() (Hooks, error)
	// AttachToSession returns the filter's object for session s. fwx calls
	// it on the first hooked event in a session.
	AttachToSession(s *Session) (SessionFilter, error)
	// Shutdown is called once when fwx stops.
	Shutdown()
}

// Hooks are the events a filter wants (ISA's FwxFilterHookEvents).
type Hooks struct {
	Events EventType
	// AnyProtocol delivers the events of every protocol, not only of the
	// protocols the policy binds to the filter (ISA's fwxAnyProtocol).
	AnyProtocol bool
	// Secondaries also delivers events of secondary connections; by
	// default only primary connections raise them.
	Secondaries bool
}
