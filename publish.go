package fwx

import (
	"fmt"
	"net/netip"

	"github.com/fwx-dev/fwx/session"
	"github.com/fwx-dev/fwx/session/policy"
)

// Server publishing: a publish rule becomes a static mapping in the NAT
// table and, when its connections take the user-mode path, a listener on
// the outside.

// publish puts pub into effect.
func (fw *Firewall) publish(pub policy.Publication) error {
	listen, err := fw.listenAddr(pub)
	if err != nil {
		return err
	}
	if err := fw.table.Publish(pub.Transport, listen, pub.Server); err != nil {
		return fmt.Errorf("fwx: publish %q: %w", pub.Name, err)
	}
	if fw.userModePublication(pub) {
		if err := fw.user.publish(pub, listen); err != nil {
			fw.table.Unpublish(pub.Transport, listen, pub.Server)
			return err
		}
	}
	return nil
}

// listenAddr returns where publication pub listens: the address it names,
// which must be one of fwx's outside addresses of the server's family, or
// the first of those.
func (fw *Firewall) listenAddr(pub policy.Publication) (netip.AddrPort, error) {
	a := pub.Listen.Addr()
	v6 := pub.Server.Addr().Is6()
	if !a.IsValid() {
		for _, p := range fw.cfg.outsideAddrs() {
			if p.Addr().Is6() == v6 {
				return netip.AddrPortFrom(p.Addr(), pub.Listen.Port()), nil
			}
		}
		return netip.AddrPort{}, fmt.Errorf("fwx: publish %q: fwx has no outside address of the family of %v", pub.Name, pub.Server.Addr())
	}
	if !fw.table.IsExternal(a) || a.Is6() != v6 {
		return netip.AddrPort{}, fmt.Errorf("fwx: publish %q: %v is not one of fwx's outside addresses of the family of %v", pub.Name, a, pub.Server.Addr())
	}
	return pub.Listen, nil
}

// unpublish withdraws pub: no new connection comes in through it; those
// that came in live on until they end.
func (fw *Firewall) unpublish(pub policy.Publication) {
	if fw.userModePublication(pub) {
		fw.user.unpublish(pub.Name)
	}
	if listen, err := fw.listenAddr(pub); err == nil {
		fw.table.Unpublish(pub.Transport, listen, pub.Server)
	}
}

// userModePublication reports whether pub's connections are accepted on
// the user-mode path: a TCP publication whose connections a filter hooks,
// and every TCP one in host mode.
func (fw *Firewall) userModePublication(pub policy.Publication) bool {
	return pub.Transport == policy.TCP && (fw.sessions.Hooks(session.EventAcceptedConnection, pub.Filter) || fw.cfg.Host != nil)
}
