package fwx

import (
	"errors"
	"fmt"
	"io"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/fwx-dev/fwx/session"
)

// LogQueueOptions configures a [LogQueue]. The zero value is useful: a
// queue of 4096 records and no rate limit.
type LogQueueOptions struct {
	// Size is the queue's capacity in records. Zero means 4096.
	Size int
	// Rate is how many records per second are passed on, on average;
	// records beyond it are suppressed and counted. Zero means no limit.
	Rate float64
	// Burst is how many records may pass at once above Rate. Zero means
	// five seconds' worth of Rate.
	Burst int
	// OnError is called from the writer's goroutine when writing to the
	// destination fails: the log has ended (a closed pipe, a full disk),
	// and every later record is lost until [LogQueue.Resume]. Nil ignores
	// it.
	OnError func(error)
	// Clock is the clock of the rate limit and of the queue's own
	// records. Nil means the system clock.
	Clock Clock
	// NoticeInterval is how often, at most, the writer reports suppressed
	// records. Zero means one second.
	NoticeInterval time.Duration
}

// LogQueueStats counts what happened to the records given to a [LogQueue].
type LogQueueStats struct {
	// Written records reached the destination.
	Written uint64
	// Dropped records found the queue full: the destination was slower
	// than the records came.
	Dropped uint64
	// Suppressed records exceeded the rate limit.
	Suppressed uint64
	// Lost records came after the destination failed, or after Close.
	// (Those still queued when Close gave up on a blocked destination
	// are counted in its error.)
	Lost uint64
	// Failed is the error that ended the log, or nil.
	Failed error
}

// LogQueue keeps a log from ever stopping the program that writes it, and
// is what to put under [Config.FirewallLog]: fwx writes that log on its
// packet path, so a reader that stops reading (a pipe nobody drains, a
// full disk, a hung terminal) must cost log records, never forwarding.
//
// A LogQueue is an io.Writer that never blocks: Write copies a record into
// a bounded queue and returns; a goroutine of the queue's own writes the
// queue to the destination, one Write per record. When the queue is full
// the record is dropped and counted, and once the destination catches up
// the queue writes a record of its own saying how many were dropped
// ({"event":"log-dropped","dropped":N}); records beyond the rate limit are
// reported the same way ({"event":"log-suppressed","suppressed":N}).
//
// Each Write must be one whole record (zerolog writes one per event), a
// JSON object on a line when the queue's own records are to match.
// A LogQueue is safe for concurrent use. Close stops it.
type LogQueue struct {
	dst  io.Writer
	opts LogQueueOptions
	q    chan []byte
	pool sync.Pool

	mu      sync.Mutex // guards the token bucket and closed
	tokens  float64
	last    time.Time
	closed  bool
	closing chan struct{}
	done    chan struct{}

	written, dropped, suppressed, lost atomic.Uint64
	unreportedDrops                    atomic.Uint64
	unreportedSuppressed               atomic.Uint64
	failed                             atomic.Bool
	errMu                              sync.Mutex
	err                                error // why failed was set
}

// NewLogQueue returns a LogQueue writing to dst and starts its goroutine.
func NewLogQueue(dst io.Writer, opts LogQueueOptions) *LogQueue {
	if opts.Size <= 0 {
		opts.Size = 4096
	}
	if opts.Rate > 0 && opts.Burst <= 0 {
		opts.Burst = max(1, int(5*opts.Rate))
	}
	if opts.Clock == nil {
		opts.Clock = session.SystemClock
	}
	if opts.NoticeInterval <= 0 {
		opts.NoticeInterval = time.Second
	}
	w := &LogQueue{
		dst:     dst,
		opts:    opts,
		q:       make(chan []byte, opts.Size),
		tokens:  float64(opts.Burst),
		last:    opts.Clock.Now(),
		closing: make(chan struct{}),
		done:    make(chan struct{}),
	}
	go w.run()
	return w
}

// Write queues a copy of p and returns len(p), nil, whatever becomes of
// the record: a logger must not fail, nor print a complaint per record,
// because its reader went away. It never blocks.
func (w *LogQueue) Write(p []byte) (int, error) {
	if w.failed.Load() {
		w.lost.Add(1)
		return len(p), nil
	}
	w.mu.Lock()
	if w.closed {
		w.mu.Unlock()
		w.lost.Add(1)
		return len(p), nil
	}
	if !w.allowLocked() {
		w.mu.Unlock()
		w.suppressed.Add(1)
		w.unreportedSuppressed.Add(1)
		return len(p), nil
	}
	w.mu.Unlock()
	buf := w.get(len(p))
	buf = append(buf, p...)
	select {
	case w.q <- buf:
	default:
		w.put(buf)
		w.dropped.Add(1)
		w.unreportedDrops.Add(1)
	}
	return len(p), nil
}

