package nat

import (
	"fmt"
	"net/netip"
)

// What a policy reload needs from the table: publications withdrawn, and
// told from the flows that came in through them.

// Unpublish withdraws the publication of server on external that Publish
// made: no new flow is admitted through it. Its flows live on until they
// end (or the caller ends them); the external port is freed after the
// last one.
func (t *Table) Unpublish(p Proto, external, server netip.AddrPort) error {
	if !external.Addr().IsValid() {
		a, _ := t.firstExternal(server.Addr().Is6())
		external = netip.AddrPortFrom(a, external.Port())
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	m := t.owner(p, external)
	if m == nil || !m.static || t.addrPort(m.inside, m.v6) != server {
		return fmt.Errorf("nat: unpublish %v %v: %v is not published there", p, external, server)
	}
	t.setKindLocked(m, false, true)
	t.dropMappingLocked(m)
	return nil
}

// IsPublished reports whether f came in through a publication: an inbound
// flow on a published server's mapping, not one that a mapping's
// filtering or a pinhole admitted.
func (t *Table) IsPublished(f *Flow) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	return f.origin == Inbound && f.expect == nil && (f.mapping.static || f.mapping.withdrawn)
}
