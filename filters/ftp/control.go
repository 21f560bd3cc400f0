package ftp

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"sync/atomic"
	"time"

	"github.com/fwx-dev/fwx/session"
	"github.com/fwx-dev/fwx/session/stream"
)

// control is the data filter on one FTP control connection. Two goroutines
// read it, one per direction, line by line:
//
//	client ─► commands ─► server     PORT/EPRT, PASV/EPSV, USER/PASS, AUTH, read-only verbs
//	client ◄─ replies  ◄─ server     the greeting, login, 200/4xx/5xx to PORT, 227/229, 234
//
// For an outbound connection the client is on the filter's internal side;
// for a published server (an inbound connection) the server is.
type control struct {
	cfg  Config
	sf   *sessionFilter
	conn *session.Connection
	ctx  context.Context

	client, server session.Socket
	// clientMu serializes writes to the client: replies from the server and
	// fwx's own refusals must not interleave within a line.
	clientMu sync.Mutex

	// phase is where the FTP session is (model.go); both goroutines read
	// it, and each moves it only along the transitions it owns.
	phase atomic.Int32

	// outstanding holds the commands sent to the server whose final reply
	// has not been relayed yet, oldest first: the replies goroutine pairs
	// each final reply with the command it answers.
	outstanding chan *sent
	// repliesDone is closed when the replies goroutine ends: no command
	// will be answered any more.
	repliesDone chan struct{}
	// last is the last command sent (commands goroutine only).
	last *sent

	// multi is the code of the multi-line reply being relayed (RFC 959
	// 4.2), 0 outside one; its inner lines are text, whatever they look
	// like (replies goroutine only).
	multi int
	// greeted is set once the server's greeting is complete: the replies
	// after it answer commands (replies goroutine only).
	greeted bool
	// armed is the active-mode pinhole the server's last 200 to PORT or
	// EPRT armed, until a transfer's final reply (replies goroutine only).
	armed *pinhole
}

// sent is a command sent to the server, waiting for its final reply.
type sent struct {
	verb string   // upper case; "" for a line that is not a command
	hole *pinhole // PORT/EPRT: the unarmed pinhole its reply decides
	// done is closed once the reply has been acted on and relayed.
	done chan struct{}
}

const (
	// maxOutstanding bounds the commands a client may pipeline ahead of
	// their replies; the filter reads no more from it until replies come.
	maxOutstanding = 64
	// replyWait bounds how long the client's next command is held while
	// the server has not answered a PORT, EPRT or AUTH (or fwx waits to
	// send a refusal after the replies before it). The server answers at
	// once in practice; the bound only keeps a server that never answers
	// from stalling the client's side for good.
	replyWait = 30 * time.Second
	// dataWait bounds how long the final reply to a transfer in active
	// mode is held until its data connection has reached the client
	// (awaitData); in host mode that takes milliseconds.
	dataWait = 5 * time.Second
)

func newControl(cfg Config, sf *sessionFilter) *control {
	return &control{cfg: cfg, sf: sf, outstanding: make(chan *sent, maxOutstanding), repliesDone: make(chan struct{})}
}

// Serve implements session.DataFilter.
func (x *control) Serve(ctx context.Context, c *session.Connection, internal, external session.Socket) error {
	if external == nil || internal == nil {
		return fmt.Errorf("filters/ftp: control connection without two sides: %w", session.ErrNotSupported)
	}
	x.conn, x.ctx = c, ctx
	x.client, x.server = internal, external
	if c.Inbound() {
		x.client, x.server = external, internal
	}
	defer x.sf.closeAll(x)
	// A violation ends the whole control connection.
	return stream.Duplex(ctx, x.client, x.server, x.commands, func() error {
		err := x.replies()
		close(x.repliesDone)
		x.sf.closeAll(x) // nothing more will be negotiated
		return err
	})
}

// commands relays the client's commands to the server, line by line. A
// line longer than PieceSize comes in pieces: its first piece decides what
// is done with the rest.
func (x *control) commands() error {
	lr := NewLineReader(earlyReader{x})
	cont := false         // the line read continues a long one
	drop := false         // the rest of the current line is not sent
	var then func() error // what to do once the current line is over
	for {
		line, more, err := lr.ReadLine()
		switch {
		case err == nil && !cont:
			x.checkFTP(line)
		case errors.Is(err, ErrNUL) && phase(x.phase.Load()) == login:
			x.notFTP(fmt.Sprintf("a NUL byte in %q", truncate(lr.Buffered(), 64)))
		}
		if x.opaque() && (err == nil || err == io.EOF || errors.Is(err, ErrNUL)) {
			return relayRest(lr, line, err, x.client, x.server)
		}
		switch {
		case err == io.EOF:
			if len(line) > 0 { // a last line without its end: pass it as it is
				x.server.Write(line)
			}
			return x.server.CloseWrite()
		case err != nil:
			return fmt.Errorf("filters/ftp: client: %w", err)
		case cont:
			if !drop {
				if _, err := x.server.Write(line); err != nil {
					return err
				}
			}
		default:
			if drop, then, err = x.command(line, more); err != nil {
				return err
			}
		}
		cont = more
		if !more && then != nil {
			if err := then(); err != nil {
				return err
			}
			then = nil
		}
	}
}

