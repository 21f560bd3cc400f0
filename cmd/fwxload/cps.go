package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"net/netip"
	"sync"
	"time"
)

// CPSConfig says what runCPS measures. Every field must be set.
type CPSConfig struct {
	// Target is the echo server to connect to.
	Target netip.AddrPort
	// Duration is how long workers start new connections; connections in
	// flight when it ends are completed.
	Duration time.Duration
	// Concurrency is the number of workers, each with one connection in
	// flight at a time.
	Concurrency int
	// Timeout bounds one connection from connect to close.
	Timeout time.Duration
}

// CPSResult is the outcome of runCPS, printed as JSON by `fwxload cps`.
type CPSResult struct {
	// Conns counts connections that completed: connect, 1 byte out, the
	// same byte back, close.
	Conns int `json:"conns"`
	// PerSec is Conns divided by Seconds.
	PerSec float64 `json:"per_sec"`
	// P50us and P99us are percentiles of one connection's duration, in µs.
	P50us float64 `json:"p50_us"`
	P99us float64 `json:"p99_us"`
	// Errors counts connections that failed at any step.
	Errors int `json:"errors"`
	// Seconds is the wall time of the measurement.
	Seconds float64 `json:"duration_s"`
	// FirstError describes the first failure, if any.
	FirstError string `json:"first_error,omitempty"`
}

// errBackoff is how long a worker pauses after a failed connection, so
// that a refused or unreachable target is not hammered in a busy loop that
// starves the middlebox being measured.
const errBackoff = 10 * time.Millisecond

// runCPS runs Concurrency workers that open, use and close connections to
// Target for Duration (or until ctx ends), and returns the totals.
func runCPS(ctx context.Context, cfg CPSConfig) CPSResult {
	type worker struct {
		lat      latencies
		errs     int
		firstErr error
	}
	workers := make([]worker, cfg.Concurrency)
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	raddr := net.TCPAddrFromAddrPort(cfg.Target)
	start := time.Now()
	deadline := start.Add(cfg.Duration)
	var wg sync.WaitGroup
	for i := range workers {
		w := &workers[i]
		wg.Go(func() {
			for ctx.Err() == nil && time.Now().Before(deadline) {
				t0 := time.Now()
				if err := oneConn(ctx, raddr, t0.Add(cfg.Timeout)); err != nil {
					if ctx.Err() != nil {
						return // interrupted, not a failure of the path
					}
					w.errs++
					if w.firstErr == nil {
						w.firstErr = err
					}
					time.Sleep(errBackoff)
					continue
				}
				w.lat.add(time.Since(t0))
			}
		})
	}
	wg.Wait()
	elapsed := time.Since(start)

	var all latencies
	var res CPSResult
	for i := range workers {
		w := &workers[i]
		all.merge(&w.lat)
		res.Errors += w.errs
		if res.FirstError == "" && w.firstErr != nil {
			res.FirstError = w.firstErr.Error()
		}
	}
	res.Conns = all.len()
	res.Seconds = math.Round(elapsed.Seconds()*1000) / 1000
	if res.Seconds > 0 {
		res.PerSec = math.Round(float64(res.Conns)/res.Seconds*10) / 10
	}
	p := all.percentiles(50, 99)
	res.P50us, res.P99us = p[0], p[1]
	return res
}

// oneConn connects to raddr, sends one byte, reads its echo and closes,
// all before deadline. The client closes first, as a short request would,
// so its side holds TIME_WAIT (scripts/bench turns on tcp_tw_reuse in the
// client namespace for that reason).
func oneConn(ctx context.Context, raddr *net.TCPAddr, deadline time.Time) error {
	d := net.Dialer{Deadline: deadline}
	c, err := d.DialContext(ctx, "tcp", raddr.String())
	if err != nil {
		return fmt.Errorf("fwxload: connect: %w", err)
	}
	defer c.Close()
	if err := c.SetDeadline(deadline); err != nil {
		return fmt.Errorf("fwxload: set deadline: %w", err)
	}
	if err := exchangeByte(c, 'x'); err != nil {
		return err
	}
	if err := c.Close(); err != nil {
		return fmt.Errorf("fwxload: close: %w", err)
	}
	return nil
}

// errEchoMismatch means the echo server sent back a different byte.
var errEchoMismatch = errors.New("fwxload: echo returned a different byte")

// exchangeByte writes b to c and reads one byte back, which must be b.
func exchangeByte(c net.Conn, b byte) error {
	buf := [1]byte{b}
	if _, err := c.Write(buf[:]); err != nil {
		return fmt.Errorf("fwxload: send: %w", err)
	}
	buf[0] = 0
	if _, err := io.ReadFull(c, buf[:]); err != nil {
		return fmt.Errorf("fwxload: receive: %w", err)
	}
	if buf[0] != b {
		return fmt.Errorf("%w: sent %q, got %q", errEchoMismatch, b, buf[0])
	}
	return nil
}
