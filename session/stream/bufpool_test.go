package stream

import "testing"

// TestGetBuf checks the size classes: at least the size asked for, a power
// of two from 512 bytes up to 16 MiB, exact beyond.
func TestGetBuf(t *testing.T) {
	for _, tt := range []struct{ n, want int }{
		{1, 512},
		{512, 512},
		{513, 1024},
		{4097, 8192},
		{DefaultBufferSize, DefaultBufferSize},
		{16 << 20, 16 << 20},
		{16<<20 + 1, 16<<20 + 1},
	} {
		bp := getBuf(tt.n)
		if len(*bp) != tt.want {
			t.Errorf("getBuf(%d) has %d bytes, want %d", tt.n, len(*bp), tt.want)
		}
		putBuf(bp)
	}
}
