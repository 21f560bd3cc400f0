// Package nat is fwx's SecureNAT engine: the flow table, endpoint-independent
// mappings, the external port allocator, TCP state tracking with its timers,
// and the in-place header rewrite of the fast path.
//
// The behaviour follows the NAT requirements of RFC 4787 (UDP), RFC 5382
// (TCP), RFC 5508 (ICMP) and RFC 7857: a mapping from an inside endpoint to
// an external port is shared by every destination (endpoint-independent
// mapping), the inside port is preserved when it is free and otherwise a
// random port of the same parity is chosen (RFC 6056), hairpinned packets
// carry the external address and port of their sender, and ICMP errors are
// translated back with their embedded headers reverted.
//
// The package parses and rewrites packets in the buffer they arrived in and
// allocates nothing per packet; it allocates only when a flow is created,
// and for fragments, which it reassembles into whole datagrams before they
// are translated ([Table.Reassemble], [Refragment]).
// Time is passed in by the caller, so a test can move a [Table] past a
// timeout without waiting.
package nat
