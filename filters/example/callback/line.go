package callback

import (
	"bytes"
	"errors"
	"strconv"
)

// The callback protocol's wire format. A client's line is a verb and its
// argument, separated by spaces or tabs, ending in "\r\n":
//
//	CALLBACK <port>\r\n
//
// The verb is case-insensitive; the port is 1 to 5 decimal digits.

// Protocol limits.
const (
	// MinPort is the lowest port a client may ask to be called on. Lower
	// ports are the client host's privileged services: a filter that
	// opened them would let a server reach, say, the client's SSH daemon.
	MinPort = 1024
	// DefaultMaxLine is the longest client line the filter reads,
	// terminator included, when Config.MaxLine is zero.
	DefaultMaxLine = 512
)

// ErrBadPort is returned by [ParseCallback] for a CALLBACK line whose
// argument is not a single port from MinPort to 65535.
var ErrBadPort = errors.New("filters/callback: bad port")

var verb = []byte("CALLBACK")

// ParseCallback parses one client line, with or without its "\n" or
// "\r\n". It reports whether the line is a CALLBACK command and, for one,
// the port it names, or ErrBadPort. A line that is not a command passes
// through the filter untouched.
//
// The parser is deliberately liberal about what counts as a command
// (leading blanks, any case, bare "\n"): a line the server might take for
// a command must never reach it unchecked.
func ParseCallback(line []byte) (port uint16, isCallback bool, err error) {
	line = bytes.TrimSuffix(line, []byte("\n"))
	line = bytes.TrimSuffix(line, []byte("\r"))
	line = bytes.TrimLeft(line, " \t")
	end := bytes.IndexAny(line, " \t")
	if end < 0 {
		end = len(line)
	}
	if !bytes.EqualFold(line[:end], verb) {
		return 0, false, nil
	}
	arg := bytes.Trim(line[end:], " \t")
	if len(arg) == 0 || len(arg) > 5 {
		return 0, true, ErrBadPort
	}
	n := 0
	for _, b := range arg {
		if b < '0' || b > '9' {
			return 0, true, ErrBadPort
		}
		n = n*10 + int(b-'0')
	}
	if n < MinPort || n > 65535 {
		return 0, true, ErrBadPort
	}
	return uint16(n), true, nil
}

// AppendCallback appends the command "CALLBACK <port>\r\n" to b.
func AppendCallback(b []byte, port uint16) []byte {
	b = append(b, "CALLBACK "...)
	b = strconv.AppendUint(b, uint64(port), 10)
	return append(b, "\r\n"...)
}
