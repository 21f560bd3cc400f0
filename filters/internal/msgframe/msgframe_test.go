package msgframe

import (
	"bytes"
	"errors"
	"io"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"testing/iotest"
)

var contentLength = regexp.MustCompile(`(?im)^content-length:[ \t]*([0-9]{1,9})[ \t]*\r?$`)

// units reads r to its end as a receiver does, and returns what it saw:
// each unit and body, and the error that stopped it.
func units(r io.Reader, maxHead int) []string {
	f := NewReader(r, maxHead, true)
	var out []string
	for {
		kind, b, err := f.Next()
		if err != nil {
			if !errors.Is(err, io.EOF) {
				out = append(out, "error: "+err.Error())
			}
			return out
		}
		out = append(out, kind.String()+": "+string(b))
		if kind != Head {
			continue
		}
		var n int64
		if m := contentLength.FindSubmatch(b); m != nil {
			n, _ = strconv.ParseInt(string(m[1]), 10, 64)
		}
		var body bytes.Buffer
		if err := f.Body(&body, n); err != nil {
			out = append(out, "body error: "+err.Error())
			return out
		}
		out = append(out, "body: "+body.String())
	}
}

// chunked returns reads of at most n bytes.
type chunked struct {
	r io.Reader
	n int
}

func (c chunked) Read(p []byte) (int, error) { return c.r.Read(p[:min(len(p), c.n)]) }

func TestReader(t *testing.T) {
	stream := "OPTIONS * RTSP/1.0\r\nCSeq: 1\r\n\r\n" +
		"\r\n" +
		"ANNOUNCE rtsp://s/t RTSP/1.0\r\nCSeq: 2\r\nContent-Length: 27\r\n\r\n" +
		"SETUP rtsp://x RTSP/1.0\r\n\r\n" + // a body, never a message
		"$\x00\x00\x03abc" +
		"SETUP rtsp://s/t RTSP/1.0\nCSeq: 3\n\n"
	want := []string{
		"head: OPTIONS * RTSP/1.0\r\nCSeq: 1\r\n\r\n", "body: ",
		"blank: \r\n",
		"head: ANNOUNCE rtsp://s/t RTSP/1.0\r\nCSeq: 2\r\nContent-Length: 27\r\n\r\n", "body: SETUP rtsp://x RTSP/1.0\r\n\r\n",
		"frame: $\x00\x00\x03abc",
		"head: SETUP rtsp://s/t RTSP/1.0\nCSeq: 3\n\n", "body: ",
	}
	for _, r := range []io.Reader{strings.NewReader(stream), iotest.OneByteReader(strings.NewReader(stream)), chunked{strings.NewReader(stream), 7}} {
		if got := units(r, 8192); strings.Join(got, "|") != strings.Join(want, "|") {
			t.Errorf("units:\n%q\nwant\n%q", got, want)
		}
	}
}

func TestReaderLimits(t *testing.T) {
	long := "OPTIONS * RTSP/1.0\r\nX: " + strings.Repeat("a", 300) + "\r\n\r\n"
	if got := units(strings.NewReader(long), 256); len(got) != 1 || !strings.Contains(got[0], ErrHeadTooLong.Error()) {
		t.Errorf("a 330-byte head with a 256-byte limit: %q", got)
	}
	if got := units(strings.NewReader(long), 512); len(got) != 2 {
		t.Errorf("a 330-byte head with a 512-byte limit: %q", got)
	}
	if got := units(strings.NewReader("OPTIONS * RTSP/1.0\r\nX: \x00\r\n\r\n"), 512); len(got) != 1 || !strings.Contains(got[0], ErrNUL.Error()) {
		t.Errorf("NUL: %q", got)
	}
	for _, cut := range []string{"OPTIONS * RTSP/1.0\r\n", "$\x00\x00\x05ab", "RTSP/1.0 200 OK\r\nContent-Length: 5\r\n\r\nab"} {
		got := units(strings.NewReader(cut), 512)
		if last := got[len(got)-1]; !strings.Contains(last, io.ErrUnexpectedEOF.Error()) {
			t.Errorf("%q cut short: %q, want an unexpected EOF", cut, got)
		}
	}
}

// FuzzReader: where messages start never depends on how the stream was
// cut into reads (segments): the units read at once, a byte at a time and
// in chunks of any size are the same.
func FuzzReader(f *testing.F) {
	f.Add([]byte("OPTIONS * RTSP/1.0\r\nCSeq: 1\r\n\r\n$\x00\x00\x01xRTSP/1.0 200 OK\r\nContent-Length: 3\r\n\r\nabc"), uint8(3))
	f.Add([]byte("POST / HTTP/1.1\r\nContent-Length: 40\r\n\r\nREGISTER sip:x SIP/2.0\r\nContact: <sip:a>\r\n\r\n"), uint8(1))
	f.Fuzz(func(t *testing.T, b []byte, n uint8) {
		whole := units(bytes.NewReader(b), 256)
		if got := units(iotest.OneByteReader(bytes.NewReader(b)), 256); strings.Join(got, "\x00") != strings.Join(whole, "\x00") {
			t.Fatalf("a byte at a time:\n%q\nat once:\n%q", got, whole)
		}
		if got := units(chunked{bytes.NewReader(b), int(n%64) + 1}, 256); strings.Join(got, "\x00") != strings.Join(whole, "\x00") {
			t.Fatalf("in chunks of %d:\n%q\nat once:\n%q", n%64+1, got, whole)
		}
	})
}

// TestNotInterleaved: without interleaved frames (SIP), a "$" starts a
// head like any other byte.
func TestNotInterleaved(t *testing.T) {
	f := NewReader(strings.NewReader("$\x01\x01abc\r\n\r\n"), 512, false)
	kind, b, err := f.Next()
	if err != nil || kind != Head || string(b) != "$\x01\x01abc\r\n\r\n" {
		t.Errorf("%v %q %v, want the whole head", kind, b, err)
	}
}