// allowLocked takes a token from the rate limit's bucket.
func (w *LogQueue) allowLocked() bool {
	if w.opts.Rate <= 0 {
		return true
	}
	now := w.opts.Clock.Now()
	if d := now.Sub(w.last); d > 0 {
		w.tokens = min(float64(w.opts.Burst), w.tokens+d.Seconds()*w.opts.Rate)
		w.last = now
	}
	if w.tokens < 1 {
		return false
	}
	w.tokens--
	return true
}

// Records are copied into pooled buffers; a record larger than this is not
// kept for reuse.
const maxPooled = 4 << 10

func (w *LogQueue) get(n int) []byte {
	if b, ok := w.pool.Get().(*[]byte); ok && cap(*b) >= n {
		return (*b)[:0]
	}
	return make([]byte, 0, max(n, 512))
}

func (w *LogQueue) put(b []byte) {
	if cap(b) <= maxPooled {
		w.pool.Put(&b)
	}
}

// run is the queue's goroutine: it writes queued records until Close, and
// its own records when records were dropped or suppressed.
func (w *LogQueue) run() {
	defer close(w.done)
	tick := time.NewTicker(w.opts.NoticeInterval)
	defer tick.Stop()
	for {
		select {
		case rec := <-w.q:
			w.write(rec)
			if len(w.q) == 0 {
				w.notices(false)
			}
		case <-tick.C:
			w.notices(true)
		case <-w.closing:
			for {
				select {
				case rec := <-w.q:
					w.write(rec)
				default:
					w.notices(true)
					return
				}
			}
		}
	}
}

// write writes one record; after a failure it only counts.
func (w *LogQueue) write(rec []byte) {
	defer w.put(rec)
	if w.failed.Load() {
		w.lost.Add(1)
		return
	}
	if _, err := w.dst.Write(rec); err != nil {
		w.fail(err)
		w.lost.Add(1)
		return
	}
	w.written.Add(1)
}

func (w *LogQueue) fail(err error) {
	w.errMu.Lock()
	w.err = err
	w.errMu.Unlock()
	w.failed.Store(true)
	if w.opts.OnError != nil {
		w.opts.OnError(err)
	}
}

// Resume writes to the destination again after it failed, once the cause
// is gone (a full disk freed, a log file reopened). Records lost meanwhile
// stay counted in Stats.Lost.
func (w *LogQueue) Resume() {
	w.errMu.Lock()
	w.err = nil
	w.errMu.Unlock()
	w.failed.Store(false)
}

// notices writes the queue's own records: how many records were dropped
// since the last such record (once the queue has drained) and, when
// suppressed is set, how many the rate limit suppressed.
func (w *LogQueue) notices(suppressed bool) {
	if n := w.unreportedDrops.Swap(0); n > 0 {
		w.notice("log-dropped", "dropped", n, "the log's reader fell behind")
	}
	if suppressed {
		if n := w.unreportedSuppressed.Swap(0); n > 0 {
			w.notice("log-suppressed", "suppressed", n, "more records than the log's rate limit")
		}
	}
}

func (w *LogQueue) notice(event, field string, n uint64, why string) {
	if w.failed.Load() {
		return
	}
	b := make([]byte, 0, 160)
	b = append(b, `{"level":"warn","time":`...)
	b = strconv.AppendQuote(b, w.opts.Clock.Now().UTC().Format(time.RFC3339))
	b = append(b, `,"event":"`...)
	b = append(b, event...)
	b = append(b, `","`...)
	b = append(b, field...)
	b = append(b, `":`...)
	b = strconv.AppendUint(b, n, 10)
	b = append(b, `,"message":`...)
	b = strconv.AppendQuote(b, fmt.Sprintf("%d log records lost: %s", n, why))
	b = append(b, "}\n"...)
	if _, err := w.dst.Write(b); err != nil {
		w.fail(err)
	}
}

// ErrLogBlocked is returned by [LogQueue.Close] when the destination did
// not take the queued records in time.
var ErrLogBlocked = errors.New("fwx: the log's destination is blocked")

// Close stops accepting records and waits, at most timeout, for the queue
// to be written. A destination that blocks is abandoned: Close returns an
// error wrapping [ErrLogBlocked], and the goroutine stays blocked in its
// Write (a process about to exit does not care; a test unblocks it).
func (w *LogQueue) Close(timeout time.Duration) error {
	w.mu.Lock()
	if !w.closed {
		w.closed = true
		close(w.closing)
	}
	w.mu.Unlock()
	select {
	case <-w.done:
		return nil
	case <-time.After(timeout):
		n := uint64(len(w.q))
		return fmt.Errorf("%w: %d records not written", ErrLogBlocked, n)
	}
}

// Wait waits for the goroutine to end after Close.
func (w *LogQueue) Wait() { <-w.done }

// Stats returns the queue's counts so far.
func (w *LogQueue) Stats() LogQueueStats {
	s := LogQueueStats{
		Written:    w.written.Load(),
		Dropped:    w.dropped.Load(),
		Suppressed: w.suppressed.Load(),
		Lost:       w.lost.Load(),
	}
	w.errMu.Lock()
	s.Failed = w.err
	w.errMu.Unlock()
	return s
}
