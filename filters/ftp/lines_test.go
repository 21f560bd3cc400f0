package ftp

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"strings"
	"testing"
	"testing/iotest"
)

// readers are the ways a stream can be split into reads: each test input is
// read through all of them and must give the same lines.
var readers = []struct {
	name string
	wrap func(io.Reader) io.Reader
}{
	{"whole", func(r io.Reader) io.Reader { return r }},
	{"one byte", iotest.OneByteReader},
	{"half", iotest.HalfReader},
	{"data with EOF", iotest.DataErrReader},
	{"chunks of 7", func(r io.Reader) io.Reader { return &chunkReader{r: r, n: 7} }},
	{"chunks of 511", func(r io.Reader) io.Reader { return &chunkReader{r: r, n: 511} }},
	{"chunks of 4095", func(r io.Reader) io.Reader { return &chunkReader{r: r, n: PieceSize - 1} }},
}

// chunkReader reads at most n bytes at a time.
type chunkReader struct {
	r io.Reader
	n int
}

func (c *chunkReader) Read(p []byte) (int, error) { return c.r.Read(p[:min(len(p), c.n)]) }

// readAll reads lines until the first error and returns them as slowLines.
func readAll(t testing.TB, lr *LineReader) []slowLine {
	t.Helper()
	var got []slowLine
	for range 100000 {
		line, more, err := lr.ReadLine()
		if err == nil && len(line) == 0 {
			t.Fatal("ReadLine returned an empty line without error")
		}
		got = append(got, slowLine{string(line), more, err})
		if err != nil {
			return got
		}
	}
	t.Fatal("ReadLine never returned an error")
	return nil
}

