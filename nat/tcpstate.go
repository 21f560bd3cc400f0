package nat

import (
	"sync/atomic"

	"gvisor.dev/gvisor/pkg/tcpip/header"
)

// TCP state tracking, as a NAT sees a connection pass (RFC 5382, Linux
// conntrack): which side opened it, whether the opener completed the
// handshake, whether each side's FIN was acknowledged, whether it was
// reset. The state picks the flow's timer and says when its end is logged.
//
//	            opener's SYN          answer (SYN+ACK)         opener's ACK of the answer
//	(created) ───────────► SynSent ─────────────► SynReceived ───────────────► Established
//	                                                                              │ a FIN
//	                         Closed (TIME_WAIT) ◄── both FINs acknowledged ── Closing
//	any state ── RST ──► Reset
//
// Established needs the opener's ACK of the answer, not just a SYN each
// way: a client that sends SYNs and drops the replies (a SYN flood) keeps
// its flows in SynReceived, on its short timer. On the fast path the ACK
// must acknowledge the answer's sequence number, and a FIN counts as
// acknowledged when an ACK covers it; on the user-mode path the two sides
// are separate connections with their own sequence numbers, and fwx's own
// stack answers the opener, so the next ACK in the other direction stands
// for it.

// TCPState is the state of a TCP flow's connection.
type TCPState uint8

// TCP states.
const (
	// TCPNone is the state of a flow that is not TCP.
	TCPNone TCPState = iota
	// TCPSynSent: the opener's SYN has no answer yet.
	TCPSynSent
	// TCPSynReceived: the SYN was answered; the opener has not
	// acknowledged the answer.
	TCPSynReceived
	// TCPEstablished: the handshake completed; no FIN or RST yet.
	TCPEstablished
	// TCPClosing: a side sent a FIN; the connection is not closed both
	// ways yet.
	TCPClosing
	// TCPClosed: both FINs were acknowledged (TIME_WAIT).
	TCPClosed
	// TCPReset: a RST was seen.
	TCPReset
)

var tcpStateNames = [...]string{"none", "syn-sent", "syn-received", "established", "closing", "closed", "reset"}

// String returns the state's name, as the log spells it.
func (s TCPState) String() string {
	if int(s) < len(tcpStateNames) {
		return tcpStateNames[s]
	}
	return "tcp-state?"
}

// ended reports whether the connection is over: closed both ways or reset.
func (s TCPState) ended() bool { return s == TCPClosed || s == TCPReset }

// The events a tracker has seen, one bit each; the state follows from them.
// "Origin" is the side that opened the flow, "answer" the other.
const (
	tcpSynOrigin uint32 = 1 << iota
	tcpSynAnswer
	tcpHandshake // the opener acknowledged the answer
	tcpFinOrigin
	tcpFinAnswer
	tcpFinOriginAcked
	tcpFinAnswerAcked
	tcpRST
)

// A flow's lifecycle bits share the tracker's word (every flow has one):
// set once each, so that exactly one caller acts on each change.
const (
	flowRemoved  uint32 = 1 << 30 // unindexed from the table
	flowReported uint32 = 1 << 31 // its end was told to the Observer
)

// tcpTracker follows one TCP connection. Packets of the two directions are
// observed concurrently (the inside and outside readers), so the events
// are one word changed by compare-and-swap; a sequence number is stored
// before the bit that says it is there, and read only after the bit. The
// word also holds the flow's lifecycle bits, whatever its protocol.
type tcpTracker struct {
	bits atomic.Uint32
	// isn is the answer's initial sequence number: the opener's ACK must
	// acknowledge it.
	isn atomic.Uint32
	// finEnd holds, for the origin [0] and the answer [1], the sequence
	// number that acknowledges its FIN.
	finEnd [2]atomic.Uint32
}

// segment is what the tracker needs of a TCP packet.
type segment struct {
	flags      header.TCPFlags
	fromOrigin bool
	// numbered says seq, ack and len are known and comparable with the
	// other direction's (the fast path).
	numbered      bool
	seq, ack, len uint32
}

