package tftp

import (
	"bytes"
	"fmt"
	"sync"
	"time"

	"github.com/fwx-dev/fwx/session"
)

// transfer is one TFTP transfer: the permission its request got and, once
// the server answered, the datagram filter on the transfer's flow that
// follows it to its end.
//
//	waiting ──server answers──► running ──last block acked──► finished ──linger──► ended
//	   │                           │ ERROR, idle                                     ▲
//	   └─ permission lapses        └────────────────────────────────────────────────┘
type transfer struct {
	f            *Filter
	s            *session.Session // the client's: its clock times the transfer
	cfg          Config
	op           Opcode
	request      []byte // the request as sent, to know it when it is sent again
	serverInside bool   // a published server's transfer

	mu struct {
		sync.Mutex
		state  state
		permit func()      // withdraws the permission
		live   func() bool // reports whether the permission stands
		conn   *session.Connection
		last   time.Time     // the last datagram
		idle   time.Duration // how long the transfer may be quiet
	}

	// Read and written by HandleDatagram only: the flow's goroutine.
	blksize    int
	final      uint16 // the block number of the last DATA block,
	finalKnown bool   // once seen
}

type state uint8

const (
	waiting state = iota
	running
	finished
	ended
)

func newTransfer(f *Filter, s *session.Session, cfg Config, req Request, d *session.Datagram, inbound bool) *transfer {
	t := &transfer{f: f, s: s, cfg: cfg, op: req.Op, request: bytes.Clone(d.Payload), serverInside: inbound, blksize: DefaultBlockSize}
	t.mu.idle = cfg.Idle
	return t
}

// permit asks the session for the server's answer to the request d: on the
// mapping the request left from, from the server's address (a client
// behind fwx), or from the published server to its outside client. The
// permission is for one source, closes once its flow has ended, and lapses
// if the server does not answer within the pinhole timeout.
func (t *transfer) permit(c *session.Connection, d *session.Datagram) error {
	s := c.Session()
	flags := session.Timeout | session.NoKernelMode | session.IncreaseReceiveBuffer
	if t.serverInside {
		a, err := s.AllowFutureConnect(session.FutureConnect{Addr: d.Peer, Transport: session.UDP, Flags: flags,
			Protocol: c.Protocol(), Context: t, Primary: c})
		if err != nil {
			return fmt.Errorf("filters/tftp: %w", err)
		}
		t.setPermit(func() { a.Cancel() }, a.Live)
		return nil
	}
	p, err := s.RetroactiveAllowBind(session.RetroactiveBind{External: c.External(), Transport: session.UDP,
		Flags: flags | session.Bidirectional, Protocol: c.Protocol(),
		IPFilter: session.NewIPFilter(d.Peer.Addr()), Context: t, Primary: c})
	if err != nil {
		return fmt.Errorf("filters/tftp: %w", err)
	}
	t.setPermit(p.Kill, p.Live)
	return nil
}

func (t *transfer) setPermit(withdraw func(), live func() bool) {
	t.mu.Lock()
	t.mu.permit, t.mu.live = withdraw, live
	t.mu.Unlock()
}

// retransmits reports whether payload is this transfer's request sent
// again while the transfer has not finished and its permission stands:
// the client did not hear the server yet.
func (t *transfer) retransmits(payload []byte) bool {
	t.mu.Lock()
	state, live := t.mu.state, t.mu.live
	t.mu.Unlock()
	return state < finished && live != nil && bytes.Equal(payload, t.request) && live()
}

// start puts the transfer's filter on its flow, when the server's first
// answer came through the permission, and starts its idle timer.
func (t *transfer) start(c *session.Connection) error {
	t.mu.Lock()
	if t.mu.state != waiting {
		t.mu.Unlock()
		return fmt.Errorf("filters/tftp: a second flow for one transfer: %w", session.ErrInvalidArgument)
	}
	t.mu.state, t.mu.conn, t.mu.last = running, c, t.s.Now()
	idle := t.mu.idle
	t.mu.Unlock()
	if err := c.AttachDatagramFilter(t, session.PriorityNAT); err != nil {
		return err
	}
	t.s.AfterFunc(idle, t.checkIdle)
	return nil
}

// HandleDatagram implements session.DatagramFilter: it passes every
// datagram and watches for the transfer's end.
func (t *transfer) HandleDatagram(c *session.Connection, d *session.Datagram) session.Verdict {
	t.touch()
	fromServer := d.FromInside == t.serverInside
	// The data goes from the server on a read, from the client on a write.
	fromSender := fromServer == (t.op == OpRRQ)
	p := d.Payload
	switch OpcodeOf(p) {
	case OpOACK:
		if !fromServer {
			break
		}
		if opts, err := ParseOACK(p); err == nil {
			if n, ok := Blksize(opts); ok {
				t.blksize = n
			}
			if s, ok := Timeout(opts); ok {
				t.atLeastIdle(2 * time.Duration(s) * time.Second)
			}
		}
	case OpDATA:
		if block, ok := Block(p); ok && fromSender && len(p)-4 < t.blksize {
			t.final, t.finalKnown = block, true
		}
	case OpACK:
		if block, ok := Block(p); ok && !fromSender && t.finalKnown && block == t.final {
			t.finish()
		}
	case OpERROR:
		// An ERROR ends the transfer: it is neither acknowledged nor sent
		// again (RFC 1350). It passes; the flow ends behind it.
		t.cfg.Log.Debug().Stringer("client", d.Inside).Stringer("peer", d.Peer).Msg("tftp: transfer ended by an ERROR")
		t.end()
	}
	return session.Pass
}

func (t *transfer) touch() {
	now := t.s.Now()
	t.mu.Lock()
	t.mu.last = now
	t.mu.Unlock()
}

func (t *transfer) atLeastIdle(d time.Duration) {
	t.mu.Lock()
	t.mu.idle = max(t.mu.idle, min(d, maxIdle))
	t.mu.Unlock()
}

// finish marks the transfer done when the last block is acknowledged; its
// flow stays for Linger, for a last block sent again.
func (t *transfer) finish() {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.mu.state == running {
		t.mu.state = finished
		t.s.AfterFunc(t.cfg.Linger, t.end)
	}
}

// checkIdle ends a transfer that went quiet for its idle time, and checks
// again later otherwise.
func (t *transfer) checkIdle() {
	t.mu.Lock()
	if t.mu.state == ended {
		t.mu.Unlock()
		return
	}
	quiet, idle := t.s.Now().Sub(t.mu.last), t.mu.idle
	t.mu.Unlock()
	if quiet >= idle {
		t.cfg.Log.Debug().Dur("quiet", quiet).Msg("tftp: idle transfer ended")
		t.end()
		return
	}
	t.s.AfterFunc(idle-quiet, t.checkIdle)
}

// end ends the transfer's flow and withdraws its permission.
func (t *transfer) end() {
	t.mu.Lock()
	if t.mu.state == ended {
		t.mu.Unlock()
		return
	}
	t.mu.state = ended
	conn, permit := t.mu.conn, t.mu.permit
	t.mu.Unlock()
	if conn != nil {
		conn.Kill()
	}
	if permit != nil {
		permit()
	}
}
