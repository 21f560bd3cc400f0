package fwx

import (
	"fmt"
	"net/netip"

	"github.com/fwx-dev/fwx/nat"
	"github.com/fwx-dev/fwx/session"
	"github.com/fwx-dev/fwx/session/policy"
)

// Server publishing: a publish rule becomes a static mapping in the NAT
// table and, when its connections take the user-mode path, a listener on
// the outside.

// publish puts pub into effect.
func (fw *Firewall) publish(pub policy.Publication) error {
	out := fw.cfg.OutsideAddr.Addr()
	listen := pub.Listen
	if listen.Addr().IsValid() && listen.Addr() != out {
		return fmt.Errorf("fwx: publish %q: %v is not fwx's outside address %v", pub.Name, listen.Addr(), out)
	}
	if err := fw.table.Publish(natProto(pub.Transport), listen, pub.Server); err != nil {
		return fmt.Errorf("fwx: publish %q: %w", pub.Name, err)
	}
	if fw.userModePublication(pub) {
		if err := fw.user.publish(pub, netip.AddrPortFrom(out, listen.Port())); err != nil {
			fw.table.Unpublish(natProto(pub.Transport), listen, pub.Server)
			return err
		}
	}
	return nil
}

// unpublish withdraws pub: no new connection comes in through it; those
// that came in live on until they end.
func (fw *Firewall) unpublish(pub policy.Publication) {
	if fw.userModePublication(pub) {
		fw.user.unpublish(pub.Name)
	}
	fw.table.Unpublish(natProto(pub.Transport), pub.Listen, pub.Server)
}

// userModePublication reports whether pub's connections are accepted on
// the user-mode path: a TCP publication whose connections a filter hooks,
// and every TCP one in host mode.
func (fw *Firewall) userModePublication(pub policy.Publication) bool {
	return pub.Transport == policy.TCP && (fw.sessions.Hooks(session.EventAcceptedConnection, pub.Filter) || fw.cfg.Host != nil)
}

func natProto(t policy.Transport) nat.Proto {
	if t == policy.UDP {
		return nat.UDP
	}
	return nat.TCP
}
