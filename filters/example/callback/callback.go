package callback

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net/netip"

	"github.com/rs/zerolog"

	"github.com/fwx-dev/fwx/session"
)

// How a control connection flows through the filter:
//
//	client ─ internal ─┤ up: lines → ParseCallback → BindForClient → rewrite ├─ external ─ server
//	                   ┤ down: bytes unchanged (toClient)                    ├
//
// Serve reads the client's stream line by line on its own goroutine and
// copies the server's stream on a second one; the connections it bound die
// with it.

// Config configures a [Filter].
type Config struct {
	// MaxLine is the longest client line the filter reads, terminator
	// included; a longer line aborts the connection. Zero means
	// DefaultMaxLine. It must be from 16 (a full CALLBACK line) to 65536.
	MaxLine int
	// Log receives diagnostics. The zero value discards them.
	Log zerolog.Logger
}

// Filter is the callback application filter (ISA's IFWXFilter): one per
// running fwx. It is safe for concurrent use.
type Filter struct {
	cfg Config
}

// Interface guards.
var (
	_ session.Filter        = (*Filter)(nil)
	_ session.SessionFilter = (*sessionFilter)(nil)
	_ session.DataFilter    = (*dataFilter)(nil)
)

// New returns a callback filter; fwx calls its Init, which checks cfg.
func New(cfg Config) *Filter {
	if cfg.MaxLine == 0 {
		cfg.MaxLine = DefaultMaxLine
	}
	return &Filter{cfg: cfg}
}

// Init implements session.Filter. It rejects a bad Config, which stops fwx
// from starting, and hooks the connect events of the protocols the policy
// binds to the filter.
func (f *Filter) Init() (session.Hooks, error) {
	if f.cfg.MaxLine < 16 || f.cfg.MaxLine > 1<<16 {
		return session.Hooks{}, fmt.Errorf("filters/callback: MaxLine %d: want 16 to 65536", f.cfg.MaxLine)
	}
	return session.Hooks{Events: session.EventConnectTCP}, nil
}

// AttachToSession implements session.Filter.
func (f *Filter) AttachToSession(s *session.Session) (session.SessionFilter, error) {
	return &sessionFilter{f: f}, nil
}

// Shutdown implements session.Filter. The filter holds nothing beyond its
// sessions, which fwx ends first.
func (f *Filter) Shutdown() {}

// sessionFilter is the filter's object in one client's session (ISA's
// IFWXSessionFilter). It keeps no state of its own: each control
// connection's state lives in its dataFilter.
type sessionFilter struct {
	f *Filter
}

// HandleEvent implements session.SessionFilter: every control connection
// gets a data filter of its own, nearest the client, where NAT editors
// belong.
func (sf *sessionFilter) HandleEvent(ev *session.Event) error {
	if ev.Type != session.EventConnectTCP {
		return nil
	}
	df := &dataFilter{cfg: sf.f.cfg, server: ev.Addr}
	return ev.Conn.AttachDataFilter(df, session.PriorityNAT)
}

// Detach implements session.SessionFilter. Nothing to release: the
// connections a control connection bound are killed when it ends, and
// the session's end kills whatever is left.
func (sf *sessionFilter) Detach() {}

// Replies the filter sends the client itself, in place of the server.
var (
	replyBadPort     = []byte("ERR bad port\r\n")
	replyBusy        = []byte("ERR busy\r\n")
	replyUnavailable = []byte("ERR unavailable\r\n")
)

// errLineTooLong aborts a connection whose client sent an overlong line.
var errLineTooLong = errors.New("filters/callback: line too long")

// dataFilter edits one control connection (ISA's IFWXDataFilter).
type dataFilter struct {
	cfg    Config
	server netip.AddrPort // where the control connection goes
	// bound are the connections this control connection bound; only
	// Serve's goroutine touches them.
	bound []*session.Connection
}

