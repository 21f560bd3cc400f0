// Package rtsp is fwx's RTSP application filter (RTSP 1.0, RFC 2326), the
// counterpart of ISA Server's RTSP filter and the reference user of
// BindForClient with N = 2: an aligned pair of ports, RTP on the even
// one and RTCP on the next. It reads the RTSP control connection as a
// byte stream, message by message in both directions, and opens exactly
// the media streams the player and the server set up over UDP:
//
//   - a SETUP from a player behind fwx with
//     `Transport: RTP/AVP;unicast;client_port=a-b`: BindForClient for two
//     UDP ports of fwx's (the lowest even), reserved for the server's
//     address only; the SETUP goes on with client_port naming them;
//   - the server's successful answer to that SETUP, choosing that
//     transport: the pair is armed toward the player's ports a and b, the
//     player may send to the answer's server_port (its RTCP, and the
//     packets players send to open NATs), and that leaves from the pair;
//     the answer reaches the player with its own ports;
//   - a published inside server: the answer's server_port names its own
//     ports, which get a pair of fwx's, for the outside player only; the
//     answer names fwx's address and the pair, and the server may send to
//     the player's ports from it;
//   - TEARDOWN, or the end of the control connection, closes them.
//
// Interleaved (RTP/AVP/TCP) and multicast transports pass unchanged and
// open nothing. It is safe by construction: message starts are counted
// from the first byte of the stream, bodies are skipped by their
// Content-Length, so nothing inside a body or a segment is read as a
// message; a connection that does not start as RTSP/1.0 (an HTTP request
// to the port) is passed through and opens nothing; only the server's
// answer to a pending SETUP, with the CSeq, transport and ports it was
// offered, arms a pair; a client port below 1024, a destination other than
// the player itself, or anything the filter cannot read one way only
// removes the transport (and fwx answers a SETUP left with none); heads
// are bounded, and so are the streams of one connection.
package rtsp
