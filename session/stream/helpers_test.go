package stream

import (
	"errors"
	"io"
	"syscall"
	"testing"
)

// result is what a Read or Write returned, for calls run in a goroutine.
type result struct {
	n   int
	err error
}

// goWrite writes p to w in a goroutine and delivers the result on the
// returned channel.
func goWrite(w io.Writer, p []byte) <-chan result {
	c := make(chan result, 1)
	go func() {
		n, err := w.Write(p)
		c <- result{n, err}
	}()
	return c
}

// goRead reads once from r into a buffer of size n in a goroutine.
func goRead(r io.Reader, n int) <-chan result {
	c := make(chan result, 1)
	go func() {
		n, err := r.Read(make([]byte, n))
		c <- result{n, err}
	}()
	return c
}

// goReadAll reads r to its end in a goroutine.
func goReadAll(r io.Reader) <-chan readAllResult {
	c := make(chan readAllResult, 1)
	go func() {
		b, err := readAll(r)
		c <- readAllResult{b, err}
	}()
	return c
}

type readAllResult struct {
	data []byte
	err  error
}

// readAll is io.ReadAll; it reads through a small buffer so that many
// Reads happen.
func readAll(r io.Reader) ([]byte, error) {
	var out []byte
	buf := make([]byte, 1000)
	for {
		n, err := r.Read(buf)
		out = append(out, buf[:n]...)
		if err == io.EOF {
			return out, nil
		}
		if err != nil {
			return out, err
		}
	}
}

// isReset reports whether err is a connection reset.
func isReset(err error) bool { return errors.Is(err, syscall.ECONNRESET) }

// mustRead reads exactly len(want) bytes from r and compares them.
func mustRead(tb testing.TB, r io.Reader, want string) {
	tb.Helper()
	got := make([]byte, len(want))
	if _, err := io.ReadFull(r, got); err != nil {
		tb.Fatalf("read %q: %v (got %q)", want, err, got)
	}
	if string(got) != want {
		tb.Fatalf("read %q, want %q", got, want)
	}
}

// mustWrite writes s to w.
func mustWrite(tb testing.TB, w io.Writer, s string) {
	tb.Helper()
	if n, err := w.Write([]byte(s)); n != len(s) || err != nil {
		tb.Fatalf("write %q: %d, %v", s, n, err)
	}
}

// wantErr fails unless err is target (errors.Is).
func wantErr(tb testing.TB, what string, err, target error) {
	tb.Helper()
	if !errors.Is(err, target) {
		tb.Errorf("%s: error %v, want %v", what, err, target)
	}
}