func TestLineReader(t *testing.T) {
	long := func(n int) string { return strings.Repeat("a", n) }
	many := func(n, size int) (string, []slowLine) {
		var b strings.Builder
		var want []slowLine
		for i := range n {
			l := strings.Repeat(string(rune('a'+i%26)), size-2) + "\r\n"
			b.WriteString(l)
			want = append(want, slowLine{l, false, nil})
		}
		return b.String(), append(want, slowLine{"", false, io.EOF})
	}
	pipelined, pipelinedWant := many(100, 97)
	bigLines, bigLinesWant := many(20, PieceSize)
	eof := slowLine{"", false, io.EOF}
	line := func(s string) slowLine { return slowLine{s, false, nil} }
	piece := func(s string) slowLine { return slowLine{s, true, nil} }

	tests := []struct {
		name string
		in   string
		want []slowLine
	}{
		{"crlf", "USER anonymous\r\nPASS x\r\n", []slowLine{line("USER anonymous\r\n"), line("PASS x\r\n"), eof}},
		{"bare lf", "USER anonymous\nPASS x\n", []slowLine{line("USER anonymous\n"), line("PASS x\n"), eof}},
		{"mixed terminators", "A\r\nB\nC\r\n", []slowLine{line("A\r\n"), line("B\n"), line("C\r\n"), eof}},
		{"empty lines", "\n\r\n\n", []slowLine{line("\n"), line("\r\n"), line("\n"), eof}},
		{"cr alone ends nothing", "PASV\rPORT 1\r\n", []slowLine{line("PASV\rPORT 1\r\n"), eof}},
		{"empty input", "", []slowLine{eof}},
		{"eof mid-line", "QUIT\r\nNOO", []slowLine{line("QUIT\r\n"), {"NOO", false, io.EOF}}},
		{"eof after cr", "QUIT\r", []slowLine{{"QUIT\r", false, io.EOF}}},
		{"exactly PieceSize", long(PieceSize-2) + "\r\n", []slowLine{line(long(PieceSize-2) + "\r\n"), eof}},
		{"exactly PieceSize bare lf", long(PieceSize-1) + "\n", []slowLine{line(long(PieceSize-1) + "\n"), eof}},
		{"PieceSize+1", long(PieceSize-1) + "\r\n", []slowLine{piece(long(PieceSize-1) + "\r"), line("\n"), eof}},
		{"three pieces", "CWD " + long(2*PieceSize+96) + "\r\nPWD\r\n", []slowLine{
			piece("CWD " + long(PieceSize-4)), piece(long(PieceSize)), line(long(100) + "\r\n"), line("PWD\r\n"), eof}},
		{"long line after a good line", "NOOP\r\n" + long(PieceSize+10) + "\r\n", []slowLine{
			line("NOOP\r\n"), piece(long(PieceSize)), line(long(10) + "\r\n"), eof}},
		{"PieceSize-1 at eof", long(PieceSize - 1), []slowLine{{long(PieceSize - 1), false, io.EOF}}},
		{"PieceSize at eof", long(PieceSize), []slowLine{piece(long(PieceSize)), eof}},
		{"nul", "PO\x00RT 1,2,3,4,5,6\r\n", []slowLine{{"", false, ErrNUL}}},
		{"nul after a good line", "NOOP\r\nPO\x00RT\r\n", []slowLine{line("NOOP\r\n"), {"", false, ErrNUL}}},
		{"nul at eof", "NOOP\r\nab\x00", []slowLine{line("NOOP\r\n"), {"", false, ErrNUL}}},
		{"nul before lf", "NOOP\x00\n", []slowLine{{"", false, ErrNUL}}},
		{"nul in the second piece", long(PieceSize) + "\x00\n", []slowLine{piece(long(PieceSize)), {"", false, ErrNUL}}},
		{"pipelined past the buffer", pipelined, pipelinedWant},
		{"PieceSize lines past the buffer", bigLines, bigLinesWant},
		{"binary bytes pass", "SITE \xff\xfe\x01\r\n", []slowLine{line("SITE \xff\xfe\x01\r\n"), eof}},
	}
	for _, tt := range tests {
		// The reference must agree with the table, so the fuzz test that
		// relies on it checks what the table says.
		if ref := slowReadLines([]byte(tt.in)); !equalLines(ref, tt.want) {
			t.Fatalf("%s: slowReadLines: %s", tt.name, diffLines(ref, tt.want))
		}
		for _, rd := range readers {
			t.Run(tt.name+"/"+rd.name, func(t *testing.T) {
				got := readAll(t, NewLineReader(rd.wrap(strings.NewReader(tt.in))))
				if !equalLines(got, tt.want) {
					t.Fatal(diffLines(got, tt.want))
				}
			})
		}
	}
}

// diffLines describes the first difference between got and want, short
// enough to read when thousands of lines agree.
func diffLines(got, want []slowLine) string {
	for i := range min(len(got), len(want)) {
		if got[i] != want[i] {
			return fmt.Sprintf("result %d: got %v, want %v", i, got[i], want[i])
		}
	}
	return fmt.Sprintf("got %d results, want %d (the last: got %v, want %v)",
		len(got), len(want), got[len(got)-1], want[len(want)-1])
}

func equalLines(a, b []slowLine) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// TestLineReaderSticky checks that the end of a stream and a violation stay
// put: the filter must not be able to resume parsing after them.
func TestLineReaderSticky(t *testing.T) {
	tests := []struct {
		name string
		in   string
		err  error
	}{
		{"nul", "A\x00\r\nNOOP\r\n", ErrNUL},
		{"eof", "NOOP\r\n", io.EOF},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			lr := NewLineReader(strings.NewReader(tt.in))
			got := readAll(t, lr)
			if got[len(got)-1].err != tt.err {
				t.Fatalf("got %v, want the error %v", got, tt.err)
			}
			for range 3 {
				if line, _, err := lr.ReadLine(); line != nil || err != tt.err {
					t.Fatalf("after %v: ReadLine = %q, %v", tt.err, line, err)
				}
			}
		})
	}
}

// stopReader returns its chunks one per Read, then fails the test if read
// again: it proves that the LineReader decided without waiting for more.
type stopReader struct {
	t      testing.TB
	chunks []string
}

