//go:build race

package netstack

// flowRead is how much of the flow-control test's 64 MiB the reader
// reads. Under -race, with gVisor's reference-leak checker on, moving
// bytes is some fifteen times slower, so the test reads a part (still
// more than flowMaxLag) and then aborts the connection.
const flowRead = 24 << 20

// gsoKernelBytes is what the GSO kernel test sends in each run: less than
// without -race, where gVisor moves bytes some fifteen times slower.
const gsoKernelBytes = 16 << 20
