package policy

import (
	"errors"
	"fmt"
	"slices"
	"strings"
)

// Checks that need more than the file: what the gateway running the policy
// provides (its registered filters), and warnings about rules that are
// valid but probably not what was meant.

// CheckFilters reports, with the line of each, the filters the policy's
// rules and publications use that are not among registered: a gateway
// refuses such a policy, since a protocol meant to be filtered would pass
// unfiltered or not at all. Its error joins one [*Error] per problem.
func (p *Policy) CheckFilters(registered []string) error {
	if p == nil {
		return nil
	}
	var errs []error
	for _, f := range p.filters {
		if slices.Contains(registered, f.name) {
			continue
		}
		known := "none are"
		if len(registered) > 0 {
			known = strings.Join(registered, ", ") + " are"
		}
		errs = append(errs, &Error{File: p.file, Line: f.at.line, Path: f.at.path,
			Msg: fmt.Sprintf("filter %q is not registered in this fwx%s (%s)", f.name, suggest(f.name, registered), known)})
	}
	return errors.Join(errs...)
}

// Warnings returns what is legal in the policy but likely wrong, each with
// its line: an allow rule that takes a filtered protocol's connections
// before the rule that gives them their filter, so that they bypass it.
func (p *Policy) Warnings() []*Error {
	if p == nil {
		return nil
	}
	return slices.Clone(p.warnings)
}

// shadows records a warning for each protocol with a filter in the last of
// rules that an earlier allow rule (or an earlier protocol of the same
// rule) matches, in part or whole, without that filter: those connections
// take the earlier rule and are never filtered (an "any" rule above the
// FTP rule). refs are the last rule's protocol references, one per entry
// of its protos.
func (r *resolver) shadows(rules []rule, defs []*ruleDef, refs []ref) {
	j := len(rules) - 1
	last := &rules[j]
	if last.action != Allow {
		return
	}
	for k := range last.protos {
		filtered := &last.protos[k]
		if filtered.filter == "" {
			continue
		}
	earlier:
		for i := 0; i <= j; i++ {
			ri := &rules[i]
			if ri.action != Allow || !ri.from.overlaps(&last.from) || !ri.to.overlaps(&last.to) {
				continue
			}
			for n := range ri.protos {
				if i == j && n == k {
					break
				}
				m := &ri.protos[n]
				if !m.overlaps(filtered) {
					continue
				}
				if m.filter == filtered.filter {
					continue earlier // filtered here too, whichever rule takes them
				}
				how := fmt.Sprintf("rule %q (line %d) lets protocol %q through first", ri.name, defs[i].at.line, m.name)
				if i == j {
					how = fmt.Sprintf("protocol %q, listed before it in the same rule, matches first", m.name)
				}
				r.warnings = append(r.warnings, &Error{File: r.d.file, Line: refs[k].at.line, Path: refs[k].at.path,
					Msg: fmt.Sprintf("connections of protocol %q bypass its filter %q: %s; put %q above it, or narrow it",
						filtered.name, filtered.filter, how, filtered.name)})
				break earlier
			}
		}
	}
}

// overlaps reports whether some flow could match both m and o.
func (m *protoMatch) overlaps(o *protoMatch) bool {
	common := m.transports & o.transports
	if common == 0 {
		return false
	}
	if common == bit(ICMP) || len(m.ports) == 0 || len(o.ports) == 0 {
		return true
	}
	for _, a := range m.ports {
		for _, b := range o.ports {
			if a.lo <= b.hi && b.lo <= a.hi {
				return true
			}
		}
	}
	return false
}

// overlaps reports whether some address could be in both s and o.
func (s *addrSet) overlaps(o *addrSet) bool {
	switch {
	case s.all && o.all:
		return true
	case s.all:
		return len(o.prefixes) > 0
	case o.all:
		return len(s.prefixes) > 0
	}
	for _, a := range s.prefixes {
		for _, b := range o.prefixes {
			if a.Overlaps(b) {
				return true
			}
		}
	}
	return false
}
