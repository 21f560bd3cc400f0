package main

import (
	"math"
	"slices"
	"time"
)

// latencies holds the samples of one measurement. Its zero value is empty
// and ready to use; it is not safe for concurrent use (each worker keeps
// its own and they are merged at the end, so the hot loop takes no lock).
type latencies struct {
	samples []time.Duration
}

// add records one sample.
func (l *latencies) add(d time.Duration) {
	l.samples = append(l.samples, d)
}

// merge appends the samples of o.
func (l *latencies) merge(o *latencies) {
	l.samples = append(l.samples, o.samples...)
}

// len returns the number of samples.
func (l *latencies) len() int {
	return len(l.samples)
}

// percentiles returns the given percentiles (0 < p <= 100) of the samples
// in microseconds, by the nearest-rank method: the smallest sample such
// that at least p % of all samples are less or equal. With no samples
// every result is 0. It sorts the samples in place.
func (l *latencies) percentiles(ps ...float64) []float64 {
	out := make([]float64, len(ps))
	n := len(l.samples)
	if n == 0 {
		return out
	}
	slices.Sort(l.samples)
	for i, p := range ps {
		rank := int(math.Ceil(p / 100 * float64(n)))
		rank = min(max(rank, 1), n)
		out[i] = micros(l.samples[rank-1])
	}
	return out
}

// micros converts d to microseconds, rounded to 0.1 µs so the JSON stays
// short without losing what a benchmark can resolve.
func micros(d time.Duration) float64 {
	return math.Round(float64(d)/float64(time.Microsecond)*10) / 10
}
