package main

import (
	"context"
	"fmt"
	"math"
	"net"
	"net/netip"
	"time"
)

// RRConfig says what runRR measures. Every field must be set.
type RRConfig struct {
	// Target is the echo server to connect to.
	Target netip.AddrPort
	// Duration is how long round trips are made.
	Duration time.Duration
	// Timeout bounds the connect and each round trip.
	Timeout time.Duration
}

// RRResult is the outcome of runRR, printed as JSON by `fwxload rr`.
type RRResult struct {
	// RTTs counts completed round trips.
	RTTs int `json:"rtts"`
	// P50us and P99us are percentiles of one round trip, in µs.
	P50us float64 `json:"p50_us"`
	P99us float64 `json:"p99_us"`
	// Seconds is the wall time of the round trips (not of the connect).
	Seconds float64 `json:"duration_s"`
}

// runRR opens one connection to Target and makes 1-byte request/response
// round trips on it for Duration. A failed connect or round trip ends the
// measurement with an error: on one connection there is nothing to go on
// with.
func runRR(ctx context.Context, cfg RRConfig) (RRResult, error) {
	d := net.Dialer{Timeout: cfg.Timeout}
	c, err := d.DialContext(ctx, "tcp", net.TCPAddrFromAddrPort(cfg.Target).String())
	if err != nil {
		return RRResult{}, fmt.Errorf("fwxload: connect: %w", err)
	}
	defer c.Close()
	// Closing the connection is how ctx interrupts a blocked read.
	stop := context.AfterFunc(ctx, func() { c.Close() })
	defer stop()

	var lat latencies
	start := time.Now()
	deadline := start.Add(cfg.Duration)
	b := byte('a')
	for {
		t0 := time.Now()
		if !t0.Before(deadline) || ctx.Err() != nil {
			break
		}
		if err := c.SetDeadline(t0.Add(cfg.Timeout)); err != nil {
			return RRResult{}, fmt.Errorf("fwxload: set deadline: %w", err)
		}
		if err := exchangeByte(c, b); err != nil {
			if ctx.Err() != nil {
				break
			}
			return RRResult{}, fmt.Errorf("after %d round trips: %w", lat.len(), err)
		}
		lat.add(time.Since(t0))
		// A changing byte makes a stale or misrouted echo visible.
		b = 'a' + (b-'a'+1)%26
	}
	res := RRResult{RTTs: lat.len(), Seconds: math.Round(time.Since(start).Seconds()*1000) / 1000}
	p := lat.percentiles(50, 99)
	res.P50us, res.P99us = p[0], p[1]
	return res, nil
}
