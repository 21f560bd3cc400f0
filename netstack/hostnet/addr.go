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

// Uplink6 returns the IPv6 address fwx's sockets should use beside
// Uplink's IPv4 one on device: its first global unicast IPv6 address, if
// the host has an IPv6 default route through device (else IPv6 could not
// leave that way). It reads the system's configuration and sends nothing.
func Uplink6(device string) (netip.Addr, bool) {
	if dev, err := defaultRouteDevice6("/proc/net/ipv6_route"); err != nil || dev != device {
		return netip.Addr{}, false
	}
	ifi, err := net.InterfaceByName(device)
	if err != nil {
		return netip.Addr{}, false
	}
	addrs, err := ifi.Addrs()
	if err != nil {
		return netip.Addr{}, false
	}
	for _, a := range addrs {
		if p, err := netip.ParsePrefix(a.String()); err == nil && p.Addr().Is6() && !p.Addr().Is4In6() && p.Addr().IsGlobalUnicast() {
			return p.Addr(), true
		}
	}
	return netip.Addr{}, false
}

// defaultRouteDevice6 returns the interface of the first IPv6 default
// route in a /proc/net/ipv6_route table that goes out of a device (not
// the "unreachable" routes the kernel keeps on lo).
func defaultRouteDevice6(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", fmt.Errorf("hostnet: %w", err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		// dest dest_len src src_len next_hop metric refcnt use flags iface
		fields := strings.Fields(sc.Text())
		if len(fields) == 10 && fields[0] == strings.Repeat("0", 32) && fields[1] == "00" && fields[9] != "lo" {
			return fields[9], nil
		}
	}
	if err := sc.Err(); err != nil {
		return "", fmt.Errorf("hostnet: %s: %w", path, err)
	}
	return "", errors.New("hostnet: no IPv6 default route")
}
