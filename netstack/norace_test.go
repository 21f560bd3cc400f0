//go:build !race

package netstack

// flowRead is how much of the flow-control test's 64 MiB the reader
// reads: all of it.
const flowRead = flowTotal

// gsoKernelBytes is what the GSO kernel test sends in each run.
const gsoKernelBytes = 64 << 20
