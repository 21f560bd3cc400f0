package callback_test

import (
	"bytes"
	"errors"
	"regexp"
	"strconv"
	"testing"

	"github.com/fwx-dev/fwx/filters/example/callback"
)

func TestParseCallback(t *testing.T) {
	for _, tt := range []struct {
		line       string
		port       uint16
		isCallback bool
		err        error
	}{
		{"CALLBACK 5001\r\n", 5001, true, nil},
		{"CALLBACK 1024\r\n", 1024, true, nil},
		{"CALLBACK 65535\r\n", 65535, true, nil},
		{"CALLBACK 5001\n", 5001, true, nil},   // bare "\n": a lenient server reads a line too
		{"CALLBACK 5001", 5001, true, nil},     // the last line of a stream
		{"callback 5001\r\n", 5001, true, nil}, // any case
		{" \tCALLBACK\t 05001 \r\n", 5001, true, nil},
		{"CALLBAC\u212a 5001\r\n", 5001, true, nil}, // KELVIN SIGN folds to k
		{"CALLBACK 1023\r\n", 0, true, callback.ErrBadPort},
		{"CALLBACK 80\r\n", 0, true, callback.ErrBadPort},
		{"CALLBACK 0\r\n", 0, true, callback.ErrBadPort},
		{"CALLBACK 65536\r\n", 0, true, callback.ErrBadPort},
		{"CALLBACK 005001\r\n", 0, true, callback.ErrBadPort},
		{"CALLBACK +5001\r\n", 0, true, callback.ErrBadPort},
		{"CALLBACK 5001 5002\r\n", 0, true, callback.ErrBadPort},
		{"CALLBACK 5001\r\r\n", 0, true, callback.ErrBadPort},
		{"CALLBACK\r\n", 0, true, callback.ErrBadPort},
		{"CALLBACKS 5001\r\n", 0, false, nil},
		{"HELLO\r\n", 0, false, nil},
		{"\r\n", 0, false, nil},
		{"", 0, false, nil},
	} {
		t.Run(strconv.Quote(tt.line), func(t *testing.T) {
			port, isCallback, err := callback.ParseCallback([]byte(tt.line))
			if port != tt.port || isCallback != tt.isCallback || !errors.Is(err, tt.err) {
				t.Errorf("ParseCallback = %d, %v, %v; want %d, %v, %v", port, isCallback, err, tt.port, tt.isCallback, tt.err)
			}
		})
	}
}

func TestAppendCallback(t *testing.T) {
	if got := string(callback.AppendCallback([]byte("x"), 40001)); got != "xCALLBACK 40001\r\n" {
		t.Errorf("AppendCallback = %q", got)
	}
}

// slowCallback is the reference for ParseCallback: the same grammar, by
// regular expression. (?i) folds case as bytes.EqualFold does, and (?s)
// lets '.' match the "\n" a fuzzed line may hold inside.
var (
	slowVerb = regexp.MustCompile(`(?s)^[ \t]*(?i:callback)(?:[ \t].*)?$`)
	slowPort = regexp.MustCompile(`(?s)^[ \t]*(?i:callback)[ \t]+([0-9]{1,5})[ \t]*$`)
)

func slowCallback(line []byte) (port uint16, isCallback bool, ok bool) {
	line = bytes.TrimSuffix(line, []byte("\n"))
	line = bytes.TrimSuffix(line, []byte("\r"))
	if !slowVerb.Match(line) {
		return 0, false, false
	}
	m := slowPort.FindSubmatch(line)
	if m == nil {
		return 0, true, false
	}
	n, err := strconv.Atoi(string(m[1]))
	if err != nil || n < callback.MinPort || n > 65535 {
		return 0, true, false
	}
	return uint16(n), true, true
}

// FuzzParseCallback: ParseCallback never panics, accepts only ports from
// 1024 to 65535, agrees with the reference, and what it accepts
// round-trips through AppendCallback.
func FuzzParseCallback(f *testing.F) {
	for _, seed := range []string{
		"CALLBACK 5001\r\n",      // the command
		"callback 65535\n",       // any case, bare "\n"
		"CALLBACK 1023\r\n",      // privileged port
		"CALLBACK 65536\r\n",     // out of range
		"CALLBACK 99999\r\n",     // five digits, out of range
		"CALLBACK 0005001\r\n",   // too many digits
		"\tCALLBACK  5001  \r\n", // blanks around
		"CALLBACK 5001 6001\r\n", // two arguments
		"CALLBAC\u212a 5001\r\n", // KELVIN SIGN
		"CALLBACK\v5001\r\n",     // not a blank: another verb
		"CALLBACK \xff\r\n",      // invalid UTF-8
		"HELLO world\r\n",        // not a command
		"\r\n",                   // empty line
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, line []byte) {
		port, isCallback, err := callback.ParseCallback(line)
		wantPort, wantCallback, wantOK := slowCallback(line)
		if isCallback != wantCallback || (err == nil) != (wantOK || !wantCallback) || port != wantPort {
			t.Fatalf("ParseCallback(%q) = %d, %v, %v; reference %d, %v, ok=%v", line, port, isCallback, err, wantPort, wantCallback, wantOK)
		}
		if !isCallback {
			if port != 0 || err != nil {
				t.Fatalf("ParseCallback(%q) = %d, %v for a line that is not a command", line, port, err)
			}
			return
		}
		if err != nil {
			if !errors.Is(err, callback.ErrBadPort) || port != 0 {
				t.Fatalf("ParseCallback(%q) = %d, %v; want 0, ErrBadPort", line, port, err)
			}
			return
		}
		if port < callback.MinPort {
			t.Fatalf("ParseCallback(%q) accepted port %d", line, port)
		}
		again, isCallback, err := callback.ParseCallback(callback.AppendCallback(nil, port))
		if again != port || !isCallback || err != nil {
			t.Fatalf("round trip of %d: %d, %v, %v", port, again, isCallback, err)
		}
	})
}
