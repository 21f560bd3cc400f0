// Package filters registers fwx's application filters. A filter is a
// [session.Filter] registered under a name; the policy binds protocols to
// it by that name (a protocol definition's "filter" field), and a filter
// no protocol names stays off (RFC 4787 REQ-10: ALGs are off unless a rule
// enables them).
//
// Compiled-in filters register themselves in [Default] from their init
// functions; tests and embedders build a [Registry] of their own.
package filters
