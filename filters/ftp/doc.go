// Package ftp is fwx's FTP application filter, the counterpart of ISA
// Server's FTP Access filter and the reference user of BindForClient. It
// reads the FTP control connection as a byte stream, line by line, in both
// directions, and opens exactly the data connections the client and server
// negotiate:
//
//   - PORT and EPRT from a client behind fwx: BindForClient for one TCP
//     port, open to the control connection's server only, short-lived; the
//     command is rewritten to fwx's outside address and the bound port;
//   - 227 and 229 replies to PASV and EPSV: AllowFutureConnect for the
//     client's data connection, to the server's own address only;
//   - a published inside FTP server: its 227 and 229 replies, naming its
//     inside address, are rewritten to fwx's outside address and a port
//     bound for the outside client; PORT and EPRT from the outside client
//     let the server connect back to that client only.
//
// It is safe by construction: an address in a command must be the
// session's own client (no FTP bounce), ports below 1024 and port 0 are
// refused, malformed arguments are refused, replies act only while their
// command is outstanding and may name only the server's own address, lines
// are bounded, and a NUL or an overlong line ends the control connection.
// Pinholes are single-use, expire after the pinhole timeout, are capped per
// session, and are revoked when the control connection ends. A refused
// command gets an FTP error reply. After AUTH TLS is accepted the filter
// stops parsing and passes the encrypted bytes through.
package ftp
