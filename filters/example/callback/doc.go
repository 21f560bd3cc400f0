// Package callback is the example application filter of docs/FILTERS.md:
// it lets the "callback" protocol, a line-based protocol invented for the
// guide, work through fwx's NAT.
//
// A client connects to a server on TCP port 7000 and sends lines. The line
// "CALLBACK <port>\r\n" asks the server to open a TCP connection back to
// the client on <port>, as FTP's PORT command does. The server answers
// each line with one line, and a client waits for the answer before it
// sends its next line. Behind a NAT the server
// would dial an address it cannot reach, so the filter reads the client's
// lines, binds an external port for the client with
// [session.Session.BindForClient], and rewrites the command to name that
// port. It is an example: it does not register itself in
// [filters.Default]; a program calls [Register].
package callback
