package ftp

import (
	"bytes"
	"errors"
	"fmt"
	"net/netip"

	"github.com/fwx-dev/fwx/session"
)

// The FTP session as the filter models it: a control connection is FTP
// only if it looks like FTP from its first byte, and it may negotiate data
// connections only once its user has logged in.
//
//	greeting ──220──► login ──230/232 to USER/PASS/ACCT──► ready
//	    │               ▲ └──────────331/332 or REIN──────────┘
//	    │               │
//	    └─ the client writes first, the server does not greet with 220,
//	       or a line before the login is not an FTP command ─► opaque
//	                        234 (TLS) from any phase ──────────► opaque
//
// In the opaque phase both directions are relayed untouched, and nothing
// is parsed, rewritten or opened for the rest of the connection.
type phase int32

const (
	greeting phase = iota // waiting for the server's 220
	login                 // greeted, no user logged in
	ready                 // logged in: data connections may be negotiated
	opaque                // not FTP, or TLS: relayed untouched
)

// ErrLineTooLong means a line that could open a pinhole (PORT, EPRT, PASV,
// EPSV, 227, 229) was longer than MaxLine; it ends the control connection.
var ErrLineTooLong = errors.New("filters/ftp: line too long")

// MaxLine bounds the lines that can open something: PORT, EPRT, PASV and
// EPSV commands and 227 and 229 replies, terminator included. OpenBSD
// ftp-proxy allows 500 bytes for every line; no real line of these kinds
// comes near this. Other lines may be of any length (see PieceSize).
const MaxLine = 512

func (x *control) opaque() bool { return phase(x.phase.Load()) == opaque }

// move changes the phase from one to another, if it still is the first.
func (x *control) move(from, to phase) { x.phase.CompareAndSwap(int32(from), int32(to)) }

// notFTP marks the connection as not FTP: from now on it is relayed
// untouched. The first time, it logs why.
func (x *control) notFTP(why string) {
	for {
		p := phase(x.phase.Load())
		if p == opaque {
			return
		}
		if x.phase.CompareAndSwap(int32(p), int32(opaque)) {
			x.refused("", causeNotFTP, why)
			return
		}
	}
}

// checkFTP looks at the start of a client line before it is handled:
// before the login every line must be an FTP command. (A client that
// wrote before the greeting was caught as its bytes arrived: earlyReader.)
func (x *control) checkFTP(line []byte) {
	if phase(x.phase.Load()) != login {
		return
	}
	if c, ok := ParseCommand(line); !ok || !isVerb(c.Verb) {
		x.notFTP(fmt.Sprintf("not an FTP command: %q", truncate(line, 64)))
	}
}

// command handles the first piece of a client line (the whole line unless
// more): it sends it on (rewritten, or not at all when refused) and says
// whether the rest of a long line is dropped, and what to do once the line
// is over. An error ends the control connection.
func (x *control) command(line []byte, more bool) (drop bool, then func() error, err error) {
	cmd, ok := ParseCommand(line)
	switch verb := cmd.Verb; {
	case len(trimEOL(line)) == 0 && !more:
		// An empty line is no command, and vsftpd and pure-ftpd do not
		// answer it (proftpd does): passing it on would leave the pairing
		// of replies to commands in doubt. It is dropped.
		return false, nil, nil
	case !ok:
		// Not a command (a Telnet sequence before ABOR, say): the server
		// answers it, so it is tracked like one.
		_, err := x.send(line, "", nil)
		return false, nil, err
	case verb == "PORT" || verb == "EPRT" || verb == "PASV" || verb == "EPSV":
		if more || len(line) > MaxLine {
			x.refused(verb, causeTooLong, fmt.Sprintf("%s line of more than %d bytes", verb, MaxLine))
			return true, nil, fmt.Errorf("%w: %s", ErrLineTooLong, verb)
		}
		if phase(x.phase.Load()) != ready {
			return true, x.refuse(verb, causeBeforeLogin, "no user logged in", "530 "+verb+" refused: log in first (fwx).\r\n"), nil
		}
		if (verb == "PORT" || verb == "PASV") && x.clientAddr().Is6() {
			// PORT and 227 carry IPv4 addresses only: an IPv6 control
			// connection uses EPRT and EPSV (RFC 2428), as clients do.
			return true, x.refuse(verb, causeIPv4Only, verb+" on an IPv6 control connection",
				"502 "+verb+" refused: IPv4 only; on IPv6 use "+map[string]string{"PORT": "EPRT", "PASV": "EPSV"}[verb]+" (fwx).\r\n"), nil
		}
		x.sf.supersede(x)
		if verb == "PORT" || verb == "EPRT" {
			return x.activeMode(cmd, line)
		}
		_, err := x.send(line, verb, nil)
		return false, nil, err
	case x.cfg.ReadOnly && modifies[verb]:
		return true, x.refuse(verb, causeReadOnly, verb+" in read-only mode", "550 "+verb+" refused: read-only access (fwx).\r\n"), nil
	case verb == "AUTH":
		// Whether TLS follows decides how the next bytes are read: wait
		// for the server's answer before reading on.
		s, err := x.send(line, verb, nil)
		return false, func() error { x.await(s); return nil }, err
	default:
		_, err := x.send(line, verb, nil)
		return false, nil, err
	}
}

