package tftp

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// Opcode is a TFTP packet's type (RFC 1350 section 5, RFC 2347).
type Opcode uint16

// Opcodes.
const (
	OpRRQ   Opcode = 1 // read request
	OpWRQ   Opcode = 2 // write request
	OpDATA  Opcode = 3
	OpACK   Opcode = 4
	OpERROR Opcode = 5
	OpOACK  Opcode = 6 // option acknowledgment (RFC 2347)
)

var opNames = [...]string{OpRRQ: "RRQ", OpWRQ: "WRQ", OpDATA: "DATA", OpACK: "ACK", OpERROR: "ERROR", OpOACK: "OACK"}

// String returns the opcode's RFC name.
func (op Opcode) String() string {
	if int(op) < len(opNames) && opNames[op] != "" {
		return opNames[op]
	}
	return "op" + strconv.Itoa(int(op))
}

// Protocol limits.
const (
	// DefaultBlockSize is the size of a DATA block without the blksize
	// option (RFC 1350).
	DefaultBlockSize = 512
	// MinBlockSize and MaxBlockSize bound the blksize option (RFC 2348).
	MinBlockSize = 8
	MaxBlockSize = 65464
	// MaxPacket is the largest TFTP packet: a DATA header and the largest
	// block.
	MaxPacket = 4 + MaxBlockSize
)

// Error codes (RFC 1350 section 5, RFC 2347).
const (
	ErrNotDefined      = 0
	ErrAccessViolation = 2
	ErrIllegalOp       = 4
	ErrOptionRefused   = 8
)

// ErrMalformed is what the parsers return for bytes that are not a well
// formed packet of the kind asked for.
var ErrMalformed = errors.New("filters/tftp: malformed packet")

// Option is a request or OACK option (RFC 2347), as sent: names are
// case-insensitive, so compare them with [strings.EqualFold].
type Option struct {
	Name, Value string
}

// Request is a read or write request (RFC 1350, with RFC 2347 options).
type Request struct {
	Op       Opcode // OpRRQ or OpWRQ
	Filename string
	Mode     string // netascii, octet or mail, in any case
	Options  []Option
}

// OpcodeOf returns a packet's opcode, or 0 when it is too short to have one.
func OpcodeOf(b []byte) Opcode {
	if len(b) < 2 {
		return 0
	}
	return Opcode(binary.BigEndian.Uint16(b))
}

// Block returns the block number of a DATA or ACK packet (the error code
// of an ERROR), or false when b is too short.
func Block(b []byte) (uint16, bool) {
	if len(b) < 4 {
		return 0, false
	}
	return binary.BigEndian.Uint16(b[2:]), true
}

// ParseRequest parses an RRQ or WRQ: the opcode, then NUL-terminated
// filename, mode and option name/value pairs, and nothing after the last
// NUL. The filename must not be empty and the mode must be one of RFC
// 1350's; options are not interpreted (see [Blksize] and friends), so an
// option the filter does not know passes as the client sent it.
func ParseRequest(b []byte) (Request, error) {
	op := OpcodeOf(b)
	if op != OpRRQ && op != OpWRQ {
		return Request{}, fmt.Errorf("%w: opcode %v is not a request", ErrMalformed, op)
	}
	fields, err := strings0(b[2:])
	if err != nil {
		return Request{}, err
	}
	if len(fields) < 2 || len(fields)%2 != 0 {
		return Request{}, fmt.Errorf("%w: %d fields in a request", ErrMalformed, len(fields))
	}
	r := Request{Op: op, Filename: fields[0], Mode: fields[1]}
	switch {
	case r.Filename == "":
		return Request{}, fmt.Errorf("%w: empty filename", ErrMalformed)
	case !validMode(r.Mode):
		return Request{}, fmt.Errorf("%w: mode %q", ErrMalformed, r.Mode)
	}
	r.Options, err = options(fields[2:])
	return r, err
}

// ParseOACK parses an option acknowledgment: its option name/value pairs.
func ParseOACK(b []byte) ([]Option, error) {
	if OpcodeOf(b) != OpOACK {
		return nil, fmt.Errorf("%w: not an OACK", ErrMalformed)
	}
	if len(b) == 2 {
		return nil, nil // no option acknowledged
	}
	fields, err := strings0(b[2:])
	if err != nil {
		return nil, err
	}
	if len(fields)%2 != 0 {
		return nil, fmt.Errorf("%w: an option without a value", ErrMalformed)
	}
	return options(fields)
}

// AppendRequest appends r as a packet to b.
func AppendRequest(b []byte, r Request) []byte {
	b = binary.BigEndian.AppendUint16(b, uint16(r.Op))
	b = append(append(b, r.Filename...), 0)
	b = append(append(b, r.Mode...), 0)
	for _, o := range r.Options {
		b = append(append(b, o.Name...), 0)
		b = append(append(b, o.Value...), 0)
	}
	return b
}

// AppendError appends an ERROR packet with code and message to b.
func AppendError(b []byte, code uint16, msg string) []byte {
	b = binary.BigEndian.AppendUint16(b, uint16(OpERROR))
	b = binary.BigEndian.AppendUint16(b, code)
	return append(append(b, msg...), 0)
}

// strings0 splits NUL-terminated strings; the last byte must be a NUL, and
// no string may hold one (none can).
func strings0(b []byte) ([]string, error) {
	if len(b) == 0 || b[len(b)-1] != 0 {
		return nil, fmt.Errorf("%w: not NUL-terminated", ErrMalformed)
	}
	var out []string
	for len(b) > 0 {
		i := bytes.IndexByte(b, 0)
		out = append(out, string(b[:i]))
		b = b[i+1:]
	}
	return out, nil
}

func validMode(m string) bool {
	return strings.EqualFold(m, "netascii") || strings.EqualFold(m, "octet") || strings.EqualFold(m, "mail")
}

// options pairs name/value fields; an empty name is malformed (RFC 2347).
func options(fields []string) ([]Option, error) {
	if len(fields) == 0 {
		return nil, nil
	}
	out := make([]Option, 0, len(fields)/2)
	for i := 0; i+1 < len(fields); i += 2 {
		if fields[i] == "" {
			return nil, fmt.Errorf("%w: an option without a name", ErrMalformed)
		}
		out = append(out, Option{fields[i], fields[i+1]})
	}
	return out, nil
}

// option returns the value of the named option, the first if given twice.
func option(opts []Option, name string) (string, bool) {
	for _, o := range opts {
		if strings.EqualFold(o.Name, name) {
			return o.Value, true
		}
	}
	return "", false
}

// number returns a decimal option value in [lo, hi].
func number(opts []Option, name string, lo, hi int) (int, bool) {
	v, ok := option(opts, name)
	if !ok || v == "" || len(v) > 10 || strings.TrimLeft(v, "0123456789") != "" {
		return 0, false
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < lo || n > hi {
		return 0, false
	}
	return n, true
}

// Blksize returns the blksize option (RFC 2348) when it is valid.
func Blksize(opts []Option) (int, bool) { return number(opts, "blksize", MinBlockSize, MaxBlockSize) }

// Windowsize returns the windowsize option (RFC 7440) when it is valid.
func Windowsize(opts []Option) (int, bool) { return number(opts, "windowsize", 1, 65535) }

// Timeout returns the timeout option in seconds (RFC 2349) when it is
// valid.
func Timeout(opts []Option) (int, bool) { return number(opts, "timeout", 1, 255) }
