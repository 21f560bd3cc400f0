// Package ftp is fwx's FTP application filter, the counterpart of ISA
// Server's FTP Access filter and the reference user of BindForClient. It
// reads the FTP control connection as a byte stream, line by line, in both
// directions, models it as the FTP session it is, and opens exactly the
// data connection the client and server are negotiating:
//
//   - PORT and EPRT from a client behind fwx: BindForClient for one TCP
//     port, open to the control connection's server only, short-lived and
//     unarmed until the server answers 200 (a 4xx/5xx releases it); the
//     command is rewritten to fwx's outside address and the bound port;
//   - 227 and 229 replies to PASV and EPSV: AllowFutureConnect for the
//     client's data connection, to the server's own address only;
//   - a published inside FTP server: its 227 and 229 replies, naming its
//     inside address, are rewritten to fwx's outside address and a port
//     bound for the outside client; PORT and EPRT from the outside client
//     let the server connect back to that client only, once it said 200.
//
// The session model (model.go): the server speaks first; a client that
// writes before the 220 greeting, or whose line before the login is not an
// FTP command, makes the connection "not FTP", and it is relayed untouched
// with nothing opened or rewritten. Nothing is opened before the login
// completed (230 or 232 to USER, PASS or ACCT). Each new PORT, EPRT, PASV
// or EPSV supersedes the unused pinhole of the one before; a client holds
// at most MaxPinholes unused pinholes over all its control connections.
//
// It is safe by construction: an address in a command must be the
// session's own client (no FTP bounce), ports below 1024 and port 0 are
// refused, malformed arguments are refused, replies act only on the
// command they answer and may name only the server's own address, the
// lines that can open something are bounded by MaxLine, and a NUL ends
// the control connection. Other lines may be of any length. Pinholes are
// single-use, expire after the pinhole timeout, and are revoked when the
// control connection ends. A refused command gets an FTP error reply.
// After AUTH TLS is accepted the filter stops parsing and passes the
// encrypted bytes through. Every pinhole and refusal is written to the
// firewall log (pinhole.go). README.md is the operator's guide.
package ftp