// state returns the connection's state.
func (t *tcpTracker) state() TCPState { return stateOf(t.bits.Load()) }

func stateOf(b uint32) TCPState {
	switch {
	case b&tcpRST != 0:
		return TCPReset
	case b&(tcpFinOriginAcked|tcpFinAnswerAcked) == tcpFinOriginAcked|tcpFinAnswerAcked:
		return TCPClosed
	case b&(tcpFinOrigin|tcpFinAnswer) != 0:
		return TCPClosing
	case b&tcpHandshake != 0:
		return TCPEstablished
	case b&tcpSynAnswer != 0:
		return TCPSynReceived
	}
	return TCPSynSent
}

// observe records a segment and returns the bits before and after it.
// Only one segment makes each change, so the caller that sees a change
// (the connection established, ended) acts on it exactly once.
func (t *tcpTracker) observe(s segment) (old, next uint32) {
	const control = header.TCPFlagSyn | header.TCPFlagFin | header.TCPFlagRst
	for {
		old = t.bits.Load()
		if s.flags&control == 0 && old&tcpHandshake != 0 && old&(tcpFinOrigin|tcpFinAnswer) == 0 {
			return old, old // the common case: data on an established connection
		}
		if old&tcpRST != 0 {
			return old, old // nothing changes a reset connection
		}
		next = t.next(old, s)
		if next == old || t.bits.CompareAndSwap(old, next) {
			return old, next
		}
	}
}

// set sets lifecycle bits b and returns the bits before and after.
func (t *tcpTracker) set(b uint32) (old, next uint32) {
	old = t.bits.Or(b)
	return old, old | b
}

// next returns the event bits after segment s, given bits b. It may store
// sequence numbers for bits it sets; a retry after a lost race stores the
// same values again.
func (t *tcpTracker) next(b uint32, s segment) uint32 {
	if s.flags&header.TCPFlagRst != 0 {
		return b | tcpRST
	}
	syn, fin, ack := s.flags&header.TCPFlagSyn != 0, s.flags&header.TCPFlagFin != 0, s.flags&header.TCPFlagAck != 0
	switch {
	case syn && s.fromOrigin:
		b |= tcpSynOrigin
	case syn && b&tcpSynAnswer == 0:
		t.isn.Store(s.seq)
		b |= tcpSynAnswer
	}
	if ack && !syn {
		if s.fromOrigin && b&tcpHandshake == 0 && t.acksAnswer(b, s) {
			b |= tcpHandshake
		}
		// This side acknowledging the other's FIN.
		otherFin, otherAcked, i := tcpFinAnswer, tcpFinAnswerAcked, 1
		if !s.fromOrigin {
			otherFin, otherAcked, i = tcpFinOrigin, tcpFinOriginAcked, 0
		}
		if b&(otherFin|otherAcked) == otherFin && (!s.numbered || int32(s.ack-t.finEnd[i].Load()) >= 0) {
			b |= otherAcked
		}
	}
	if fin {
		mine, i := tcpFinOrigin, 0
		if !s.fromOrigin {
			mine, i = tcpFinAnswer, 1
		}
		if b&mine == 0 {
			end := s.seq + s.len + 1
			if syn {
				end++
			}
			t.finEnd[i].Store(end)
			b |= mine
		}
	}
	return b
}

// acksAnswer reports whether the opener's segment s, with event bits b,
// acknowledges the answer's SYN. A SYN+ACK may carry data (TCP Fast Open),
// so anything up to 64 KiB past the SYN counts. Without sequence numbers
// (the user-mode path) fwx's own stack answered the opener, and only once
// it accepted the connection: any ACK counts.
func (t *tcpTracker) acksAnswer(b uint32, s segment) bool {
	if !s.numbered {
		return true
	}
	return b&tcpSynAnswer != 0 && s.ack-(t.isn.Load()+1) <= 0xffff
}
