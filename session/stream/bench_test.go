package stream

import (
	"context"
	"io"
	"testing"
)

// benchChunk is the size of each Write in the benchmarks.
const benchChunk = 32 << 10

// benchStream writes b.N chunks to w in a goroutine, half-closes it, and
// reads r to its end; b.N*benchChunk bytes must come out.
func benchStream(b *testing.B, w, r Socket) {
	b.Helper()
	b.SetBytes(benchChunk)
	b.ReportAllocs()
	wbuf, rbuf := make([]byte, benchChunk), make([]byte, benchChunk)
	werr := make(chan error, 1)
	b.ResetTimer()
	go func() {
		for range b.N {
			if _, err := w.Write(wbuf); err != nil {
				werr <- err
				return
			}
		}
		werr <- w.CloseWrite()
	}()
	total := 0
	for {
		n, err := r.Read(rbuf)
		total += n
		if err == io.EOF {
			break
		}
		if err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	if err := <-werr; err != nil {
		b.Fatal(err)
	}
	if total != b.N*benchChunk {
		b.Fatalf("read %d bytes, want %d", total, b.N*benchChunk)
	}
}

// BenchmarkPipe measures one direction of a pipe of the default size.
func BenchmarkPipe(b *testing.B) {
	x, y := Pipe(0)
	benchStream(b, x, y)
	x.Close()
	y.Close()
}

// BenchmarkRelay measures Relay between two pipes:
// client ⇄ pipe ⇄ Relay ⇄ pipe ⇄ server.
func BenchmarkRelay(b *testing.B) {
	client, x := Pipe(0)
	y, server := Pipe(0)
	done := make(chan error, 1)
	go func() {
		_, _, err := Relay(context.Background(), x, y, 0)
		done <- err
	}()
	benchStream(b, client, server)
	server.CloseWrite()
	if err := <-done; err != nil {
		b.Fatal(err)
	}
	client.Close()
	server.Close()
}

// BenchmarkChain measures a chain of one pass-through stage (a Relay)
// between two pipes.
func BenchmarkChain(b *testing.B) {
	client, internal := Pipe(0)
	external, server := Pipe(0)
	done := make(chan error, 1)
	pass := func(ctx context.Context, internal, external Socket) error {
		_, _, err := Relay(ctx, internal, external, 0)
		return err
	}
	go func() {
		done <- Chain(context.Background(), internal, external, []Stage{pass}, 0)
	}()
	benchStream(b, client, server)
	server.CloseWrite()
	if err := <-done; err != nil {
		b.Fatal(err)
	}
	client.Close()
	server.Close()
}
