package session

import (
	"errors"
	"fmt"
	"net/netip"

	"github.com/fwx-dev/fwx/nat"
)

// FirewallAction is a permission granted in advance (ISA's
// IFWXFirewallAction): a future connect or a redirect. It is cancelled
// automatically when it is used (unless AllowMultiple), when it times out
// (with Timeout), and when its session ends.
type FirewallAction struct {
	s       *Session
	expect  *nat.Expectation // a pinhole, or
	factory *factory         // a data filter factory
	addr    netip.AddrPort
}

// Addr returns the address the action opened: for RedirectConnections the
// internal address the client connects to, for AllowFutureConnect the
// destination.
func (a *FirewallAction) Addr() netip.AddrPort { return a.addr }

// Cancel withdraws the permission. It returns ErrTerminating if the action
// had already been used up, timed out or cancelled.
func (a *FirewallAction) Cancel() error {
	if a.factory != nil {
		a.s.mu.Lock()
		delete(a.s.mu.actions, a)
		a.s.mu.Unlock()
		if !a.s.removeFactory(a.factory) {
			return fmt.Errorf("session: cancel factory for %v: %w", a.addr, ErrTerminating)
		}
		return nil
	}
	err := a.s.mgr.cfg.Table.Cancel(a.expect, a.s.mgr.cfg.Clock.Now())
	a.s.mu.Lock()
	delete(a.s.mu.actions, a)
	a.s.mu.Unlock()
	if errors.Is(err, nat.ErrPinholeGone) {
		return fmt.Errorf("session: cancel %v: %w", a.addr, ErrTerminating)
	}
	return err
}

// Arm lets a permission granted Unarmed admit its connection from now on.
// It returns ErrTerminating if the permission was used, timed out or
// cancelled meanwhile, and ErrNotSupported for a factory.
func (a *FirewallAction) Arm() error {
	if a.expect == nil {
		return fmt.Errorf("session: arm %v: %w", a.addr, ErrNotSupported)
	}
	if err := a.s.mgr.cfg.Table.Arm(a.expect, a.s.mgr.cfg.Clock.Now()); err != nil {
		return fmt.Errorf("session: arm %v: %w: %w", a.addr, ErrTerminating, err)
	}
	return nil
}

// Live reports whether the permission can still be used.
func (a *FirewallAction) Live() bool {
	if a.factory != nil {
		return a.s.wantsFilter(a.factory.Event, a.factory.Addr) // still registered
	}
	return a.s.mgr.cfg.Table.ExpectationLive(a.expect, a.s.mgr.cfg.Clock.Now())
}

// Used returns how many connections used a pinhole permission (0 for a
// factory).
func (a *FirewallAction) Used() int {
	if a.expect == nil {
		return 0
	}
	return a.s.mgr.cfg.Table.ExpectationUsed(a.expect)
}
