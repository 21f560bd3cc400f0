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
//     address on fwx's inside that leads to the real destination.
//
// Sessions are per SecureNAT client address, as in ISA. Secondary flows with
// no data filter stay on the fast path; a flow with a data filter, or one
// granted with [NoKernelMode], is terminated in a netstack and its bytes
// pass through the filter chain. The choice is made once, when the flow or
// the pinhole is created.
//
// Error cases are the sentinel errors below ([ErrProtocolDenied],
// [ErrAddressInUse], ...), to test with errors.Is.
package session
