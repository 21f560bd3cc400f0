package session

import "net/netip"

// MaxDatagram is the largest UDP payload a datagram filter may pass on or
// inject: what fits in one IPv4 packet.
const MaxDatagram = 65535 - 20 - 8

// Datagram is one UDP datagram of a connection on the user-mode path, as a
// [DatagramFilter] sees it: its payload and its two endpoints. UDP keeps
// message boundaries, so a datagram filter, unlike a stream one, may parse
// each datagram on its own.
type Datagram struct {
	// Payload is the datagram's payload. A filter may change it in place,
	// or replace it with another slice of at most MaxDatagram bytes (a
	// rewrite that grows it); fwx copies it when it sends it on. It is
	// valid only until HandleDatagram returns.
	Payload []byte
	// FromInside is true for a datagram the inside host sent to Peer, and
	// false for one Peer sent to the inside host.
	FromInside bool
	// Inside is the inside host's endpoint: the client, or a published
	// server.
	Inside netip.AddrPort
	// Peer is the outside endpoint: where the datagram goes when
	// FromInside, where it came from otherwise. It is the real peer, also
	// for a redirected connection, whose inside host addresses fwx.
	Peer netip.AddrPort
}

// Verdict is what a datagram filter does with a datagram.
type Verdict uint8

// Verdicts.
const (
	// Pass sends the datagram, as the filter left it, on to the next
	// filter and then out with the connection's translation.
	Pass Verdict = iota
	// Drop discards the datagram.
	Drop
)

// String returns "pass" or "drop".
func (v Verdict) String() string {
	if v == Drop {
		return "drop"
	}
	return "pass"
}

// DatagramFilter sees, and may change or drop, the datagrams of a UDP
// connection on the user-mode path (ISA's IFWXDataFilter on a UDP socket,
// whose Recv reports each datagram's peer). It is attached with
// [Connection.AttachDatagramFilter] or a data filter factory, as a
// stream's [DataFilter] is.
//
// fwx calls HandleDatagram for each datagram of the connection, one at a
// time and in the order they arrived, from one goroutine per connection;
// an implementation needs no lock for state only its calls touch. Datagrams
// from the inside pass the connection's filters in chain order (client
// side first), those from the outside in the reverse order. A filter makes
// datagrams of its own with [Connection.Inject].
//
// HandleDatagram must not block for long: the connection's datagrams wait
// behind it in a bounded queue (its receive buffer), and those that do not
// fit are dropped, as a UDP socket's are.
type DatagramFilter interface {
	HandleDatagram(c *Connection, d *Datagram) Verdict
}

// DatagramFilterFunc adapts a function to a DatagramFilter.
type DatagramFilterFunc func(c *Connection, d *Datagram) Verdict

// HandleDatagram implements DatagramFilter.
func (f DatagramFilterFunc) HandleDatagram(c *Connection, d *Datagram) Verdict { return f(c, d) }
