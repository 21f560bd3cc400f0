package hostnet

import (
	"os"
	"path/filepath"
	"testing"
)

// TestDefaultRouteDevices reads default routes from the kernel's route
// tables as /proc shows them.
func TestDefaultRouteDevices(t *testing.T) {
	dir := t.TempDir()
	write := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	route := write("route", `Iface	Destination	Gateway 	Flags	RefCnt	Use	Metric	Mask		MTU	Window	IRTT
eth0	0000A8C0	00000000	0001	0	0	0	00FFFFFF	0	0	0
wlan0	00000000	0100A8C0	0003	0	0	600	00000000	0	0	0
`)
	if dev, err := defaultRouteDevice(route); err != nil || dev != "wlan0" {
		t.Errorf("IPv4 default route: %q, %v; want wlan0", dev, err)
	}
	route6 := write("ipv6_route", `fd000000000000000000000000000000 40 00000000000000000000000000000000 00 00000000000000000000000000000000 00000100 00000001 00000000 00000001     eth0
00000000000000000000000000000000 00 00000000000000000000000000000000 00 00000000000000000000000000000000 ffffffff 00000001 00000000 00200200       lo
00000000000000000000000000000000 00 00000000000000000000000000000000 00 fd000000000000000000000000000001 00000400 00000002 00000000 00000003     eth1
`)
	if dev, err := defaultRouteDevice6(route6); err != nil || dev != "eth1" {
		t.Errorf("IPv6 default route: %q, %v; want eth1 (not lo's unreachable route)", dev, err)
	}
	none := write("none6", "fe800000000000000000000000000000 40 00000000000000000000000000000000 00 00000000000000000000000000000000 00000100 00000002 00000000 00000001     eth0\n")
	if dev, err := defaultRouteDevice6(none); err == nil {
		t.Errorf("no IPv6 default route: %q", dev)
	}
}
