// Package tftp is fwx's TFTP application filter (RFC 1350, with the
// options of RFC 2347, 2348, 2349 and 7440).
//
// TFTP is the simplest protocol a NAT breaks. A client sends a read or
// write request (RRQ, WRQ) to a server's port 69; the server answers from
// a port of its own, chosen for the transfer (its transfer ID), to the
// port the request came from, and the transfer goes on between those two
// ports. Behind fwx the answer comes from an endpoint the client's mapping
// never sent to, so a NAT with address-and-port-dependent filtering (RFC
// 4787) drops it, and the transfer cannot start.
//
// The filter reads the requests a client sends to port 69 and, for each,
// lets the server's answer in: from the server's address only, from one
// port (the first the server answers from), to the client's port, for
// that transfer only ([session.Session.RetroactiveAllowBind], on the
// mapping the request left from). It follows the transfer it let in: when
// the last block is acknowledged, when either side sends an ERROR, or when
// the transfer goes idle (an aborted one), the transfer's flow is ended
// and its permission with it. A published TFTP server works the same way
// the other way round: a request from the outside lets the inside server
// answer that client from its transfer port
// ([session.Session.AllowFutureConnect]).
//
// Options pass as the client and server send them; the filter reads the
// server's OACK for the block size, so that it knows the last block when
// it sees it. A rule's filter_settings may make the filter refuse writes
// (read_only) and change how long an idle transfer lives (idle).
package tftp
