package tftp

import (
	"errors"

	"github.com/fwx-dev/fwx/session"
)

// Filter is the TFTP filter: it reads the requests to TFTP servers, lets
// each transfer in, and follows it to its end.
type Filter struct{ cfg Config }

var (
	_ session.Filter         = (*Filter)(nil)
	_ session.SessionFilter  = (*sessionFilter)(nil)
	_ session.DatagramFilter = (*requests)(nil)
	_ session.DatagramFilter = (*transfer)(nil)
)

// Init implements session.Filter. The filter hooks the UDP flows of its
// protocols (which puts them on the user-mode path) and the transfers
// its own permissions let in (secondaries).
func (f *Filter) Init() (session.Hooks, error) {
	if err := f.cfg.validate(); err != nil {
		return session.Hooks{}, err
	}
	return session.Hooks{Events: session.EventUDPDestination, Secondaries: true}, nil
}

// AttachToSession implements session.Filter.
func (f *Filter) AttachToSession(s *session.Session) (session.SessionFilter, error) {
	return &sessionFilter{f: f}, nil
}

// Shutdown implements session.Filter.
func (f *Filter) Shutdown() {}

// sessionFilter puts a request reader on each flow to a TFTP server, and
// the transfer's own filter on each transfer.
type sessionFilter struct{ f *Filter }

// HandleEvent implements session.SessionFilter.
func (sf *sessionFilter) HandleEvent(ev *session.Event) error {
	if ev.Type != session.EventUDPDestination {
		return nil
	}
	if ev.Secondary {
		// A transfer comes through a permission a request made; the
		// permission's context is the transfer.
		if tr, ok := ev.Context.(*transfer); ok && tr.f == sf.f {
			return tr.start(ev.Conn)
		}
		return nil
	}
	// PriorityNAT: the filter opens the way for the transfer, as a NAT
	// editor does.
	return ev.Conn.AttachDatagramFilter(&requests{f: sf.f, cfg: sf.f.cfg.forConnection(ev.Conn)}, session.PriorityNAT)
}

// Detach implements session.SessionFilter.
func (sf *sessionFilter) Detach() {}

// requests reads the requests of one client to one server's port 69 (or,
// for a published server, of one outside client): each RRQ or WRQ gets a
// transfer and a permission for the server's answer. Its calls come from
// the flow's goroutine, one at a time.
type requests struct {
	f    *Filter
	cfg  Config
	last *transfer // the latest transfer, for retransmitted requests
}

// HandleDatagram implements session.DatagramFilter.
func (r *requests) HandleDatagram(c *session.Connection, d *session.Datagram) session.Verdict {
	// A client behind fwx sends its requests from the inside; the client
	// of a published server, from the outside.
	if d.FromInside == c.Inbound() {
		return session.Pass
	}
	req, err := ParseRequest(d.Payload)
	if err != nil {
		// Not a request: the server answers it as it sees fit; no
		// transfer, so no permission.
		return session.Pass
	}
	if req.Op == OpWRQ && r.cfg.ReadOnly {
		r.cfg.Log.Debug().Stringer("client", d.Inside).Str("file", req.Filename).Msg("tftp: write refused (read_only)")
		c.Inject(d.FromInside, d.Peer, AppendError(nil, ErrAccessViolation, "writing refused by the firewall's policy"))
		return session.Drop
	}
	if r.last != nil && r.last.retransmits(d.Payload) {
		return session.Pass // the same request again: the transfer it started stands
	}
	tr := newTransfer(r.f, c.Session(), r.cfg, req, d, c.Inbound())
	if err := tr.permit(c, d); err != nil {
		r.cfg.Log.Debug().Err(err).Stringer("client", d.Inside).Stringer("server", d.Peer).Msg("tftp: no permission for the transfer")
		if errors.Is(err, session.ErrTerminating) {
			return session.Drop
		}
		// The request passes: the server's answer will be dropped, and
		// the client times out, as it would without the filter.
	}
	r.last = tr
	return session.Pass
}