// refuse returns what to do once a refused line is over: wait until the
// replies to the commands before it have reached the client, so that the
// client reads the refusal in its place, then log and send it.
func (x *control) refuse(kind, cause, why, reply string) func() error {
	return func() error {
		x.await(x.last)
		x.refused(kind, cause, why)
		return x.toClient([]byte(reply))
	}
}

// modifies lists the commands that upload or change files (RFC 959, RFC
// 3659 and common extensions), refused in read-only mode.
var modifies = map[string]bool{
	"STOR": true, "STOU": true, "APPE": true, "DELE": true, "RNFR": true, "RNTO": true,
	"MKD": true, "XMKD": true, "RMD": true, "XRMD": true, "SITE": true, "MFMT": true, "MFCT": true, "MFF": true,
}

// activeMode handles PORT and EPRT of a logged-in client. The address must
// be the client's own: for a client behind fwx, fwx reserves a port for
// the server to connect to and rewrites the command; for the outside
// client of a published server, the server may connect to that client. In
// both cases the pinhole is armed only by the server's 200.
func (x *control) activeMode(cmd Command, line []byte) (bool, func() error, error) {
	var ap netip.AddrPort
	var err error
	if cmd.Verb == "PORT" {
		ap, err = ParsePORT(cmd.Arg)
	} else {
		ap, err = ParseEPRT(cmd.Arg)
	}
	switch {
	case err != nil:
		return true, x.refuse(cmd.Verb, causeMalformed, err.Error(), "501 "+cmd.Verb+" refused: malformed argument (fwx).\r\n"), nil
	case ap.Addr().Unmap() != x.clientAddr():
		why := fmt.Sprintf("%v is not the client's own address %v", ap.Addr(), x.clientAddr())
		return true, x.refuse(cmd.Verb, causeForeign, why, "500 "+cmd.Verb+" refused: the address is not the client's own (fwx).\r\n"), nil
	case Privileged(ap.Port()):
		why := fmt.Sprintf("port %d", ap.Port())
		return true, x.refuse(cmd.Verb, causePrivileged, why, "500 "+cmd.Verb+" refused: privileged port (fwx).\r\n"), nil
	}
	h, err := x.openActive(cmd.Verb, ap)
	if err != nil {
		cause, reply := causeNoPort, "425 Can't open data connection (fwx).\r\n"
		if errors.Is(err, errCap) || errors.Is(err, session.ErrBusy) {
			cause, reply = causeCap, "425 "+cmd.Verb+" refused: too many data connections pending (fwx).\r\n"
		}
		return true, x.refuse(cmd.Verb, cause, err.Error(), reply), nil
	}
	if !x.conn.Inbound() {
		if cmd.Verb == "PORT" {
			line = []byte("PORT " + FormatPORT(h.bound.Addr()) + "\r\n")
		} else {
			line = []byte("EPRT " + FormatEPRT(h.bound.Addr()) + "\r\n")
		}
	}
	s, err := x.send(line, cmd.Verb, h)
	if s == nil && err == nil {
		x.sf.withdraw(h, "pinhole-closed", causeControlClosed) // the server's side is gone
	}
	// Hold the client's next command until the server answered: a
	// transfer command it pipelined must not reach the server before the
	// pinhole is armed, so the server's connection finds it armed.
	return false, func() error { x.await(s); return nil }, err
}

// reply handles the first piece of a server line (the whole line unless
// more) and returns what to send the client in its place, and the command
// it completes the reply to, if any.
func (x *control) reply(line []byte, more bool) ([]byte, *sent, error) {
	r, ok := ParseReply(line)
	switch {
	case x.multi != 0:
		// Inside a multi-line reply only "NNN " with its own code ends it.
		if ok && !r.More && r.Code == x.multi {
			x.multi = 0
			return x.final(r, line, false, more)
		}
		return line, nil, nil
	case !ok:
		if !x.greeted {
			x.notFTP(fmt.Sprintf("the server's first line is not an FTP reply: %q", truncate(line, 64)))
		}
		return line, nil, nil
	case r.More:
		x.multi = r.Code
		if !x.greeted && r.Code == 220 {
			// The server has spoken: the client may, though the
			// greeting goes on.
			x.move(greeting, login)
		}
		return line, nil, nil
	}
	return x.final(r, line, true, more)
}

