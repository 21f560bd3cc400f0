// Package sip is fwx's SIP application filter (RFC 3261, over UDP and TCP;
// session descriptions RFC 4566, offer/answer RFC 3264): it lets SIP
// clients behind fwx register with an outside registrar, make calls and
// receive them, with their RTP and RTCP, under any filtering behaviour,
// and it is immune by construction to what NAT Slipstreaming 1.0 and 2.0
// turned netfilter's SIP and H.323 helpers into.
//
// What it does with a client's signalling:
//
//   - the top Via of its requests and every Contact name fwx's outside
//     address and the port the signalling leaves from, so answers and
//     requests for the client come back there; answers get the client's
//     own Via back, and requests for it the client's own Request-URI;
//   - each UDP medium of its session descriptions gets an aligned pair of
//     outside ports (BindForClient, N = 2: RTP on the even one, RTCP on
//     the next), and the description names fwx's address and the pair;
//     the pair admits nothing until the answer (or the peer's earlier
//     offer) names the peer's media address, and then only that address;
//     the client may send to the peer's media ports, from the pair;
//   - a 2xx to a REGISTER over UDP keeps the client's outside endpoint
//     reachable from the registrar, and only from it, until the
//     registration expires (RetroactiveAllowBind), so inbound calls reach
//     the client;
//   - BYE closes a call's media; CANCEL and a failed INVITE what was not
//     answered; an offer unanswered for RingTimeout and a call quiet for
//     MediaIdle are closed too.
//
// Why it cannot be turned against its users:
//
//   - only a datagram that starts with a SIP start line, or a TCP stream
//     whose first bytes are one, is read as SIP, and on a stream messages
//     are framed by Content-Length from byte 0: SIP text inside an HTTP
//     request or inside another message's body is never a message;
//   - a Via, Contact or session-description address of the client's must
//     name the client itself, never another inside host, fwx or a third
//     party; such a message is refused (answered 403 or 488 by fwx);
//   - media pinholes lead only to the client that sent the description,
//     admit only the peer the other side's description names, and that
//     peer must be the signalling peer itself unless ThirdPartyMedia;
//   - messages, header fields, media per call, calls and registrations
//     per client are bounded.
package sip
