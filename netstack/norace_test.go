//go:build !race

package netstack

// flowRead is how much of the flow-control test's 64 MiB the reader
// reads: all of it.
const flowRead = flowTotal
