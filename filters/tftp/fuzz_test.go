package tftp

import (
	"bytes"
	"reflect"
	"strings"
	"testing"
)

// slowParseRequest is a reference parser, written differently: split on
// NUL, then check each rule of RFC 1350 and RFC 2347 in turn.
func slowParseRequest(b []byte) (Request, bool) {
	if len(b) < 2 || b[0] != 0 || (b[1] != 1 && b[1] != 2) {
		return Request{}, false
	}
	body := string(b[2:])
	if !strings.HasSuffix(body, "\x00") {
		return Request{}, false
	}
	parts := strings.Split(strings.TrimSuffix(body, "\x00"), "\x00")
	if len(parts) < 2 || len(parts)%2 != 0 || parts[0] == "" {
		return Request{}, false
	}
	switch strings.ToLower(parts[1]) {
	case "netascii", "octet", "mail":
	default:
		return Request{}, false
	}
	r := Request{Op: Opcode(b[1]), Filename: parts[0], Mode: parts[1]}
	for i := 2; i < len(parts); i += 2 {
		if parts[i] == "" {
			return Request{}, false
		}
		r.Options = append(r.Options, Option{parts[i], parts[i+1]})
	}
	return r, true
}

// FuzzParseRequest: ParseRequest never panics, agrees with the reference,
// and what it accepts is exactly what AppendRequest writes back.
func FuzzParseRequest(f *testing.F) {
	for _, seed := range []string{
		"\x00\x01file\x00octet\x00",                                    // a plain RRQ
		"\x00\x02up\x00netascii\x00tsize\x001048576\x00",               // a WRQ with its size
		"\x00\x01f\x00octet\x00blksize\x008192\x00windowsize\x008\x00", // options of RFC 2348 and 7440
		"\x00\x01f\x00octet\x00blksize\x00",                            // an option without its value
		"\x00\x01\x00octet\x00",                                        // no filename
		"\x00\x01f\x00OCTET",                                           // no final NUL
		"\x00\x03\x00\x01data",                                         // DATA, not a request
		"\x00\x06blksize\x001428\x00",                                  // OACK
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		got, err := ParseRequest(b)
		want, ok := slowParseRequest(b)
		if (err == nil) != ok {
			t.Fatalf("ParseRequest(%q) error %v; reference ok %v", b, err, ok)
		}
		if err != nil {
			return
		}
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("ParseRequest(%q) = %+v; reference %+v", b, got, want)
		}
		if back := AppendRequest(nil, got); !bytes.Equal(back, b) {
			t.Fatalf("round trip of %q gave %q", b, back)
		}
	})
}

// FuzzParseOACK: ParseOACK never panics, and the option helpers accept
// only values in their RFC ranges.
func FuzzParseOACK(f *testing.F) {
	f.Add([]byte("\x00\x06blksize\x008192\x00timeout\x001\x00"))
	f.Add([]byte("\x00\x06windowsize\x0065536\x00"))
	f.Add([]byte("\x00\x06tsize\x00"))
	f.Fuzz(func(t *testing.T, b []byte) {
		opts, err := ParseOACK(b)
		if err != nil {
			return
		}
		if n, ok := Blksize(opts); ok && (n < MinBlockSize || n > MaxBlockSize) {
			t.Fatalf("blksize %d accepted", n)
		}
		if n, ok := Timeout(opts); ok && (n < 1 || n > 255) {
			t.Fatalf("timeout %d accepted", n)
		}
		if n, ok := Windowsize(opts); ok && (n < 1 || n > 65535) {
			t.Fatalf("windowsize %d accepted", n)
		}
	})
}
