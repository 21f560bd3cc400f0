package ftp

import (
	"bytes"
	"errors"
	"io"
)

// PieceSize is the LineReader's buffer and the size of the pieces a line
// longer than that is returned in. RFC 959 sets no line limit and real
// paths are long (Linux's PATH_MAX is 4096), so a long line is never an
// error by itself: the filter relays it piece by piece.
const PieceSize = 4096

// maxEmptyReads is how many (0, nil) results from the underlying reader in
// a row give io.ErrNoProgress (bufio uses the same number).
const maxEmptyReads = 100

var (
	// ErrNUL means a line held a NUL byte, which no FTP line may contain
	// (RFC 959 §2.2, Telnet NVT); ftp-proxy ends the session on it too.
	// It is sticky: the reader will not go on after it.
	ErrNUL = errors.New("filters/ftp: NUL in line")

	// errBadRead means the underlying reader returned an impossible count.
	errBadRead = errors.New("filters/ftp: reader returned an invalid count")
)

// LineReader reads lines from one direction of a control connection.
//
// A line ends with LF: CRLF and a bare LF are both accepted, and the
// returned line keeps its terminator so that a pass-through is byte-exact.
// Lines are reassembled however the stream was split into reads (even one
// byte per Read), so a segment boundary never decides where a line starts:
// line starts are counted from byte 0 of the stream.
//
// A line longer than PieceSize bytes (terminator included) is returned in
// pieces of PieceSize bytes, each but the last with more set; the first
// piece holds the line's start, which is all a filter needs to decide what
// the line is. At EOF ReadLine returns the rest, without terminator,
// together with io.EOF.
//
// A NUL byte gives ErrNUL as soon as it arrives, without waiting for the
// end of its line; it is sticky. Any other error from the underlying
// reader is returned once the complete lines read before it have been
// returned; it is not sticky, and the bytes already read are kept, so a
// caller may call ReadLine again (e.g. after a deadline timeout). A reader
// that returns neither bytes nor an error 100 times in a row gives
// io.ErrNoProgress.
//
// The zero value is not usable; use NewLineReader. A LineReader is not safe
// for concurrent use.
type LineReader struct {
	r io.Reader

	// buf[start:end] has been read from r but not returned yet.
	// buf[start:scanned] is known to hold neither LF nor NUL, so that
	// lines arriving one byte at a time are scanned once.
	buf                 [PieceSize]byte
	start, scanned, end int

	err  error // sticky: ErrNUL, io.EOF (all returned), errBadRead
	rerr error // an error from r, returned when no complete line is left
}

// NewLineReader returns a LineReader reading from r.
func NewLineReader(r io.Reader) *LineReader { return &LineReader{r: r} }

// ReadLine returns the next line, terminator included, or the next piece
// of a line longer than PieceSize: more reports that the line goes on
// after it. The returned slice is valid only until the next call of
// ReadLine; the caller must not keep or modify it.
//
// At EOF it returns the bytes after the last LF, if any, with io.EOF; the
// next calls return nil, io.EOF.
func (l *LineReader) ReadLine() (line []byte, more bool, err error) {
	if l.err != nil {
		return nil, false, l.err
	}
	empty := 0
	for {
		if l.scanned < l.end {
			w := l.buf[l.scanned:l.end]
			n := len(w)
			lf := bytes.IndexByte(w, '\n')
			if lf >= 0 {
				n = lf
			}
			if bytes.IndexByte(w[:n], 0) >= 0 {
				l.err = ErrNUL
				return nil, false, l.err
			}
			if lf >= 0 {
				next := l.scanned + lf + 1
				line := l.buf[l.start:next:next]
				l.start, l.scanned = next, next
				return line, false, nil
			}
			l.scanned = l.end
		}
		if l.end-l.start == len(l.buf) {
			// A full buffer and no LF: a piece of a long line.
			line := l.buf[l.start:l.end:l.end]
			l.start, l.scanned = l.end, l.end
			return line, true, nil
		}
		if err := l.rerr; err != nil {
			if err != io.EOF {
				l.rerr = nil
				return nil, false, err
			}
			l.err = io.EOF
			rest := l.buf[l.start:l.end:l.end]
			l.start, l.scanned = l.end, l.end
			if len(rest) == 0 {
				return nil, false, io.EOF
			}
			return rest, false, io.EOF
		}
		if l.fill() {
			empty = 0
			continue
		}
		if l.err != nil {
			return nil, false, l.err
		}
		if empty++; empty >= maxEmptyReads {
			return nil, false, io.ErrNoProgress
		}
	}
}

// fill reads once from r into the buffer, reporting whether it got bytes.
// An error is left in l.rerr, or in l.err if r misbehaved.
func (l *LineReader) fill() bool {
	if l.end == len(l.buf) {
		// What is left of the current line does not fill the buffer (or
		// ReadLine would have returned it as a piece), so moving it to
		// the front leaves room to read into.
		n := copy(l.buf[:], l.buf[l.start:l.end])
		l.scanned -= l.start
		l.start, l.end = 0, n
	}
	p := l.buf[l.end:]
	n, err := l.r.Read(p)
	if n < 0 || n > len(p) {
		l.err = errBadRead
		return false
	}
	l.end += n
	if err != nil {
		l.rerr = err
		return true // the error is news too: ReadLine must look at it
	}
	return n > 0
}

// Buffered returns the bytes read from the underlying reader but not yet
// returned as lines. A filter that stops parsing (e.g. after AUTH TLS is
// accepted) passes them on before copying the rest of the stream. After
// ErrNUL it starts with the offending line. The slice is valid until the
// next call of ReadLine.
func (l *LineReader) Buffered() []byte { return l.buf[l.start:l.end:l.end] }
