package ftp

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/fwx-dev/fwx/session"
)

// control is the data filter on one FTP control connection. Two goroutines
// read it, one per direction, line by line:
//
//	client ─► commands ─► server     PORT/EPRT, PASV/EPSV, AUTH, read-only verbs
//	client ◄─ replies  ◄─ server     227/229, 234
//
// For an outbound connection the client is on the filter's internal side;
// for a published server (an inbound connection) the server is.
type control struct {
	cfg  Config
	conn *session.Connection

	// clientMu serializes writes to the client: replies from the server and
	// fwx's own refusals must not interleave within a line.
	clientMu sync.Mutex
	client   session.Socket

	// tls is set once AUTH TLS was accepted: from then on nothing is
	// parsed in either direction, whatever the reader goroutines are doing.
	tls atomic.Bool

	// multi is the code of the multi-line reply being relayed (RFC 959
	// 4.2), 0 outside one; its inner lines are text, whatever they look
	// like. Only the replies goroutine uses it.
	multi int

	mu struct {
		sync.Mutex
		pasv, epsv bool      // a PASV or EPSV awaits its reply
		auth       chan bool // an AUTH awaits its reply: true if accepted
		grants     []grant   // live grants, revoked when the connection ends
	}
}

// grant is a pinhole the filter opened: a bound port or a permission. It
// ends with the control connection.
type grant interface {
	Live() bool
	revoke()
}

type boundPort struct{ *session.Connection }

func (b boundPort) revoke() { b.Kill() }

type permission struct{ *session.FirewallAction }

func (p permission) revoke() { p.Cancel() }

func newControl(cfg Config) *control { return &control{cfg: cfg} }

// Serve implements session.DataFilter.
func (x *control) Serve(ctx context.Context, c *session.Connection, internal, external session.Socket) error {
	if external == nil || internal == nil {
		return fmt.Errorf("filters/ftp: control connection without two sides: %w", session.ErrNotSupported)
	}
	x.conn = c
	client, server := internal, external
	if c.Inbound() {
		client, server = external, internal
	}
	x.client = client
	defer x.revokeAll()
	errc := make(chan error, 2)
	go func() { errc <- x.commands(client, server) }()
	go func() { errc <- x.replies(server, client) }()
	var err error
	for range 2 {
		select {
		case e := <-errc:
			if e != nil && err == nil {
				err = e
				// A violation ends the whole control connection.
				client.Abort()
				server.Abort()
			}
		case <-ctx.Done():
			client.Abort()
			server.Abort()
			<-errc
			return ctx.Err()
		}
	}
	client.Close()
	server.Close()
	return err
}

// commands relays the client's commands to the server, line by line.
func (x *control) commands(client, server session.Socket) error {
	lr := NewLineReader(client)
	for {
		line, err := lr.ReadLine()
		if len(line) > 0 && err == nil {
			out, refusal, auth := x.command(line)
			if refusal != "" {
				log := x.conn.Session().Log()
				log.Info().Str("filter", "ftp").Str("refusal", strings.TrimSpace(refusal)).
					Str("command", strings.TrimSpace(string(line))).Msg("ftp command refused")
				if err := x.toClient(refusal); err != nil {
					return err
				}
			}
			if out != nil {
				if _, err := server.Write(out); err != nil {
					return err
				}
			}
			if auth != nil && <-auth {
				// TLS from here on: nothing in ciphertext opens anything.
				return passThrough(lr, client, server)
			}
		}
		switch {
		case errors.Is(err, io.EOF):
			if len(line) > 0 { // a last line without its end: pass it as it is
				server.Write(line)
			}
			return server.CloseWrite()
		case err != nil:
			return fmt.Errorf("filters/ftp: client: %w", err)
		}
	}
}

// replies relays the server's replies to the client, line by line.
func (x *control) replies(server, client session.Socket) error {
	defer x.settleAuth(false)
	lr := NewLineReader(server)
	for {
		line, err := lr.ReadLine()
		if len(line) > 0 && err == nil {
			out, tls := x.reply(line)
			if err := x.toClient(string(out)); err != nil {
				return err
			}
			if tls {
				return passThrough(lr, server, client)
			}
		}
		switch {
		case errors.Is(err, io.EOF):
			if len(line) > 0 {
				x.toClient(string(line))
			}
			return client.CloseWrite()
		case err != nil:
			return fmt.Errorf("filters/ftp: server: %w", err)
		}
	}
}