func (s *stopReader) Read(p []byte) (int, error) {
	if len(s.chunks) == 0 {
		s.t.Fatal("read past the point where the LineReader should have stopped")
	}
	n := copy(p, s.chunks[0])
	s.chunks = s.chunks[1:]
	return n, nil
}

// TestLineReaderEager checks that a NUL or the first piece of a long line
// is reported without waiting for the line's end, which a hostile peer may
// never send.
func TestLineReaderEager(t *testing.T) {
	tests := []struct {
		name   string
		chunks []string
		want   slowLine
	}{
		{"nul", []string{"PORT 1,2", "\x00"}, slowLine{"", false, ErrNUL}},
		{"long", []string{strings.Repeat("a", PieceSize-100), strings.Repeat("a", 100)}, slowLine{strings.Repeat("a", PieceSize), true, nil}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			lr := NewLineReader(&stopReader{t: t, chunks: tt.chunks})
			if line, more, err := lr.ReadLine(); (slowLine{string(line), more, err}) != tt.want {
				t.Fatalf("ReadLine = %q, %v, %v; want %v", line, more, err, tt.want)
			}
		})
	}
}

// errReader returns its steps in order: bytes and an error each.
type errReader struct {
	steps []struct {
		data string
		err  error
	}
}

func (e *errReader) Read(p []byte) (int, error) {
	if len(e.steps) == 0 {
		return 0, io.EOF
	}
	s := e.steps[0]
	e.steps = e.steps[1:]
	return copy(p, s.data), s.err
}

// TestLineReaderReadError checks that an error of the underlying reader
// comes after the complete lines read with it, is not sticky, and loses no
// bytes.
func TestLineReaderReadError(t *testing.T) {
	timeout := errors.New("i/o timeout")
	r := &errReader{steps: []struct {
		data string
		err  error
	}{{"NOOP\r\nST", timeout}, {"AT\r\n", nil}}}
	lr := NewLineReader(r)
	want := []slowLine{{"NOOP\r\n", false, nil}, {"", false, timeout}, {"STAT\r\n", false, nil}, {"", false, io.EOF}}
	for i, w := range want {
		line, _, err := lr.ReadLine()
		if string(line) != w.line || err != w.err {
			t.Fatalf("ReadLine %d = %q, %v; want %q, %v", i, line, err, w.line, w.err)
		}
	}
}

type funcReader func([]byte) (int, error)

func (f funcReader) Read(p []byte) (int, error) { return f(p) }

func TestLineReaderBrokenReader(t *testing.T) {
	t.Run("no progress", func(t *testing.T) {
		lr := NewLineReader(funcReader(func([]byte) (int, error) { return 0, nil }))
		if _, _, err := lr.ReadLine(); err != io.ErrNoProgress {
			t.Fatalf("err = %v, want io.ErrNoProgress", err)
		}
	})
	t.Run("count too large", func(t *testing.T) {
		lr := NewLineReader(funcReader(func(p []byte) (int, error) { return len(p) + 1, nil }))
		for range 2 {
			if _, _, err := lr.ReadLine(); err != errBadRead {
				t.Fatalf("err = %v, want errBadRead", err)
			}
		}
	})
	t.Run("negative count", func(t *testing.T) {
		lr := NewLineReader(funcReader(func([]byte) (int, error) { return -1, nil }))
		if _, _, err := lr.ReadLine(); err != errBadRead {
			t.Fatalf("err = %v, want errBadRead", err)
		}
	})
}

// TestLineReaderBuffered checks what a filter that stops parsing must pass
// on: everything read but not returned, e.g. a TLS ClientHello that came in
// the same read as "AUTH TLS".
func TestLineReaderBuffered(t *testing.T) {
	lr := NewLineReader(strings.NewReader("AUTH TLS\r\n\x16\x03\x01\x00\x05hello"))
	line, _, err := lr.ReadLine()
	if string(line) != "AUTH TLS\r\n" || err != nil {
		t.Fatalf("ReadLine = %q, %v", line, err)
	}
	if got, want := string(lr.Buffered()), "\x16\x03\x01\x00\x05hello"; got != want {
		t.Fatalf("Buffered = %q, want %q", got, want)
	}
	lr = NewLineReader(strings.NewReader("NO\x00OP\r\nX"))
	if _, _, err := lr.ReadLine(); err != ErrNUL {
		t.Fatalf("err = %v, want ErrNUL", err)
	}
	if got, want := string(lr.Buffered()), "NO\x00OP\r\nX"; got != want {
		t.Fatalf("Buffered after ErrNUL = %q, want %q", got, want)
	}
}

