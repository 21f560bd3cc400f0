package main

import (
	"net/netip"
	"strings"
)

// The names and addresses fwx run takes for its devices, checked before
// anything is created: each refusal says what to pass instead.

// checkIfName checks a network interface name as Linux takes it.
func checkIfName(flag, name string) error {
	switch {
	case name == "":
		return nil
	case len(name) > maxIfName:
		return usagef("fwx run: %s %q is %d bytes; Linux interface names have at most %d: pass a shorter name", flag, name, len(name), maxIfName)
	case name == "." || name == ".." || strings.ContainsAny(name, "/: \t\n") || strings.ContainsFunc(name, func(r rune) bool { return r < ' ' || r > '~' }):
		return usagef("fwx run: %s %q: not a valid interface name; pass letters, digits, '-', '_' or '.', such as fwx0", flag, name)
	}
	return nil
}

// addrList is a flag that takes addresses repeated or as a comma-separated
// list.
type addrList []string

func (l *addrList) String() string { return strings.Join(*l, ",") }

func (l *addrList) Set(s string) error {
	for _, a := range strings.Split(s, ",") {
		if a = strings.TrimSpace(a); a != "" {
			*l = append(*l, a)
		}
	}
	return nil
}

// parseOwnAddrs parses the addresses of flag with parseOwnAddr, refusing
// one given twice.
func parseOwnAddrs(flag string, l addrList, example string) ([]netip.Prefix, error) {
	var ps []netip.Prefix
	for _, s := range l {
		p, err := parseOwnAddr(flag, s, example)
		if err != nil {
			return nil, err
		}
		for _, q := range ps {
			if q.Addr() == p.Addr() {
				return nil, usagef("fwx run: %s %v given twice", flag, p.Addr())
			}
		}
		ps = append(ps, p)
	}
	return ps, nil
}

// parseOwnAddr parses an address fwx takes for itself on a network, with
// the network's prefix length: IPv4 or IPv6, a host address of that
// network, not its network (IPv6: subnet-router anycast) or broadcast
// address.
func parseOwnAddr(flag, s, example string) (netip.Prefix, error) {
	p, err := netip.ParsePrefix(s)
	if err != nil {
		if a, aerr := netip.ParseAddr(s); aerr == nil {
			return p, usagef("fwx run: %s %s: give the network's prefix length too, such as %s/24", flag, s, a)
		}
		return p, usagef("fwx run: %s %q: not an address with a prefix length; pass one such as %s", flag, s, example)
	}
	a := p.Addr()
	if a.Is4In6() || a.Zone() != "" {
		return p, usagef("fwx run: %s %s: write IPv4 as IPv4 and IPv6 without a zone, such as %s", flag, s, example)
	}
	if !a.IsGlobalUnicast() {
		return p, usagef("fwx run: %s %s: not a unicast address a host can own; pass one such as %s", flag, s, example)
	}
	if a.Is6() {
		if bits := p.Bits(); bits < 127 && a == p.Masked().Addr() {
			return p, usagef("fwx run: %s %s: %v is the subnet-router anycast address of %v (RFC 4291), not an address fwx can own; pass a host address in it, such as %v/%d", flag, s, a, p.Masked(), a.Next(), bits)
		}
		return p, nil
	}
	if bits := p.Bits(); bits <= 30 {
		network := p.Masked()
		host := network.Addr().Next()
		switch a {
		case network.Addr():
			return p, usagef("fwx run: %s %s: %v is the network address of %v, not an address fwx can own; pass a host address in it, such as %v/%d", flag, s, a, network, host, bits)
		case broadcast(network):
			return p, usagef("fwx run: %s %s: %v is the broadcast address of %v, not an address fwx can own; pass a host address in it, such as %v/%d", flag, s, a, network, host, bits)
		}
	}
	return p, nil
}

// broadcast returns the last address of an IPv4 network.
func broadcast(p netip.Prefix) netip.Addr {
	b := p.Masked().Addr().As4()
	for i := p.Bits(); i < 32; i++ {
		b[i/8] |= 0x80 >> (i % 8)
	}
	return netip.AddrFrom4(b)
}

// parseHostAddr parses host mode's --out-addr: an address, or a CIDR whose
// address is taken.
func parseHostAddr(s string) (netip.Prefix, error) {
	a, err := netip.ParseAddr(s)
	if err != nil {
		p, perr := netip.ParsePrefix(s)
		if perr != nil {
			return netip.Prefix{}, usagef("fwx run: --out-addr %q: not an address; pass the host address fwx's sockets bind to, such as 192.0.2.10", s)
		}
		a = p.Addr()
	}
	if a.Is4In6() || a.Zone() != "" || a.IsUnspecified() || a.IsMulticast() {
		return netip.Prefix{}, usagef("fwx run: --out-addr %s: pass one of the host's unicast addresses, IPv4 or IPv6", s)
	}
	return netip.PrefixFrom(a, a.BitLen()), nil
}

// checkSides refuses an outside that overlaps the inside: packets for one
// side would be taken for the other's.
func checkSides(in, out netip.Prefix, host bool) error {
	if !out.IsValid() || in.Addr().Is6() != out.Addr().Is6() {
		return nil
	}
	if host {
		if in.Contains(out.Addr()) {
			return usagef("fwx run: --out-addr %v is in the inside network %v: fwx's sockets would send into its own TUN; pass the address of the host's uplink", out.Addr(), in.Masked())
		}
		return nil
	}
	inNet, outNet := in.Masked(), out.Masked()
	switch {
	case in.Addr() == out.Addr():
		return usagef("fwx run: --in-addr and --out-addr are both %v: fwx needs an address on each side; pass the outside network's address as --out-addr", in.Addr())
	case inNet == outNet:
		return usagef("fwx run: --in-addr %v and --out-addr %v are on the same network %v: the inside and the outside must be different networks; pass an --out-addr on the outside network", in, out, inNet)
	case inNet.Overlaps(outNet):
		return usagef("fwx run: the inside network %v (--in-addr %v) and the outside network %v (--out-addr %v) overlap: addresses in both could not be told apart; pass prefixes that do not overlap", inNet, in, outNet, out)
	}
	return nil
}