// Serve implements session.DataFilter. It need not watch ctx: when the
// connection is killed, fwx aborts both sockets and the blocked reads
// return.
func (d *dataFilter) Serve(ctx context.Context, c *session.Connection, internal, external session.Socket) error {
	defer internal.Close()
	defer external.Close()
	// The callback connections live no longer than their control
	// connection, whichever way it ends.
	defer func() {
		for _, b := range d.bound {
			b.Kill()
		}
	}()

	client := newToClient(internal)
	down := make(chan error, 1)
	go func() {
		err := client.copyFrom(external)
		if err != nil {
			// Pass a reset on, and stop the reader below.
			internal.Abort()
			external.Abort()
		}
		down <- err
	}()

	err := d.serveUp(c, internal, external, client)
	if err != nil {
		internal.Abort()
		external.Abort()
	} else {
		external.CloseWrite() // the client half-closed: so does the filter
	}
	if derr := <-down; err == nil {
		err = derr
	}
	if err != nil {
		d.cfg.Log.Debug().Err(err).Stringer("client", c.ClientAddr()).Msg("callback: control connection ended")
	}
	return err
}

// serveUp passes the client's stream to the server a line at a time,
// until the client half-closes (nil) or something fails.
func (d *dataFilter) serveUp(c *session.Connection, internal, external session.Socket, client *toClient) error {
	r := bufio.NewReaderSize(internal, d.cfg.MaxLine)
	for {
		line, err := r.ReadSlice('\n')
		if errors.Is(err, bufio.ErrBufferFull) {
			return fmt.Errorf("%w: more than %d bytes", errLineTooLong, d.cfg.MaxLine)
		}
		// A last line without "\n" is handled as a line: the server may
		// read it as one when the stream ends.
		if len(line) > 0 {
			if err := d.handleLine(c, line, external, client); err != nil {
				return err
			}
		}
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
	}
}

// handleLine passes one client line on, or acts on it if it is a CALLBACK
// command. line is only valid until the next read.
func (d *dataFilter) handleLine(c *session.Connection, line []byte, external session.Socket, client *toClient) error {
	port, isCallback, err := ParseCallback(line)
	switch {
	case !isCallback:
		_, err := external.Write(line)
		return err
	case err != nil:
		return client.reply(replyBadPort) // the server never sees the line
	}
	bound, err := d.bind(c, port)
	if err != nil {
		return d.refuse(c, err, client)
	}
	_, err = external.Write(AppendCallback(nil, bound.Port()))
	return err
}

// bind asks fwx for an external port that leads to the client's port, open
// to the control connection's server only.
func (d *dataFilter) bind(c *session.Connection, port uint16) (netip.AddrPort, error) {
	s := c.Session()
	res, err := s.BindForClient(session.BindRequest{
		ClientAddrs: []netip.AddrPort{netip.AddrPortFrom(s.ClientAddr(), port)},
		Transport:   session.TCP,
		Flags:       session.Timeout, // unused for a minute: closed
		Protocol:    c.Protocol(),
		IPFilter:    session.NewIPFilter(d.server.Addr()),
	})
	if err != nil {
		return netip.AddrPort{}, err
	}
	d.bound = append(d.bound, res.Conns...)
	return res.Proxy, nil
}

// refuse answers a CALLBACK that could not be bound, or ends the control
// connection when its session is going away.
func (d *dataFilter) refuse(c *session.Connection, err error, client *toClient) error {
	switch {
	case errors.Is(err, session.ErrTerminating):
		return err // the session or the connection is ending
	case errors.Is(err, session.ErrBusy):
		return client.reply(replyBusy) // too many pinholes in the session
	}
	// ErrAddressInUse (no free port, or another filter denied the bind,
	// then with ErrDenied), ErrProtocolDenied (the policy changed its
	// mind): the client hears no more than that.
	d.cfg.Log.Debug().Err(err).Stringer("client", c.ClientAddr()).Msg("callback: bind failed")
	return client.reply(replyUnavailable)
}
