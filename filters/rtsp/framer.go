package rtsp

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
)

// ErrHeadTooLong means a message head was longer than the filter's limit:
// the control connection ends there.
var ErrHeadTooLong = errors.New("filters/rtsp: message head too long")

// unit is what the framer read: a message head, an interleaved frame, or
// empty lines between messages.
type unit uint8

const (
	unitHead  unit = iota // a message head, through its empty line
	unitFrame             // an interleaved binary frame, whole
	unitBlank             // empty lines between messages
)

// maxFrame is the largest interleaved frame: "$", the channel, a 16-bit
// length and that many bytes (RFC 2326 §10.12).
const maxFrame = 4 + 0xffff

// framer reads one direction of an RTSP control connection the way its
// receiver does: a message head up to its empty line, the body its
// Content-Length announces, and, between messages, interleaved binary
// frames. Message starts are counted from byte 0 of the stream, however
// the stream was cut into segments, so no segment boundary and no body
// byte is ever taken for the start of a message.
type framer struct {
	br      *bufio.Reader
	maxHead int
	buf     []byte // the current head or frame
}

func newFramer(r io.Reader, maxHead int) *framer {
	return &framer{br: bufio.NewReaderSize(r, max(maxHead, 4096)), maxHead: maxHead, buf: make([]byte, 0, max(maxHead, maxFrame))}
}

// next reads the next unit. The bytes are valid until the next call. A
// head's body is not read: the caller passes it on with body.
func (f *framer) next() (unit, []byte, error) {
	first, err := f.br.Peek(1)
	if err != nil {
		return 0, nil, err
	}
	switch first[0] {
	case '$':
		return f.frame()
	case '\r', '\n':
		return f.blank()
	}
	return f.head()
}

// head reads lines up to and including an empty one.
func (f *framer) head() (unit, []byte, error) {
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
			if err == io.EOF {
				err = io.ErrUnexpectedEOF
			}
			return 0, nil, err
		}
		if len(line) <= 2 && len(bytes.TrimRight(line, "\r\n")) == 0 {
			return unitHead, f.buf, nil
		}
	}
}

// blank reads the empty lines between messages, which HTTP's rules let a
// receiver skip (RFC 2616 §4.1); the filter passes them on unchanged.
func (f *framer) blank() (unit, []byte, error) {
	f.buf = f.buf[:0]
	for len(f.buf) < f.maxHead {
		b, err := f.br.Peek(1)
		if err != nil || (b[0] != '\r' && b[0] != '\n') {
			break
		}
		c, _ := f.br.ReadByte()
		f.buf = append(f.buf, c)
	}
	return unitBlank, f.buf, nil
}

// frame reads an interleaved frame whole.
func (f *framer) frame() (unit, []byte, error) {
	hdr, err := f.br.Peek(4)
	if err != nil {
		if err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		return 0, nil, err
	}
	n := 4 + (int(hdr[2])<<8 | int(hdr[3]))
	f.buf = f.buf[:n]
	if _, err := io.ReadFull(f.br, f.buf); err != nil {
		if err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		return 0, nil, err
	}
	return unitFrame, f.buf, nil
}

// body copies the n bytes of a body to w (io.Discard to drop it).
func (f *framer) body(w io.Writer, n int64) error {
	if n == 0 {
		return nil
	}
	m, err := io.CopyN(w, f.br, n)
	if err == io.EOF && m < n {
		err = io.ErrUnexpectedEOF
	}
	return err
}

// rest copies everything left, buffered bytes first, to w: the filter
// stops reading the stream as RTSP.
func (f *framer) rest(w io.Writer) error {
	_, err := io.Copy(w, f.br)
	return err
}
