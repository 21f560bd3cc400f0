package rtsp_test

import (
	"errors"
	"testing"

	"github.com/fwx-dev/fwx/filters/rtsp"
)

func TestParseHead(t *testing.T) {
	tests := []struct {
		name   string
		in     string
		err    error
		method string
		status int
		cseq   string
		sess   string
		length int64
	}{
		{name: "setup", in: "SETUP rtsp://s/t/trackID=1 RTSP/1.0\r\nCSeq: 3\r\nTransport: RTP/AVP;unicast;client_port=5000-5001\r\n\r\n",
			method: "SETUP", cseq: "3"},
		{name: "response", in: "RTSP/1.0 200 OK\r\nCSeq: 3\r\nSession: 12345678;timeout=60\r\nContent-Length: 12\r\n\r\n",
			status: 200, cseq: "3", sess: "12345678", length: 12},
		{name: "bare LF and folding", in: "RTSP/1.0 200 OK\nCSeq:\n 4\n\n", status: 200, cseq: "4"},
		{name: "no reason", in: "RTSP/1.0 200\r\n\r\n", status: 200},
		{name: "case", in: "PLAY rtsp://s/t RTSP/1.0\r\ncseq: 5\r\nsession: abc\r\n\r\n", method: "PLAY", cseq: "5", sess: "abc"},
		{name: "http", in: "POST / HTTP/1.1\r\nHost: x\r\n\r\n", err: rtsp.ErrMalformed},
		{name: "no end", in: "OPTIONS * RTSP/1.0\r\nCSeq: 1\r\n", err: rtsp.ErrMalformed},
		{name: "no colon", in: "OPTIONS * RTSP/1.0\r\nCSeq 1\r\n\r\n", err: rtsp.ErrMalformed},
		{name: "space in name", in: "OPTIONS * RTSP/1.0\r\nC Seq: 1\r\n\r\n", err: rtsp.ErrMalformed},
		{name: "continuation first", in: "OPTIONS * RTSP/1.0\r\n x: 1\r\n\r\n", err: rtsp.ErrMalformed},
		{name: "NUL", in: "OPTIONS * RTSP/1.0\r\nCSeq: 1\x00\r\n\r\n", err: rtsp.ErrNUL},
		{name: "bad status", in: "RTSP/1.0 2000 OK\r\n\r\n", err: rtsp.ErrMalformed},
		{name: "four words", in: "SETUP a b RTSP/1.0\r\n\r\n", err: rtsp.ErrMalformed},
		{name: "bad version", in: "SETUP rtsp://s RTSP/x\r\n\r\n", err: rtsp.ErrMalformed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h, err := rtsp.ParseHead([]byte(tt.in))
			if !errors.Is(err, tt.err) {
				t.Fatalf("error %v, want %v", err, tt.err)
			}
			if err != nil {
				return
			}
			if h.Method != tt.method || h.Status != tt.status {
				t.Errorf("method %q status %d, want %q %d", h.Method, h.Status, tt.method, tt.status)
			}
			if cseq, _ := h.CSeq(); cseq != tt.cseq {
				t.Errorf("CSeq %q, want %q", cseq, tt.cseq)
			}
			if s, _ := h.Session(); s != tt.sess {
				t.Errorf("session %q, want %q", s, tt.sess)
			}
			if n, err := h.ContentLength(); err != nil || n != tt.length {
				t.Errorf("content length %d, %v; want %d", n, err, tt.length)
			}
		})
	}
}

// TestHeadAmbiguity: a field the filter cannot read one way only is as
// good as absent (CSeq, Session), or an error that ends the connection
// (Content-Length, which decides where the next message starts).
func TestHeadAmbiguity(t *testing.T) {
	h, err := rtsp.ParseHead([]byte("RTSP/1.0 200 OK\r\nCSeq: 1\r\nCSeq: 2\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n"))
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := h.CSeq(); ok {
		t.Error("two CSeq fields read as one")
	}
	if _, err := h.ContentLength(); !errors.Is(err, rtsp.ErrMalformed) {
		t.Errorf("two Content-Length values: %v, want ErrMalformed", err)
	}
	for _, v := range []string{"-1", "+5", "5x", "0x10", "99999999999999999999"} {
		h, _ := rtsp.ParseHead([]byte("RTSP/1.0 200 OK\r\nContent-Length: " + v + "\r\n\r\n"))
		if _, err := h.ContentLength(); !errors.Is(err, rtsp.ErrMalformed) {
			t.Errorf("Content-Length %q: %v, want ErrMalformed", v, err)
		}
	}
	h, _ = rtsp.ParseHead([]byte("RTSP/1.0 200 OK\r\nCSeq: 12a\r\n\r\n"))
	if _, ok := h.CSeq(); ok {
		t.Error("CSeq 12a accepted")
	}
}

func TestHeadAppend(t *testing.T) {
	in := "SETUP rtsp://s/t RTSP/1.0\r\nCSeq: 3\r\nTransport: RTP/AVP;unicast;client_port=5000-5001\r\n\r\n"
	h, err := rtsp.ParseHead([]byte(in))
	if err != nil {
		t.Fatal(err)
	}
	if got := string(h.Append(nil)); got != in {
		t.Errorf("round trip:\n%q\nwant\n%q", got, in)
	}
	h.Set("transport", "RTP/AVP/TCP;interleaved=0-1")
	want := "SETUP rtsp://s/t RTSP/1.0\r\nCSeq: 3\r\nTransport: RTP/AVP/TCP;interleaved=0-1\r\n\r\n"
	if got := string(h.Append(nil)); got != want {
		t.Errorf("after Set:\n%q\nwant\n%q", got, want)
	}
}
