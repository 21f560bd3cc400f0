package sip

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"sync"
	"sync/atomic"

	"github.com/fwx-dev/fwx/filters/internal/msgframe"
	"github.com/fwx-dev/fwx/session"
	"github.com/fwx-dev/fwx/session/stream"
)

// datagrams is the filter on a UDP flow of SIP: each datagram that starts
// with a SIP start line is one message (RFC 3261 §18.3); anything else
// (STUN, keepalives) passes untouched and opens nothing.
type datagrams struct {
	sf  *sessionFilter
	cfg Config
}

// HandleDatagram implements session.DatagramFilter.
func (d *datagrams) HandleDatagram(c *session.Connection, dg *session.Datagram) session.Verdict {
	m, err := Parse(dg.Payload, d.cfg.limits())
	switch {
	case errors.Is(err, ErrNotSIP):
		return session.Pass
	case err != nil:
		d.sf.log.Info().Err(err).Stringer("endpoint", dg.Inside).Stringer("peer", dg.Peer).Bool("from_inside", dg.FromInside).
			Msg("sip: datagram dropped")
		return session.Drop
	}
	l := &leg{sf: d.sf, cfg: &d.cfg, conn: c, inside: dg.Inside, outside: c.External(), peer: dg.Peer}
	if !dg.FromInside {
		if out := l.fromOutside(m); out != nil {
			dg.Payload = out
		}
		return session.Pass
	}
	out, answer := l.fromInside(m)
	if answer != nil {
		if err := c.Inject(true, dg.Peer, answer); err != nil {
			d.sf.log.Debug().Err(err).Msg("sip: answer not sent")
		}
	}
	if out == nil {
		return session.Drop
	}
	dg.Payload = out
	return session.Pass
}

// tcpStream is the filter on a TCP connection of SIP: messages are framed by
// their Content-Length from the first byte of each direction (RFC 3261
// §18.3); a connection that does not start with a SIP message passes
// through unread and opens nothing.
type tcpStream struct {
	sf  *sessionFilter
	cfg Config

	l      *leg
	opaque atomic.Bool
	// clientMu serializes writes to the client: the server's messages and
	// fwx's answers must not interleave.
	clientMu sync.Mutex
	client   session.Socket
}

// Serve implements session.DataFilter.
func (s *tcpStream) Serve(ctx context.Context, c *session.Connection, internal, external session.Socket) error {
	if internal == nil || external == nil {
		return fmt.Errorf("filters/sip: a connection without two sides: %w", session.ErrNotSupported)
	}
	s.client = internal
	s.l = &leg{sf: s.sf, cfg: &s.cfg, conn: c, inside: c.ClientAddr(), outside: c.External(), peer: c.Peer(), tcp: true}
	err := stream.Duplex(ctx, internal, external,
		func() error { return s.direction(internal, external, true) },
		func() error { return s.direction(external, internal, false) })
	if err != nil && !errors.Is(err, context.Canceled) {
		s.sf.log.Info().Err(err).Stringer("endpoint", s.l.inside).Stringer("peer", s.l.peer).Msg("sip: connection ended")
	}
	return err
}

// direction relays the messages of one direction, from the client when
// fromInside.
func (s *tcpStream) direction(from, to session.Socket, fromInside bool) error {
	write := func(b []byte) error {
		if fromInside {
			_, err := to.Write(b)
			return err
		}
		return s.toClient(b)
	}
	fr := msgframe.NewReader(from, s.cfg.MaxMessage, false)
	first := true
	for {
		kind, b, err := fr.Next()
		if errors.Is(err, io.EOF) {
			return to.CloseWrite()
		}
		if err != nil {
			return fmt.Errorf("filters/sip: %w", err)
		}
		if kind != msgframe.Head || s.opaque.Load() {
			if err := write(b); err != nil {
				return err
			}
			if s.opaque.Load() {
				return s.passOn(fr, write, to)
			}
			continue
		}
		m, err := ParseHead(b, s.cfg.limits())
		if first && errors.Is(err, ErrNotSIP) {
			// Not SIP from the first byte (an HTTP request to the port):
			// not the filter's business.
			s.opaque.Store(true)
			s.sf.log.Info().Stringer("endpoint", s.l.inside).Stringer("peer", s.l.peer).Msg("sip: not SIP; passed through, nothing opened")
			if err := write(b); err != nil {
				return err
			}
			return s.passOn(fr, write, to)
		}
		first = false
		if err != nil {
			return fmt.Errorf("filters/sip: %w", err)
		}
		n, _, _ := m.ContentLength()
		if int64(len(b))+n > int64(s.cfg.MaxMessage) {
			return fmt.Errorf("filters/sip: %w: a %d-byte body", ErrTooLarge, n)
		}
		var body bodyBuf
		if err := fr.Body(&body, n); err != nil {
			return err
		}
		m.Body = body
		if !fromInside {
			out := s.l.fromOutside(m)
			if out == nil {
				out = append(slices.Clip(b), body...) // one write: fwx's answers must not come between
			}
			if err := write(out); err != nil {
				return err
			}
			continue
		}
		out, answer := s.l.fromInside(m)
		if answer != nil {
			if err := s.toClient(answer); err != nil {
				return err
			}
		}
		if out != nil {
			if err := write(out); err != nil {
				return err
			}
		}
	}
}

// bodyBuf collects a body.
type bodyBuf []byte

func (b *bodyBuf) Write(p []byte) (int, error) {
	*b = append(*b, p...)
	return len(p), nil
}

func (s *tcpStream) toClient(b []byte) error {
	s.clientMu.Lock()
	defer s.clientMu.Unlock()
	_, err := s.client.Write(b)
	return err
}

// passOn copies the rest of a direction unread, then half-closes.
func (s *tcpStream) passOn(fr *msgframe.Reader, write func([]byte) error, to session.Socket) error {
	if err := fr.Rest(writerFunc(write)); err != nil {
		return err
	}
	return to.CloseWrite()
}

type writerFunc func([]byte) error

func (w writerFunc) Write(p []byte) (int, error) {
	if err := w(p); err != nil {
		return 0, err
	}
	return len(p), nil
}