// TestLineReaderAppendSafe checks that appending to a returned line cannot
// overwrite the next one in the buffer.
func TestLineReaderAppendSafe(t *testing.T) {
	lr := NewLineReader(strings.NewReader("NOOP\r\nQUIT\r\n"))
	line, _, _ := lr.ReadLine()
	_ = append(line, "XXXXXX"...)
	if next, _, err := lr.ReadLine(); string(next) != "QUIT\r\n" || err != nil {
		t.Fatalf("second line = %q, %v", next, err)
	}
}

// repeatReader returns its chunks over and over, one per Read.
type repeatReader struct {
	chunks [][]byte
	i      int
}

func (r *repeatReader) Read(p []byte) (int, error) {
	n := copy(p, r.chunks[r.i%len(r.chunks)])
	r.i++
	return n, nil
}

func TestLineReaderNoAllocs(t *testing.T) {
	for _, rd := range []struct {
		name string
		r    io.Reader
	}{
		{"whole lines", &repeatReader{chunks: [][]byte{[]byte("PORT 192,0,2,10,4,1\r\n")}}},
		{"split lines", &repeatReader{chunks: [][]byte{[]byte("PORT 192,0,"), []byte("2,10,4,1\r\nNO"), []byte("OP\r\n")}}},
		{"long lines", &repeatReader{chunks: [][]byte{[]byte("CWD /" + strings.Repeat("d", 3000)), []byte(strings.Repeat("d", 3000) + "\r\n")}}},
	} {
		t.Run(rd.name, func(t *testing.T) {
			lr := NewLineReader(rd.r)
			n := testing.AllocsPerRun(1000, func() {
				if _, _, err := lr.ReadLine(); err != nil {
					t.Fatal(err)
				}
			})
			if n != 0 {
				t.Fatalf("%v allocations per ReadLine, want 0", n)
			}
		})
	}
}

// TestLineReaderThenParse reads a scripted control stream byte by byte and
// parses it, as the filter does.
func TestLineReaderThenParse(t *testing.T) {
	in := "USER anonymous\r\nPASS x\r\nPORT 192,0,2,10,4,1\r\nEPRT |2|2001:db8::10|6446|\r\nQUIT\r\n"
	lr := NewLineReader(iotest.OneByteReader(strings.NewReader(in)))
	var verbs []string
	var b bytes.Buffer
	for {
		line, _, err := lr.ReadLine()
		if err != nil {
			if err != io.EOF || len(line) != 0 {
				t.Fatalf("ReadLine = %q, %v", line, err)
			}
			break
		}
		b.Write(line)
		c, ok := ParseCommand(line)
		if !ok {
			t.Fatalf("ParseCommand(%q) failed", line)
		}
		verbs = append(verbs, c.Verb)
		switch c.Verb {
		case "PORT":
			if ap, err := ParsePORT(c.Arg); err != nil || ap.String() != "192.0.2.10:1025" {
				t.Fatalf("ParsePORT(%q) = %v, %v", c.Arg, ap, err)
			}
		case "EPRT":
			if ap, err := ParseEPRT(c.Arg); err != nil || ap.String() != "[2001:db8::10]:6446" {
				t.Fatalf("ParseEPRT(%q) = %v, %v", c.Arg, ap, err)
			}
		}
	}
	if got, want := strings.Join(verbs, " "), "USER PASS PORT EPRT QUIT"; got != want {
		t.Fatalf("verbs = %q, want %q", got, want)
	}
	if b.String() != in {
		t.Fatalf("lines do not concatenate to the input: %q", b.String())
	}
}