func (x *control) toClient(s string) error {
	x.clientMu.Lock()
	defer x.clientMu.Unlock()
	_, err := io.WriteString(x.client, s)
	return err
}

// passThrough copies the rest of a direction unparsed, starting with what
// the line reader already holds, then half-closes.
func passThrough(lr *LineReader, from, to session.Socket) error {
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

// command decides what to do with one client line: the bytes to send to
// the server (nil to send nothing), a refusal to send the client instead,
// and, for AUTH, a channel that tells whether the server accepted it.
func (x *control) command(line []byte) (out []byte, refusal string, auth chan bool) {
	cmd, ok := ParseCommand(line)
	if !ok || x.tls.Load() {
		return line, "", nil
	}
	switch cmd.Verb {
	case "PORT", "EPRT":
		return x.activeMode(cmd, line)
	case "PASV", "EPSV":
		x.mu.Lock()
		x.mu.pasv = x.mu.pasv || cmd.Verb == "PASV"
		x.mu.epsv = x.mu.epsv || cmd.Verb == "EPSV"
		x.mu.Unlock()
	case "AUTH":
		auth = make(chan bool, 1)
		x.mu.Lock()
		x.mu.auth = auth
		x.mu.Unlock()
	default:
		if x.cfg.ReadOnly && modifies[cmd.Verb] {
			return nil, "550 " + cmd.Verb + " refused: read-only access (fwx).\r\n", nil
		}
	}
	return line, "", auth
}

// modifies lists the commands that upload or change files (RFC 959, RFC
// 3659 and common extensions), refused in read-only mode.
var modifies = map[string]bool{
	"STOR": true, "STOU": true, "APPE": true, "DELE": true, "RNFR": true, "RNTO": true,
	"MKD": true, "XMKD": true, "RMD": true, "XRMD": true, "SITE": true, "MFMT": true, "MFCT": true, "MFF": true,
}

// activeMode handles PORT and EPRT. From a client behind fwx the address
// must be the client's own; fwx binds a port for the server to connect to
// and rewrites the command. From the outside client of a published server,
// the address must be that client's own; the server may then connect to it.
func (x *control) activeMode(cmd Command, line []byte) ([]byte, string, chan bool) {
	var ap netip.AddrPort
	var err error
	if cmd.Verb == "PORT" {
		ap, err = ParsePORT(cmd.Arg)
	} else {
		ap, err = ParseEPRT(cmd.Arg)
	}
	own := x.conn.ClientAddr().Addr()
	if x.conn.Inbound() {
		own = x.conn.Peer().Addr()
	}
	switch {
	case err != nil:
		return nil, "501 " + cmd.Verb + " refused: malformed argument (fwx).\r\n", nil
	case ap.Addr().Unmap() != own:
		return nil, "500 " + cmd.Verb + " refused: the address is not the client's own (fwx).\r\n", nil
	case Privileged(ap.Port()):
		return nil, "500 " + cmd.Verb + " refused: privileged port (fwx).\r\n", nil
	}
	s := x.conn.Session()
	if x.conn.Inbound() {
		a, err := s.AllowFutureConnect(session.FutureConnect{Addr: ap, Protocol: session.TCP,
			ProtocolName: x.conn.ProtocolName(), Flags: session.Timeout})
		if err != nil {
			return nil, "425 Can't open data connection (fwx).\r\n", nil
		}
		x.keep(permission{a})
		return line, "", nil
	}
	res, err := s.BindForClient(session.BindRequest{
		ClientAddrs:  []netip.AddrPort{ap},
		Protocol:     session.TCP,
		ProtocolName: x.conn.ProtocolName(),
		Flags:        session.Timeout,
		IPFilter:     session.NewIPFilter(x.conn.Peer().Addr()),
	})
	if err != nil {
		return nil, "425 Can't open data connection (fwx).\r\n", nil
	}
	x.keep(boundPort{res.Conns[0]})
	if cmd.Verb == "PORT" {
		return []byte("PORT " + FormatPORT(res.Proxy) + "\r\n"), "", nil
	}
	return []byte("EPRT " + FormatEPRT(res.Proxy) + "\r\n"), "", nil
}

// reply decides what to pass to the client for one server line, and
// whether the connection turns to TLS after it.
func (x *control) reply(line []byte) (out []byte, tls bool) {
	r, ok := ParseReply(line)
	switch {
	case x.tls.Load():
		return line, false
	case x.multi != 0:
		// Inside a multi-line reply only "NNN " with its own code ends it,
		// and the end line is not acted on either.
		if ok && !r.More && r.Code == x.multi {
			x.multi = 0
		}
		return line, false
	case !ok:
		return line, false
	case r.More:
		x.multi = r.Code
		return line, false
	}
	switch r.Code {
	case 227:
		if x.take(&x.mu.pasv) {
			if ap, err := Parse227(r.Text); err == nil {
				return x.passiveMode(line, ap, false), false
			}
		}
	case 229:
		if x.take(&x.mu.epsv) {
			if port, err := Parse229(r.Text); err == nil {
				return x.passiveMode(line, netip.AddrPortFrom(x.serverAddr(), port), true), false
			}
		}
	case 234:
		// AUTH accepted: TLS follows (RFC 4217). Even if the AUTH was
		// not seen, nothing after this is parsed.
		x.tls.Store(true)
		x.settleAuth(true)
		return line, true
	default:
		x.settleAuth(false)
	}
	return line, false
}

// serverAddr is the FTP server's address: the peer of an outbound control
// connection, the published server of an inbound one.
func (x *control) serverAddr() netip.Addr {
	if x.conn.Inbound() {
		return x.conn.ClientAddr().Addr()
	}
	return x.conn.Peer().Addr()
}

// passiveMode handles the address of a 227 or 229 reply, which may name
// only the server itself. For a server on the outside the client may then
// connect to it; for a published server fwx binds an outside port that
// leads to it, for the outside client only, and rewrites the reply.
func (x *control) passiveMode(line []byte, ap netip.AddrPort, extended bool) []byte {
	if ap.Addr().Unmap() != x.serverAddr() || Privileged(ap.Port()) {
		return line // opens nothing; the client's connection will be refused
	}
	s := x.conn.Session()
	if !x.conn.Inbound() {
		a, err := s.AllowFutureConnect(session.FutureConnect{Addr: ap, Protocol: session.TCP,
			ProtocolName: x.conn.ProtocolName(), Flags: session.Timeout})
		if err == nil {
			x.keep(permission{a})
		}
		return line
	}
	res, err := s.BindForClient(session.BindRequest{
		ClientAddrs:  []netip.AddrPort{ap},
		Protocol:     session.TCP,
		ProtocolName: x.conn.ProtocolName(),
		Flags:        session.Timeout,
		IPFilter:     session.NewIPFilter(x.conn.Peer().Addr()),
	})
	if err != nil {
		return []byte("425 Can't open data connection (fwx).\r\n")
	}
	x.keep(boundPort{res.Conns[0]})
	if extended {
		return []byte("229 " + Format229(res.Proxy.Port()) + "\r\n")
	}
	return []byte("227 " + Format227(res.Proxy) + "\r\n")
}

// take clears an outstanding-command flag, reporting whether it was set.
func (x *control) take(flag *bool) bool {
	x.mu.Lock()
	defer x.mu.Unlock()
	was := *flag
	*flag = false
	return was
}

// settleAuth answers an outstanding AUTH, reporting whether there was one.
func (x *control) settleAuth(accepted bool) bool {
	x.mu.Lock()
	defer x.mu.Unlock()
	if x.mu.auth == nil {
		return false
	}
	x.mu.auth <- accepted
	x.mu.auth = nil
	return true
}

// keep records a grant, and forgets those that are spent: used and over,
// or lapsed (they are single-use and short-lived), so a long session holds
// only what may still be used.
func (x *control) keep(g grant) {
	x.mu.Lock()
	defer x.mu.Unlock()
	live := x.mu.grants[:0]
	for _, old := range x.mu.grants {
		if old.Live() {
			live = append(live, old)
		}
	}
	x.mu.grants = append(live, g)
}

// revokeAll ends every grant when the control connection ends.
func (x *control) revokeAll() {
	x.mu.Lock()
	grants := x.mu.grants
	x.mu.grants = nil
	x.mu.Unlock()
	for _, g := range grants {
		g.revoke()
	}
}
