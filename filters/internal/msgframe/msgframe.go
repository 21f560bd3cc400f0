// Package msgframe reads one direction of a text protocol's stream the way
// its receiver does, message by message: RTSP (RFC 2326 §4) and SIP over
// TCP (RFC 3261 §18.3) frame their messages as HTTP does, a head up to an
// empty line and a body whose length the head gives. Message starts are
// counted from byte 0 of the stream, however the stream was cut into
// segments, so neither a segment boundary nor a body byte is ever taken
// for the start of a message: what NAT Slipstreaming relied on.
package msgframe

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
)

// Errors of Next; after them the stream cannot be framed any further.
var (
	// ErrHeadTooLong means a message head was longer than the limit.
	ErrHeadTooLong = errors.New("message head too long")
	// ErrNUL means a message head held a NUL byte, which no head of these
	// protocols may.
	ErrNUL = errors.New("NUL in message head")
)

// Kind is what Next read.
type Kind uint8

const (
	// Head is a message head: the start line and header lines, through
	// the empty line that ends them.
	Head Kind = iota
	// Frame is an interleaved binary frame (RTSP, RFC 2326 §10.12): "$",
	// a channel, a 16-bit length and that many bytes, whole.
	Frame
	// Blank is empty lines between messages, which a receiver skips
	// (RFC 2616 §4.1; SIP's keepalive, RFC 5626 §3.5.1).
	Blank
)

// String names the kind.
func (k Kind) String() string { return [...]string{"head", "frame", "blank"}[k] }

// maxFrame is the largest interleaved frame.
const maxFrame = 4 + 0xffff

// Reader frames one direction of a stream. It is not safe for concurrent
// use.
type Reader struct {
	br          *bufio.Reader
	maxHead     int
	interleaved bool
	buf         []byte // the current head or frame
}

// NewReader returns a Reader of r whose heads may be maxHead bytes long;
// with interleaved, a "$" where a message would start begins an
// interleaved frame (RTSP), else it begins a head (SIP).
func NewReader(r io.Reader, maxHead int, interleaved bool) *Reader {
	size := maxHead
	if interleaved {
		size = max(size, maxFrame)
	}
	return &Reader{br: bufio.NewReaderSize(r, max(maxHead, 4096)), maxHead: maxHead, interleaved: interleaved, buf: make([]byte, 0, size)}
}

// Next reads the next unit; its bytes are valid until the next call. A
// head's body is left to Body. A stream cut short inside a unit gives
// io.ErrUnexpectedEOF; a clean end between units io.EOF.
func (f *Reader) Next() (Kind, []byte, error) {
	first, err := f.br.Peek(1)
	if err != nil {
		return 0, nil, err
	}
	switch {
	case first[0] == '$' && f.interleaved:
		return f.frame()
	case first[0] == '\r' || first[0] == '\n':
		return f.blank()
	}
	return f.head()
}

// head reads lines up to and including an empty one.
func (f *Reader) head() (Kind, []byte, error) {
	f.buf = f.buf[:0]
	for {
		line, err := f.br.ReadSlice('\n')
		if len(f.buf)+len(line) > f.maxHead || errors.Is(err, bufio.ErrBufferFull) {
			return 0, nil, fmt.Errorf("%w: more than %d bytes", ErrHeadTooLong, f.maxHead)
		}
		if bytes.IndexByte(line, 0) >= 0 {
			return 0, nil, ErrNUL
		}
		f.buf = append(f.buf, line...)
		if err != nil {
			return 0, nil, unexpected(err)
		}
		if len(line) <= 2 && len(bytes.TrimRight(line, "\r\n")) == 0 {
			return Head, f.buf, nil
		}
	}
}

// blank reads the empty lines (CR and LF bytes) before a message.
func (f *Reader) blank() (Kind, []byte, error) {
	f.buf = f.buf[:0]
	for len(f.buf) < f.maxHead {
		b, err := f.br.Peek(1)
		if err != nil || (b[0] != '\r' && b[0] != '\n') {
			break
		}
		c, _ := f.br.ReadByte()
		f.buf = append(f.buf, c)
	}
	return Blank, f.buf, nil
}

// frame reads an interleaved frame whole.
func (f *Reader) frame() (Kind, []byte, error) {
	hdr, err := f.br.Peek(4)
	if err != nil {
		return 0, nil, unexpected(err)
	}
	n := 4 + (int(hdr[2])<<8 | int(hdr[3]))
	f.buf = f.buf[:n]
	if _, err := io.ReadFull(f.br, f.buf); err != nil {
		return 0, nil, unexpected(err)
	}
	return Frame, f.buf, nil
}

// Body copies the n bytes of the body that follows a head to w
// (io.Discard drops it).
func (f *Reader) Body(w io.Writer, n int64) error {
	if n == 0 {
		return nil
	}
	m, err := io.CopyN(w, f.br, n)
	if err == io.EOF && m < n {
		err = io.ErrUnexpectedEOF
	}
	return err
}

// Rest copies everything left, buffered bytes first, to w: the caller
// stops reading the stream as messages.
func (f *Reader) Rest(w io.Writer) error {
	_, err := io.Copy(w, f.br)
	return err
}

func unexpected(err error) error {
	if err == io.EOF {
		return io.ErrUnexpectedEOF
	}
	return err
}
