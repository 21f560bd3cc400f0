// Package stream splices the byte streams of a filtered connection: an
// in-memory [Pipe] between two data filters, [Relay] to copy between two
// sockets, [Chain] to run a connection through a list of data filters, and
// [Duplex] to run a filter's two directions until both have ended.
//
// It is the plumbing under the session package's data filters (ISA's
// IFWXDataFilter and IFWXSocket): each filter sees an internal socket
// (toward the client, or the previous filter) and an external socket
// (toward the server, or the next filter), and cannot tell a network
// connection from a neighbouring filter. Flow control holds from end to
// end: every buffer is bounded and a Write blocks while the other side does
// not read, so a slow peer or a slow filter never makes fwx buffer without
// bound.
//
// The package imports nothing from fwx, so that the session package and
// filters can both use it.
package stream
