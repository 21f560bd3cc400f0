package stream

import (
	"context"
	"errors"
	"net"
	"syscall"
)

// Socket is one side of a data filter on a connection (ISA's IFWXSocket);
// the SDK names it session.Socket.
//
// Implementations used with [Relay] and [Chain] must allow any method to
// be called while a Read and a Write are in progress on other goroutines:
// Abort and Close are how a blocked copy is stopped.
type Socket interface {
	// Read reads bytes the other side sent. It returns io.EOF after the
	// other side half-closed and every byte sent before was read, and an
	// error wrapping syscall.ECONNRESET after either side aborted.
	Read(p []byte) (int, error)
	// Write sends all of p toward the other side. It blocks while the
	// other side does not read (bounded buffering: flow control from end to
	// end) and does not retain p.
	Write(p []byte) (int, error)
	// CloseWrite half-closes (a FIN): the other side reads io.EOF after the
	// bytes already written. Reading goes on.
	CloseWrite() error
	// Abort resets the connection (a RST): the other side's reads and
	// writes fail with an error wrapping syscall.ECONNRESET, and so do the
	// local ones. Bytes not yet read are lost.
	Abort() error
	// Close closes both directions: the other side reads io.EOF after the
	// bytes already written, and its writes fail with an error wrapping
	// syscall.EPIPE.
	Close() error
}

// Stage is one data filter in a [Chain]. It reads from each socket and
// writes to the other as it sees fit (pass, change, drop, insert or hold
// bytes, half-close, abort) and returns when it is done with the
// connection. external is nil when the stage emulates the server. ctx is
// done when the connection is killed; the stage's sockets are aborted then
// too, so blocked calls return.
//
// A stage should close, half-close or abort its sockets as the protocol
// requires; whatever it leaves open, Chain closes when it returns.
type Stage func(ctx context.Context, internal, external Socket) error

// DefaultBufferSize is the buffer size used when a size of 0 is given to
// [Pipe], [Relay] or [Chain]: the bytes one direction of a pipe holds, and
// the size of each copy buffer of a relay.
const DefaultBufferSize = 256 << 10

// The errors of this package, to test with errors.Is. The errors about a
// broken connection wrap the errno a TCP socket would return, so
// errors.Is(err, syscall.ECONNRESET) and errors.Is(err, syscall.EPIPE)
// hold for pipes and network connections alike.
var (
	// ErrClosed is returned by every method of an End after Close. It is
	// net.ErrClosed itself.
	ErrClosed = net.ErrClosed
	// ErrReset is returned by reads and writes after the other side
	// aborted. It wraps syscall.ECONNRESET.
	ErrReset error = &errnoError{"stream: connection reset by peer", syscall.ECONNRESET}
	// ErrAborted is returned by reads and writes after this side aborted.
	// It wraps syscall.ECONNRESET.
	ErrAborted error = &errnoError{"stream: connection aborted", syscall.ECONNRESET}
	// ErrBrokenPipe is returned by writes after the other side stopped
	// reading (CloseRead or Close). It wraps syscall.EPIPE.
	ErrBrokenPipe error = &errnoError{"stream: broken pipe", syscall.EPIPE}
	// ErrWriteAfterCloseWrite is returned by writes after this side
	// half-closed. It wraps syscall.EPIPE.
	ErrWriteAfterCloseWrite error = &errnoError{"stream: write after CloseWrite", syscall.EPIPE}
	// ErrNoExternal is returned by Chain when it has neither stages nor an
	// external socket: nothing would answer the client.
	ErrNoExternal = errors.New("stream: no stage and no external socket")
	// ErrStagePanic is wrapped by the error Chain returns for a stage that
	// panicked.
	ErrStagePanic = errors.New("stream: stage panicked")
)

// errnoError is a sentinel error that wraps a syscall errno, so that
// callers can test for the sentinel or for the errno.
type errnoError struct {
	msg   string
	errno syscall.Errno
}

func (e *errnoError) Error() string { return e.msg }
func (e *errnoError) Unwrap() error { return e.errno }
