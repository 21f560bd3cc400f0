package gateway

import (
	"fmt"
	"net/netip"

	"github.com/fwx-dev/fwx/session"
	"github.com/fwx-dev/fwx/session/policy"
)

// Server publishing: a publish rule becomes a static mapping in the NAT
// table and, when its connections take the user-mode path, a listener on
// the outside.

// Publish puts pub into effect.
func (g *Gateway) Publish(pub policy.Publication) error {
	listen, err := g.ListenAddr(pub)
	if err != nil {
		return err
	}
	if err := g.table.Publish(pub.Transport, listen, pub.Server); err != nil {
		return fmt.Errorf("fwx: publish %q: %w", pub.Name, err)
	}
	if g.userModePublication(pub) {
		if err := g.user.publish(pub, listen); err != nil {
			g.table.Unpublish(pub.Transport, listen, pub.Server)
			return err
		}
	}
	return nil
}

// ListenAddr returns where publication pub listens: the address it names,
// which must be one of fwx's outside addresses of the server's family, or
// the first of those.
func (g *Gateway) ListenAddr(pub policy.Publication) (netip.AddrPort, error) {
	a := pub.Listen.Addr()
	v6 := pub.Server.Addr().Is6()
	if !a.IsValid() {
		for _, p := range g.outsideAddrs {
			if p.Addr().Is6() == v6 {
				return netip.AddrPortFrom(p.Addr(), pub.Listen.Port()), nil
			}
		}
		return netip.AddrPort{}, fmt.Errorf("fwx: publish %q: fwx has no outside address of the family of %v", pub.Name, pub.Server.Addr())
	}
	if !g.table.IsExternal(a) || a.Is6() != v6 {
		return netip.AddrPort{}, fmt.Errorf("fwx: publish %q: %v is not one of fwx's outside addresses of the family of %v", pub.Name, a, pub.Server.Addr())
	}
	return pub.Listen, nil
}

// Unpublish withdraws pub: no new connection comes in through it; those
// that came in live on until they end.
func (g *Gateway) Unpublish(pub policy.Publication) {
	if g.userModePublication(pub) {
		g.user.unpublish(pub.Name)
	}
	if listen, err := g.ListenAddr(pub); err == nil {
		g.table.Unpublish(pub.Transport, listen, pub.Server)
	}
}

// userModePublication reports whether pub's connections are accepted on
// the user-mode path: a TCP publication whose connections a filter hooks,
// and every TCP one in host mode.
func (g *Gateway) userModePublication(pub policy.Publication) bool {
	return pub.Transport == policy.TCP && (g.sessions.Hooks(session.EventAcceptedConnection, pub.Filter) || g.host != nil)
}
