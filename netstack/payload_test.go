package netstack

import (
	"bytes"
	"slices"
	"testing"
)

// TestPayload checks how payload cuts a packet into gVisor views: the
// headers in a view of headView bytes, the data in views whose chunks (a
// power of two each) are at most an eighth empty where that takes at most
// dataViews views; and that the views hold the packet unchanged.
func TestPayload(t *testing.T) {
	for _, tc := range []struct {
		size  int
		views []int
	}{
		{2 * headView, []int{2 * headView}},
		{1500, []int{headView, 1500 - headView}},
		{5000, []int{headView, 5000 - headView}}, // under minDataView
		{9000, []int{headView, 8192, 9000 - headView - 8192}},
		{40000, []int{headView, 32768, 40000 - headView - 32768}}, // not one chunk of 65536
		{50000, []int{headView, 32768, 16384, 50000 - headView - 32768 - 16384}},
		{65535, []int{headView, 65535 - headView}}, // fills its chunk
	} {
		p := make([]byte, tc.size)
		for i := range p {
			p[i] = byte(i * 13)
		}
		b := payload(p)
		var sizes []int
		views := b.AsViewList()
		for v := views.Front(); v != nil; v = v.Next() {
			sizes = append(sizes, v.Size())
		}
		if !slices.Equal(sizes, tc.views) {
			t.Errorf("%d bytes: views of %v bytes, want %v", tc.size, sizes, tc.views)
		}
		if got := b.Flatten(); !bytes.Equal(got, p) {
			t.Errorf("%d bytes: the views do not hold the packet", tc.size)
		}
		b.Release()
	}
}

// FuzzPayload: payload keeps every byte of any packet, in at most
// 1+dataViews views.
func FuzzPayload(f *testing.F) {
	f.Add(1500)
	f.Add(40000)
	f.Fuzz(func(t *testing.T, size int) {
		if size < 1 || size > 65535 {
			return
		}
		p := make([]byte, size)
		for i := range p {
			p[i] = byte(i * 7)
		}
		b := payload(p)
		defer b.Release()
		if got := b.Flatten(); !bytes.Equal(got, p) {
			t.Fatalf("%d bytes: the views do not hold the packet", size)
		}
		n := 0
		views := b.AsViewList()
		for v := views.Front(); v != nil; v = v.Next() {
			n++
		}
		if n > 1+dataViews {
			t.Fatalf("%d bytes in %d views", size, n)
		}
	})
}
