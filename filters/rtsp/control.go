package rtsp

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/rs/zerolog"

	"github.com/fwx-dev/fwx/filters/internal/msgframe"
	"github.com/fwx-dev/fwx/session"
	"github.com/fwx-dev/fwx/session/stream"
)

// control is the data filter on one RTSP control connection. Two
// goroutines read it, one per direction, message by message:
//
//	client ─► requests ─► server    SETUP (client_port), TEARDOWN
//	client ◄─ replies  ◄─ server    the answer to a SETUP (server_port)
//
// For an outbound connection the client (the player) is on the filter's
// internal side; for a published server (an inbound connection) the
// server is.
type control struct {
	cfg  Config
	conn *session.Connection
	log  zerolog.Logger

	// The endpoints of the RTSP dialogue: the player's address, the
	// server's, and fwx's outside address.
	clientAddr, serverAddr, outside netip.Addr

	// clientMu serializes writes to the client: the server's messages and
	// fwx's own answers must not interleave within a message.
	clientMu sync.Mutex
	client   session.Socket

	// opaque is set when the connection turns out not to be RTSP/1.0 (an
	// HTTP tunnel, another protocol on the port): from then on nothing is
	// parsed in either direction, and nothing more is opened.
	opaque atomic.Bool

	mu struct {
		sync.Mutex
		pending map[string]*setup // SETUPs awaiting their answer, by CSeq
		streams []*mediaStream    // media streams set up
	}
}

func newControl(cfg Config, c *session.Connection) *control {
	x := &control{cfg: cfg, conn: c, log: c.Session().Log().With().Str("filter", Name).Logger()}
	x.clientAddr, x.serverAddr = c.ClientAddr().Addr(), c.Peer().Addr()
	if c.Inbound() {
		x.clientAddr, x.serverAddr = c.Peer().Addr(), c.ClientAddr().Addr()
	}
	x.outside = c.External().Addr()
	x.mu.pending = make(map[string]*setup)
	return x
}

// Serve implements session.DataFilter.
func (x *control) Serve(ctx context.Context, c *session.Connection, internal, external session.Socket) error {
	if external == nil || internal == nil {
		return fmt.Errorf("filters/rtsp: control connection without two sides: %w", session.ErrNotSupported)
	}
	client, server := internal, external
	if c.Inbound() {
		client, server = external, internal
	}
	x.client = client
	// The media streams live no longer than their control connection.
	defer x.revokeAll()
	// What the filter cannot read ends the whole connection.
	err := stream.Duplex(ctx, client, server,
		func() error { return x.requests(client, server) },
		func() error { return x.replies(server) })
	if err != nil && !errors.Is(err, context.Canceled) {
		x.log.Info().Err(err).Stringer("server", x.serverAddr).Msg("rtsp: control connection ended")
	}
	return err
}

// requests relays the client's messages to the server.
func (x *control) requests(client, server session.Socket) error {
	fr := msgframe.NewReader(client, x.cfg.MaxHead, true)
	first := true
	for {
		kind, b, err := fr.Next()
		if err != nil {
			return x.ended("client", err, server)
		}
		if kind != msgframe.Head || x.opaque.Load() {
			if _, err := server.Write(b); err != nil {
				return err
			}
			if x.opaque.Load() {
				return x.passOn(fr, server)
			}
			continue
		}
		h, perr := ParseHead(b)
		if first && (perr != nil || !h.IsRequest() || h.Proto != Version) {
			// Not RTSP/1.0 from the first byte: not the filter's business.
			x.becomeOpaque("client", b)
			if _, err := server.Write(b); err != nil {
				return err
			}
			return x.passOn(fr, server)
		}
		first = false
		if perr != nil {
			return fmt.Errorf("filters/rtsp: client: %w", perr)
		}
		n, err := h.ContentLength()
		if err != nil {
			return fmt.Errorf("filters/rtsp: client: %w", err)
		}
		out, answer := b, []byte(nil)
		if h.IsRequest() && h.Proto == Version {
			out, answer = x.request(&h, b)
		}
		if answer != nil {
			// fwx answers the request itself; the server never sees it.
			if err := fr.Body(io.Discard, n); err != nil {
				return err
			}
			if err := x.toClient(answer); err != nil {
				return err
			}
			continue
		}
		if _, err := server.Write(out); err != nil {
			return err
		}
		if err := fr.Body(writerOnly{server}, n); err != nil {
			return err
		}
	}
}

