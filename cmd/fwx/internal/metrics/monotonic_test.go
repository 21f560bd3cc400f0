package metrics

import "testing"

// TestMonotonic: a summed counter never goes back, though a flow that ends
// while a scrape adds up the live flows can be missed by that scrape (a
// counter that decreased would read as a restart to Prometheus).
func TestMonotonic(t *testing.T) {
	c := &Collector{high: make(map[highKey]uint64)}
	for _, tt := range []struct {
		name    string
		dir     string
		v, want uint64
	}{
		{"bytes", "sent", 100, 100},
		{"bytes", "sent", 90, 100},  // a flow was missed
		{"bytes", "received", 5, 5}, // each counter on its own
		{"bytes", "sent", 150, 150},
		{"packets", "sent", 7, 7},
	} {
		if got := c.monotonic(tt.name, tt.dir, tt.v); got != tt.want {
			t.Errorf("monotonic(%s, %s, %d) = %d, want %d", tt.name, tt.dir, tt.v, got, tt.want)
		}
	}
}
