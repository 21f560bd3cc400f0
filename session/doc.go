// Package session will hold fwx's filter SDK, re-created from the
// Firewall-service SDK of ISA Server: Session, Connection, FirewallAction,
// BindForClient, RedirectConnections, AllowFutureConnect, data filters and
// events.
//
// It is empty until the SDK lands (issue 3). The policy that decides what a
// client may do is in [github.com/fwx-dev/fwx/session/policy].
package session
