package session

import (
	"context"

	"github.com/fwx-dev/fwx/session/stream"
)

// Socket is one side of a data filter on a connection (ISA's IFWXSocket):
// the side toward the client (internal) or toward the server (external).
// Either may be the network or another data filter; a filter cannot tell.
// It is [stream.Socket], whose documentation gives the contract of each
// method: writes block while the other side does not read, so flow
// control holds from end to end, and neither a slow peer nor a slow
// filter makes fwx buffer without bound.
type Socket = stream.Socket

// DataFilter sees and may change the bytes of a connection (ISA's
// IFWXDataFilter). It may pass, change, drop, insert and hold bytes,
// half-close and abort, in each direction.
type DataFilter interface {
	// Serve runs the filter on one connection until it is done with it:
	// it reads from each socket and writes to the other as it sees fit.
	// external is nil when the filter emulates the server of a connect;
	// internal is nil when it emulates the client of a bind (it then serves
	// the connections accepted on the bound port itself, alone). Serve owns
	// the sockets and must close them before it returns; ctx is done when
	// the connection is killed or its session ends.
	Serve(ctx context.Context, c *Connection, internal, external Socket) error
}

// DataFilterFunc adapts a function to a DataFilter.
type DataFilterFunc func(ctx context.Context, c *Connection, internal, external Socket) error

// Serve implements DataFilter.
func (f DataFilterFunc) Serve(ctx context.Context, c *Connection, internal, external Socket) error {
	return f(ctx, c, internal, external)
}

// DataFilterFactory makes a data filter for a new connection (ISA's data
// filter class factory).
type DataFilterFactory func(c *Connection) (DataFilter, error)
