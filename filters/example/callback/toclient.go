package callback

import (
	"bytes"
	"errors"
	"io"
	"sync"

	"github.com/fwx-dev/fwx/session"
)

// maxPending bounds the replies waiting for the server to finish a line.
const maxPending = 4096

var errTooManyReplies = errors.New("filters/callback: too many replies waiting for the server's line to end")

// toClient writes toward the client: the server's bytes, passed on
// unchanged as they arrive, and the filter's own replies. A reply goes in
// only between two server lines, never inside one: while the server is in
// the middle of a line, replies wait in pending and follow its end.
//
// Its methods are safe for concurrent use: copyFrom runs on one goroutine,
// reply on another.
type toClient struct {
	sock session.Socket

	mu      sync.Mutex // guards everything below, and orders writes to sock
	midLine bool       // the last server byte passed on was not '\n'
	done    bool       // the server's stream ended: so did the client's
	pending []byte     // replies waiting for midLine to clear
}

func newToClient(sock session.Socket) *toClient { return &toClient{sock: sock} }

// reply sends one of the filter's own lines to the client, now or after
// the server's current line. Once the server's stream has ended, the
// filter answers no more than the server would: the line is dropped.
func (t *toClient) reply(line []byte) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.done {
		return nil
	}
	if t.midLine {
		if len(t.pending)+len(line) > maxPending {
			return errTooManyReplies
		}
		t.pending = append(t.pending, line...)
		return nil
	}
	_, err := t.sock.Write(line)
	return err
}

// copyFrom passes the server's bytes to the client until the server
// half-closes, then half-closes toward the client.
func (t *toClient) copyFrom(server session.Socket) error {
	buf := make([]byte, 32<<10)
	for {
		n, err := server.Read(buf)
		if n > 0 {
			if werr := t.pass(buf[:n]); werr != nil {
				return werr
			}
		}
		if err == io.EOF {
			return t.closeWrite()
		}
		if err != nil {
			return err
		}
	}
}

// pass writes server bytes p, slipping the pending replies in at the first
// line end.
func (t *toClient) pass(p []byte) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	if len(t.pending) > 0 && t.midLine {
		i := bytes.IndexByte(p, '\n')
		if i < 0 {
			_, err := t.sock.Write(p)
			return err
		}
		if _, err := t.sock.Write(p[:i+1]); err != nil {
			return err
		}
		p, t.midLine = p[i+1:], false
	}
	if err := t.flushLocked(); err != nil {
		return err
	}
	if len(p) == 0 {
		return nil
	}
	_, err := t.sock.Write(p)
	t.midLine = p[len(p)-1] != '\n'
	return err
}

// closeWrite flushes the pending replies and half-closes toward the
// client.
func (t *toClient) closeWrite() error {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.done = true
	if err := t.flushLocked(); err != nil {
		return err
	}
	return t.sock.CloseWrite()
}

func (t *toClient) flushLocked() error {
	if len(t.pending) == 0 {
		return nil
	}
	_, err := t.sock.Write(t.pending)
	t.pending = t.pending[:0]
	return err
}
