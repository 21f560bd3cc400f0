package tftp

import (
	"errors"
	"reflect"
	"testing"
)

func TestParseRequest(t *testing.T) {
	for _, tt := range []struct {
		name string
		in   string
		want Request
		err  bool
	}{
		{"rrq", "\x00\x01file\x00octet\x00", Request{Op: OpRRQ, Filename: "file", Mode: "octet"}, false},
		{"wrq netascii", "\x00\x02a/b\x00NetASCII\x00", Request{Op: OpWRQ, Filename: "a/b", Mode: "NetASCII"}, false},
		{"options", "\x00\x01f\x00octet\x00blksize\x001428\x00tsize\x000\x00windowsize\x008\x00",
			Request{Op: OpRRQ, Filename: "f", Mode: "octet", Options: []Option{{"blksize", "1428"}, {"tsize", "0"}, {"windowsize", "8"}}}, false},
		{"unknown option passes", "\x00\x01f\x00octet\x00x-vendor\x00\x00", Request{Op: OpRRQ, Filename: "f", Mode: "octet", Options: []Option{{"x-vendor", ""}}}, false},
		{"empty", "", Request{}, true},
		{"data", "\x00\x03\x00\x01", Request{}, true},
		{"no mode", "\x00\x01file\x00", Request{}, true},
		{"no final NUL", "\x00\x01file\x00octet", Request{}, true},
		{"empty filename", "\x00\x01\x00octet\x00", Request{}, true},
		{"bad mode", "\x00\x01f\x00binary\x00", Request{}, true},
		{"option without value", "\x00\x01f\x00octet\x00blksize\x00", Request{}, true},
		{"option without name", "\x00\x01f\x00octet\x00\x001\x00", Request{}, true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseRequest([]byte(tt.in))
			if tt.err {
				if !errors.Is(err, ErrMalformed) {
					t.Errorf("ParseRequest(%q) = %+v, %v; want ErrMalformed", tt.in, got, err)
				}
				return
			}
			if err != nil || !reflect.DeepEqual(got, tt.want) {
				t.Errorf("ParseRequest(%q) = %+v, %v; want %+v", tt.in, got, err, tt.want)
			}
		})
	}
}

func TestOptions(t *testing.T) {
	opts, err := ParseOACK([]byte("\x00\x06BLKSIZE\x008192\x00timeout\x003\x00windowsize\x0099999\x00"))
	if err != nil {
		t.Fatal(err)
	}
	if n, ok := Blksize(opts); n != 8192 || !ok {
		t.Errorf("blksize %d %v, want 8192 (names are case-insensitive)", n, ok)
	}
	if n, ok := Timeout(opts); n != 3 || !ok {
		t.Errorf("timeout %d %v, want 3", n, ok)
	}
	if _, ok := Windowsize(opts); ok {
		t.Error("windowsize 99999 accepted")
	}
	for _, bad := range []string{"7", "65465", "-1", "+8", "0x10", "", "99999999999"} {
		if _, ok := Blksize([]Option{{"blksize", bad}}); ok {
			t.Errorf("blksize %q accepted", bad)
		}
	}
	if _, err := ParseOACK([]byte("\x00\x06blksize\x00")); !errors.Is(err, ErrMalformed) {
		t.Errorf("OACK without a value: %v", err)
	}
	if opts, err := ParseOACK([]byte("\x00\x06")); err != nil || len(opts) != 0 {
		t.Errorf("empty OACK: %v %v", opts, err)
	}
}

func TestAppendError(t *testing.T) {
	b := AppendError(nil, ErrAccessViolation, "no")
	if OpcodeOf(b) != OpERROR || string(b) != "\x00\x05\x00\x02no\x00" {
		t.Errorf("AppendError = %q", b)
	}
	if code, ok := Block(b); code != ErrAccessViolation || !ok {
		t.Errorf("code %d", code)
	}
}
