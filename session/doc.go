// Package session is fwx's filter SDK: the Firewall-service SDK of ISA
// Server re-made as a Go API, with the same semantics. An application
// filter (an FTP, RTSP or H.323 helper, a protocol scanner) reads a primary
// connection through a [DataFilter] and, when the protocol announces a
// secondary connection, asks its client's [Session] to allow it:
//
//   - [Session.BindForClient]: the client expects an inbound connection
//     (FTP PORT): fwx binds external ports on its behalf;
//   - [Session.AllowFutureConnect]: the client will connect out somewhere
//     the policy alone would not allow (FTP PASV);
//   - [Session.RedirectConnections]: a proxy-style filter gives the client an
//     address on fwx's inside that leads to the real destination;
//   - [Session.RetroactiveAllowBind]: peers may reach a UDP endpoint the
//     client's own flows already hold (TFTP's transfer, which comes back
//     to the port the request left from).
//
// Sessions are per SecureNAT client address, as in ISA. A flow takes the
// user-mode path when a filter hooked its event (its protocol's filter, or
// any filter with [Hooks].AnyProtocol: hooking is what keeps a flow out of
// the fast path, as in ISA), when a session's data filter factory covers
// it, or when it comes through a grant made with [NoKernelMode], a data
// filter, or a filter watching the connection it brings. Everything else,
// secondary flows included, stays on the fast path. The choice is made
// once, when the flow or the pinhole is created.
//
// On the user-mode path a TCP connection is terminated in a netstack on
// each side and its bytes pass through the [DataFilter] chain. A UDP flow
// has nothing to reassemble, so it does not go through a netstack: the
// forward loop hands each of its datagrams, copied into a bounded queue
// (the connection's receive buffer, 32 KiB, 64 KiB with
// [IncreaseReceiveBuffer]), to a goroutine of the flow's own, which raises
// [EventUDPDestination] when the first one arrives, then passes each
// datagram, whole and with its peer, through the [DatagramFilter] chain;
// what the filters pass is rebuilt into a packet with the flow's
// translation and written to the device of the side it goes to. A
// datagram filter may rewrite a datagram (in place or with a new payload),
// drop it, or make new ones ([Connection.Inject]); one attached to a bound
// port sees every peer's datagrams, or one peer's
// ([Connection.AttachDatagramFilterWithDestination], ISA's
// AttachDataFilterWithDestination). The connection ends with its NAT flow
// (idle, or killed: killing it ends the flow). The fast path is untouched:
// a packet of a fast-path flow never reaches any of this.
//
// Error cases are the sentinel errors below ([ErrProtocolDenied],
// [ErrAddressInUse], ...), to test with errors.Is.
package session