// replies relays the server's replies to the client, line by line.
func (x *control) replies() error {
	lr := NewLineReader(x.server)
	cont := false
	var answered *sent // the command whose reply is being relayed
	for {
		line, more, err := lr.ReadLine()
		if errors.Is(err, ErrNUL) && phase(x.phase.Load()) == greeting {
			x.notFTP(fmt.Sprintf("a NUL byte in the server's greeting %q", truncate(lr.Buffered(), 64)))
		}
		if x.opaque() && (err == nil || err == io.EOF || errors.Is(err, ErrNUL)) {
			if answered != nil {
				close(answered.done)
			}
			return relayRest(lr, line, err, x.server, x.client)
		}
		switch {
		case err == io.EOF:
			if len(line) > 0 {
				x.toClient(line)
			}
			return x.client.CloseWrite()
		case err != nil:
			return fmt.Errorf("filters/ftp: server: %w", err)
		}
		out := line
		if !cont {
			if out, answered, err = x.reply(line, more); err != nil {
				return err
			}
		}
		if err := x.toClient(out); err != nil {
			return err
		}
		cont = more
		if !more && answered != nil {
			close(answered.done)
			answered = nil
		}
	}
}

// earlyReader reads the client's side; bytes that arrive before the
// server's greeting mark the connection as not FTP.
type earlyReader struct{ x *control }

func (r earlyReader) Read(p []byte) (int, error) {
	n, err := r.x.client.Read(p)
	if n > 0 && phase(r.x.phase.Load()) == greeting {
		r.x.notFTP("the client wrote before the server's greeting")
	}
	return n, err
}

// send tracks a line as a command awaiting its reply, then sends it.
func (x *control) send(line []byte, verb string, hole *pinhole) (*sent, error) {
	s := &sent{verb: verb, hole: hole, done: make(chan struct{})}
	select {
	case x.outstanding <- s:
		x.last = s
	case <-x.repliesDone:
		s = nil // nothing will answer it
	case <-x.ctx.Done():
		return nil, x.ctx.Err()
	}
	if _, err := x.server.Write(line); err != nil {
		return nil, err
	}
	return s, nil
}

// await waits until the reply to s has been acted on and relayed, the
// server's side is gone, or replyWait passed.
func (x *control) await(s *sent) {
	if s == nil {
		return
	}
	t := time.NewTimer(replyWait)
	defer t.Stop()
	select {
	case <-s.done:
	case <-x.repliesDone:
	case <-x.ctx.Done():
	case <-t.C:
	}
}

// awaitData holds the final reply to a transfer in active mode until the
// data connection has reached the client, at most dataWait. In host mode
// the host accepts the server's data connection and fwx relays it on: the
// server can send its data, close and report 226 before fwx has connected
// the client, and a client that reads the 226 first fails the transfer
// (curl does). Through the fast path the server's SYN reaches the client
// itself, so the connection is made long before the 226.
func (x *control) awaitData() {
	h := x.armed
	x.armed = nil
	if h == nil || (!h.live() && !h.used()) {
		return // none, or withdrawn unused: no data connection to wait for
	}
	t := time.NewTimer(dataWait)
	defer t.Stop()
	select {
	case <-h.made:
	case <-t.C:
	case <-x.ctx.Done():
	}
}

func (x *control) toClient(b []byte) error {
	x.clientMu.Lock()
	defer x.clientMu.Unlock()
	_, err := x.client.Write(b)
	return err
}

// relayRest passes on, unparsed, the line just read and everything after
// it: what the reader holds, then the rest of the stream; then half-closes.
// err is what ReadLine returned with line (nil, io.EOF or ErrNUL, after
// which the reader holds the offending line).
func relayRest(lr *LineReader, line []byte, err error, from, to session.Socket) error {
	if len(line) > 0 {
		if _, err := to.Write(line); err != nil {
			return err
		}
	}
	if err == io.EOF {
		return to.CloseWrite()
	}
	if b := lr.Buffered(); len(b) > 0 {
		if _, err := to.Write(b); err != nil {
			return err
		}
	}
	if _, err := io.Copy(writerOnly{to}, from); err != nil {
		return err
	}
	return to.CloseWrite()
}

type writerOnly struct{ io.Writer }