// replies relays the server's messages to the client.
func (x *control) replies(server session.Socket) error {
	fr := msgframe.NewReader(server, x.cfg.MaxHead, true)
	first := true
	for {
		kind, b, err := fr.Next()
		if err != nil {
			return x.ended("server", err, x.client)
		}
		if kind != msgframe.Head || x.opaque.Load() {
			if err := x.toClient(b); err != nil {
				return err
			}
			if x.opaque.Load() {
				return x.passOn(fr, x.client)
			}
			continue
		}
		h, perr := ParseHead(b)
		if first && (perr != nil || h.Proto != Version) {
			x.becomeOpaque("server", b)
			if err := x.toClient(b); err != nil {
				return err
			}
			return x.passOn(fr, x.client)
		}
		first = false
		if perr != nil {
			return fmt.Errorf("filters/rtsp: server: %w", perr)
		}
		n, err := h.ContentLength()
		if err != nil {
			return fmt.Errorf("filters/rtsp: server: %w", err)
		}
		out, drop := b, false
		if !h.IsRequest() && h.Proto == Version {
			out, drop = x.response(&h, b)
		}
		// The head and its body go to the client together.
		x.clientMu.Lock()
		_, err = x.client.Write(out)
		body := io.Writer(writerOnly{x.client})
		if drop {
			body = io.Discard
		}
		if err == nil {
			err = fr.Body(body, n)
		}
		x.clientMu.Unlock()
		if err != nil {
			return err
		}
	}
}

// ended passes the end of one direction on: a clean end of stream as a
// half-close, anything else as the error that ends the connection.
func (x *control) ended(side string, err error, to session.Socket) error {
	if errors.Is(err, io.EOF) {
		return to.CloseWrite()
	}
	return fmt.Errorf("filters/rtsp: %s: %w", side, err)
}

// passOn copies the rest of a direction unparsed, then half-closes.
func (x *control) passOn(fr *msgframe.Reader, to session.Socket) error {
	w := io.Writer(writerOnly{to})
	if to == x.client {
		w = lockedWriter{x}
	}
	if err := fr.Rest(w); err != nil {
		return err
	}
	return to.CloseWrite()
}

func (x *control) becomeOpaque(side string, b []byte) {
	if !x.opaque.Swap(true) {
		line, _, _ := strings.Cut(string(b), "\n")
		x.log.Debug().Str("from", side).Str("line", clip([]byte(strings.TrimSpace(line)))).
			Msg("rtsp: not RTSP/1.0; passed through, nothing opened")
	}
}

// toClient writes one whole unit to the client.
func (x *control) toClient(b []byte) error {
	x.clientMu.Lock()
	defer x.clientMu.Unlock()
	_, err := x.client.Write(b)
	return err
}

// lockedWriter writes to the client under clientMu, a write at a time.
type lockedWriter struct{ x *control }

func (w lockedWriter) Write(p []byte) (int, error) {
	if err := w.x.toClient(p); err != nil {
		return 0, err
	}
	return len(p), nil
}

// writerOnly hides a Socket's other methods from io.Copy.
type writerOnly struct{ io.Writer }

// answer builds fwx's own response to a request the filter does not pass
// on, with the request's CSeq.
func answer(h *Head, status int, reason string) []byte {
	r := Head{Proto: Version, Status: status, Reason: reason}
	if cseq, ok := h.CSeq(); ok {
		r.Fields = append(r.Fields, Field{"CSeq", cseq})
	}
	r.Fields = append(r.Fields, Field{"Server", "fwx"})
	return r.Append(nil)
}