// final acts on a complete reply: its last line r (single is false for the
// end of a multi-line reply, whose text is not parsed).
func (x *control) final(r Reply, line []byte, single, more bool) ([]byte, *sent, error) {
	if (r.Code == 227 || r.Code == 229) && (more || len(line) > MaxLine) {
		x.refused(fmt.Sprint(r.Code), causeTooLong, fmt.Sprintf("%d reply of more than %d bytes", r.Code, MaxLine))
		return nil, nil, fmt.Errorf("%w: %d reply", ErrLineTooLong, r.Code)
	}
	if r.Code < 200 {
		return line, nil, nil // preliminary: the command's final reply follows
	}
	if !x.greeted {
		x.greeted = true
		if r.Code == 220 {
			x.move(greeting, login) // before the client can read it
		} else {
			x.notFTP(fmt.Sprintf("the server greeted with %d, not 220", r.Code))
		}
		return line, nil, nil
	}
	var c *sent
	select {
	case c = <-x.outstanding:
	default: // unsolicited: acts on nothing
	}
	if r.Code == 234 {
		// TLS follows (RFC 4217): even if no AUTH was seen, nothing after
		// this is parsed.
		x.phase.Store(int32(opaque))
		return line, c, nil
	}
	if c == nil {
		return line, nil, nil
	}
	switch c.verb {
	case "USER", "PASS", "ACCT":
		switch r.Code {
		case 230, 232: // logged in (232: by a security exchange, RFC 2228)
			x.move(login, ready)
		case 331, 332: // a new login begins
			x.move(ready, login)
		}
	case "REIN":
		if r.Code/100 == 2 {
			x.move(ready, login)
		}
	case "PORT", "EPRT":
		if h := c.hole; h != nil {
			if r.Code/100 == 2 {
				x.sf.arm(h)
				x.armed = h
			} else {
				x.sf.withdraw(h, "pinhole-refused", causeServerRefused)
			}
		}
	case "RETR", "STOR", "STOU", "APPE", "LIST", "NLST", "MLSD":
		if r.Code/100 == 2 {
			x.awaitData()
		}
	case "PASV":
		if r.Code == 227 && single {
			if ap, err := Parse227(r.Text); err == nil {
				return x.passiveMode(c.verb, line, ap, false), c, nil
			}
		}
	case "EPSV":
		if r.Code == 229 && single {
			if port, err := Parse229(r.Text); err == nil {
				return x.passiveMode(c.verb, line, netip.AddrPortFrom(x.serverAddr(), port), true), c, nil
			}
		}
	}
	return line, c, nil
}

// passiveMode handles the address of a 227 or 229 reply, which may name
// only the server itself. For a server on the outside the client may then
// connect to it; for a published server fwx binds an outside port that
// leads to it, for the outside client only, and rewrites the reply.
func (x *control) passiveMode(verb string, line []byte, ap netip.AddrPort, extended bool) []byte {
	switch {
	case ap.Addr().Unmap() != x.serverAddr():
		x.refused(verb, causeForeign, fmt.Sprintf("the reply names %v, not the server %v", ap.Addr(), x.serverAddr()))
		return line // opens nothing; the client's connection will be refused
	case Privileged(ap.Port()):
		x.refused(verb, causePrivileged, fmt.Sprintf("the reply names port %d", ap.Port()))
		return line
	}
	x.armed = nil // the data connection is the client's to make now
	// The command superseded the pinholes before it when it was sent;
	// this supersedes those opened since, by the replies to PASV or EPSV
	// pipelined ahead of it.
	x.sf.supersede(x)
	h, err := x.openPassive(verb, ap)
	if err != nil {
		cause := causeNoPort
		if errors.Is(err, errCap) || errors.Is(err, session.ErrBusy) {
			cause = causeCap
		}
		x.refused(verb, cause, err.Error())
		return []byte("425 Can't open data connection (fwx).\r\n")
	}
	if !x.conn.Inbound() {
		return line
	}
	if extended {
		return []byte("229 " + Format229(h.bound.Addr().Port()) + "\r\n")
	}
	return []byte("227 " + Format227(h.bound.Addr()) + "\r\n")
}

// clientAddr is the FTP client's address: the session's client for an
// outbound control connection, the outside peer of an inbound one.
func (x *control) clientAddr() netip.Addr {
	if x.conn.Inbound() {
		return x.conn.Peer().Addr()
	}
	return x.conn.ClientAddr().Addr()
}

// serverAddr is the FTP server's address: the peer of an outbound control
// connection, the published server of an inbound one.
func (x *control) serverAddr() netip.Addr {
	if x.conn.Inbound() {
		return x.conn.ClientAddr().Addr()
	}
	return x.conn.Peer().Addr()
}

// isVerb reports whether v is a command of the FTP RFCs: what a line
// before the login must start with.
func isVerb(v string) bool {
	_, ok := knownVerbs[v]
	return ok
}

// truncate returns at most n bytes of the line b starts with, without
// its terminator.
func truncate(b []byte, n int) []byte {
	if i := bytes.IndexByte(b, '\n'); i >= 0 {
		b = b[:i+1]
	}
	b = trimEOL(b)
	return b[:min(len(b), n)]
}
