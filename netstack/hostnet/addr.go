package hostnet

import (
	"bufio"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"strings"
)

// Uplink finds the interface and address fwx's sockets should use: the
// first IPv4 address of device, or, when device is empty, of the
// interface of the main table's IPv4 default route. It reads the system's
// configuration and sends nothing.
func Uplink(device string) (string, netip.Addr, error) {
	if device == "" {
		d, err := defaultRouteDevice("/proc/net/route")
		if err != nil {
			return "", netip.Addr{}, err
		}
		device = d
	}
	ifi, err := net.InterfaceByName(device)
	if err != nil {
		return "", netip.Addr{}, fmt.Errorf("hostnet: uplink %s: %w", device, err)
	}
	addrs, err := ifi.Addrs()
	if err != nil {
		return "", netip.Addr{}, fmt.Errorf("hostnet: uplink %s: %w", device, err)
	}
	for _, a := range addrs {
		if p, err := netip.ParsePrefix(a.String()); err == nil && p.Addr().Is4() {
			return device, p.Addr(), nil
		}
	}
	return "", netip.Addr{}, fmt.Errorf("hostnet: uplink %s has no IPv4 address", device)
}

// errNoDefaultRoute is returned when the host has no IPv4 default route.
var errNoDefaultRoute = errors.New("hostnet: no IPv4 default route: name the uplink (--out-dev) or the address (--out-addr)")

// defaultRouteDevice returns the interface of the first IPv4 default route
// in a /proc/net/route table.
func defaultRouteDevice(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", fmt.Errorf("hostnet: %w", err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Scan() // the header line
	for sc.Scan() {
		// Iface Destination Gateway Flags RefCnt Use Metric Mask ...
		fields := strings.Fields(sc.Text())
		if len(fields) >= 8 && fields[1] == "00000000" && fields[7] == "00000000" {
			return fields[0], nil
		}
	}
	if err := sc.Err(); err != nil {
		return "", fmt.Errorf("hostnet: %s: %w", path, err)
	}
	return "", errNoDefaultRoute
}
