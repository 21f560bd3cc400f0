package nat

import "strconv"

// DropReason says why the table dropped a packet or refused a new flow.
// Each reason has a counter ([Table.Stats]); its String is a stable label
// for status output and metrics.
type DropReason uint8

// Reasons for a drop.
const (
	// DropInvalid: a malformed packet, or a kind fwx does not forward.
	DropInvalid DropReason = iota
	// DropFragment: a malformed fragment (empty, not a multiple of 8
	// bytes before the last, or past 64 KiB).
	DropFragment
	// DropSpoofedSource: from the inside, a source outside the inside
	// networks; from the outside, a source inside them (BCP 38).
	DropSpoofedSource
	// DropMartianSource: an unspecified (0.0.0.0/8), loopback, multicast,
	// broadcast or reserved (240.0.0.0/4) source (RFC 6890).
	DropMartianSource
	// DropMartianDestination: a loopback, multicast, broadcast,
	// unspecified or reserved destination that no option lets through.
	DropMartianDestination
	// DropSourceRoute: an IP source-route option (LSRR, SSRR).
	DropSourceRoute
	// DropBadTCPFlags: a TCP flag set no connection sends (SYN+FIN,
	// SYN+RST, no flags, FIN without ACK, ...).
	DropBadTCPFlags
	// DropOwnAddress: one of fwx's own addresses as the source.
	DropOwnAddress
	// DropUnsolicited: from the outside, matching no flow, and admitted
	// by no pinhole, mapping or published server.
	DropUnsolicited
	// DropPolicy: a new flow the policy denies (or a pinhole used up).
	DropPolicy
	// DropStale: a packet that cannot open a flow and matches none: a TCP
	// segment other than a SYN, an ICMP error or reply about nothing fwx
	// knows.
	DropStale
	// DropInboundOnly: the inside answering on a flow that may only
	// receive (a UDP bind without Bidirectional).
	DropInboundOnly
	// DropTTL: the TTL ran out (fwx answers with time exceeded).
	DropTTL
	// DropNoPort: no external port was free for a new mapping.
	DropNoPort
	// DropTableFull: the table holds its maximum number of flows and none
	// could be reclaimed.
	DropTableFull
	// DropClientFlows: the client has its maximum of concurrent flows.
	DropClientFlows
	// DropClientHalfOpen: the client has its maximum of TCP connections
	// whose handshake has not completed.
	DropClientHalfOpen
	// DropClientRate: the client opens new flows faster than its rate.
	DropClientRate
	// DropUnarmed: an opening packet for a pinhole that is reserved but
	// not armed yet ([Expectation].Unarmed): dropped without a reply or a
	// log record, for its sender to retransmit.
	DropUnarmed
	// DropExtHeader: an IPv6 extension header fwx does not read (AH, ESP,
	// Mobility, a type 0 routing header, ...), or a chain of them that is
	// malformed or too long.
	DropExtHeader
	// DropFragmentOverlap: a fragment that overlaps another of its
	// datagram, or contradicts its end; the datagram's other fragments,
	// before and after, are counted here too (RFC 5722).
	DropFragmentOverlap
	// DropFragmentLimit: a fragment that would take reassembly past its
	// memory, in total or for its source, or a datagram of too many.
	DropFragmentLimit
	// DropFragmentTimeout: the fragments of a datagram that did not
	// complete in time.
	DropFragmentTimeout
	// DropClientDials: the client has its maximum of user-mode
	// connections waiting for their server ([Table.RefuseFlow]).
	DropClientDials
	// DropNoAddress: a new flow of a family fwx has no outside address
	// of (IPv6 with IPv4 addresses only, or the reverse).
	DropNoAddress
	// DropPinholeGone: a connection to a port bound for a pinhole that
	// was lost in a restart (see [Table.Restore]): answered with a RST.
	DropPinholeGone
	// DropChecksum: a packet that would open a flow but whose transport
	// checksum is wrong. The receiving host would drop it, so it gets no
	// flow and no log record, as conntrack treats it (nf_conntrack_checksum).
	DropChecksum

	// NumDropReasons is the number of reasons.
	NumDropReasons
)

var dropNames = [NumDropReasons]string{
	"invalid", "fragment", "spoofed-source", "martian-source", "martian-destination",
	"source-route", "bad-tcp-flags", "own-address", "unsolicited", "policy", "stale",
	"inbound-only", "ttl-exceeded", "no-port", "table-full", "client-flows",
	"client-half-open", "client-rate", "unarmed", "ext-header",
	"fragment-overlap", "fragment-limit", "fragment-timeout", "client-dials", "no-address", "pinhole-gone",
	"bad-checksum",
}

// String returns the reason's label, as in "spoofed-source".
func (r DropReason) String() string {
	if r < NumDropReasons {
		return dropNames[r]
	}
	return "drop-reason-" + strconv.Itoa(int(r))
}

// clientLimit reports whether r is a client's limit.
func (r DropReason) clientLimit() bool {
	return r == DropClientFlows || r == DropClientHalfOpen || r == DropClientRate || r == DropClientDials
}

// Stats are the table's counters at one moment.
type Stats struct {
	// Flows and Mappings are the live flows and mappings.
	Flows, Mappings int
	// Drops counts the packets dropped and flows refused, by reason
	// (index by [DropReason]), since the table was created.
	Drops [NumDropReasons]uint64
	// EarlyDrops counts the flows reclaimed before their timer ran out to
	// make room for new ones.
	EarlyDrops uint64
	// PickedUp counts the TCP connections taken up mid-stream after a
	// restart that lost them ([Table.SetPickup]).
	PickedUp uint64
	// Reassembly is the memory held for fragmented datagrams not yet
	// complete, in bytes (bounded by [FragmentLimits].Memory).
	Reassembly int
}

// Stats returns the table's counters. It takes no lock that packets take.
func (t *Table) Stats() Stats {
	s := Stats{Flows: t.Len(), Mappings: int(t.nmappings.Load()), EarlyDrops: t.earlyDrops.Load(), PickedUp: t.pickedUp.Load(), Reassembly: int(t.frags.used.Load())}
	for i := range s.Drops {
		s.Drops[i] = t.drops[i].Load()
	}
	return s
}

// drop counts a packet dropped for reason r and returns [Drop].
func (t *Table) drop(r DropReason) Verdict {
	t.drops[r].Add(1)
	return Drop
}
