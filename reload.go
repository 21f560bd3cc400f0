package fwx

import (
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"time"

	"github.com/fwx-dev/fwx/nat"
	"github.com/fwx-dev/fwx/session/policy"
)

// ReloadReport says what a reload changed.
type ReloadReport struct {
	// Published and Withdrawn name the publish rules put into effect and
	// taken out (a changed rule is in both).
	Published, Withdrawn []string `json:",omitempty"`
	// Filters names the filters the new policy turned on.
	Filters []string `json:",omitempty"`
	// Strict is set when the new policy's options.reload is strict.
	Strict bool
	// Ended counts the flows ended because the new policy does not allow
	// them (strict only); Revoked counts the filters' grants (bound ports,
	// permissions) and user-mode connections ended with them.
	Ended, Revoked int
}

// ErrRestartNeeded means a reload was refused because the new policy
// changes a setting that takes effect only when fwx starts.
var ErrRestartNeeded = errors.New("takes effect only when fwx starts: restart fwx to change it, or keep the running value")

// Reload makes p the policy of the running firewall, at once: every flow
// that opens from then on is decided by it. Flows already open, and the
// grants filters made for them, live on, unless p's options.reload is
// strict: then those p would not allow end, each with its ended record.
// No packet of a flow that stays is delayed or lost: the switch is one
// pointer swap.
//
// A policy that fwx cannot run is refused, and the running one stays: a
// filter fwx does not have, a publication on an address that is not fwx's
// or on a port in use, a change of the options that take effect only at
// start (timeouts, filtering, nptv6). Each is found before anything changes,
// except a port in use: a strict reload ends the flows it would end before
// it publishes (so that a publication changed in place can take its port
// at once), and those stay ended if a publication then finds its port
// taken. Reload is safe to call from any goroutine.
func (fw *Firewall) Reload(p *policy.Policy) (ReloadReport, error) {
	fw.reloadMu.Lock()
	defer fw.reloadMu.Unlock()
	var r ReloadReport
	if err := CheckPolicy(p, fw.cfg.Filters); err != nil {
		return r, err
	}
	old := fw.policy()
	oldOpts, opts := old.Options(), p.Options()
	if oldOpts.Timeouts != opts.Timeouts {
		return r, fmt.Errorf("fwx: reload: options.timeouts changed (%s): %w", timeoutChanges(oldOpts.Timeouts, opts.Timeouts), ErrRestartNeeded)
	}
	if !slices.Equal(oldOpts.NPTv6, opts.NPTv6) {
		return r, fmt.Errorf("fwx: reload: options.nptv6 changed: %w", ErrRestartNeeded)
	}
	if oldOpts.Filtering != opts.Filtering {
		return r, fmt.Errorf("fwx: reload: options.filtering changed to %v (running %v): %w", opts.Filtering, oldOpts.Filtering, ErrRestartNeeded)
	}
	withdrawn, published := diffPublications(old.Publications(), p.Publications())
	for _, pub := range published {
		// Checked before anything changes: a reload refused for it
		// must not have ended a flow.
		if _, err := fw.gw.ListenAddr(pub); err != nil {
			return r, fmt.Errorf("fwx: reload: %w", err)
		}
	}
	r.Strict = opts.Reload == policy.ReloadStrict
	now := fw.clock.Now()

	// What ends is decided against the new policy before anything
	// changes; what opens meanwhile is checked again after the swap.
	var ending []*nat.Flow
	if r.Strict {
		for _, f := range fw.table.Flows() {
			if !fw.allows(p, f) {
				ending = append(ending, f)
			}
		}
	}

	before := len(fw.filtersOn)
	if err := fw.addFilters(p); err != nil {
		return r, err
	}
	r.Filters = slices.Clone(fw.filtersOn[before:])

	if r.Strict {
		// Connections through a withdrawn publication end first, so
		// that its server can be published anew at once.
		for _, f := range ending {
			fw.table.EndFlow(f, now)
		}
	}
	for _, pub := range withdrawn {
		fw.gw.Unpublish(pub)
	}
	for i, pub := range published {
		if err := fw.gw.Publish(pub); err != nil {
			// Undo: the running policy stays whole.
			for _, q := range published[:i] {
				fw.gw.Unpublish(q)
			}
			for _, q := range withdrawn {
				if perr := fw.gw.Publish(q); perr != nil {
					fw.cfg.Log.Error().Err(perr).Str("publish", q.Name).Msg("reload undone, but a withdrawn publication could not be restored")
				}
			}
			return ReloadReport{}, fmt.Errorf("fwx: reload: %w", err)
		}
	}
	for _, pub := range withdrawn {
		r.Withdrawn = append(r.Withdrawn, pub.Name)
	}
	for _, pub := range published {
		r.Published = append(r.Published, pub.Name)
	}

	fw.gw.SetPolicy(p)
	if r.Strict {
		// A flow the old policy let open while this ran goes too.
		for _, f := range fw.table.Flows() {
			if !fw.allows(p, f) {
				fw.table.EndFlow(f, now)
				ending = append(ending, f)
			}
		}
		r.Ended = len(ending)
		ended := make(map[*nat.Flow]bool, len(ending))
		for _, f := range ending {
			ended[f] = true
		}
		r.Revoked = fw.sessions.Revoke(func(f *nat.Flow) bool { return ended[f] })
	}
	return r, nil
}

// allows reports whether p would allow flow f as it is: its access rule,
// publication or grant, with the same application filter (a flow on the
// fast path that p would filter must not bypass the filter).
func (fw *Firewall) allows(p *policy.Policy, f *nat.Flow) bool {
	t := f.Proto()
	switch {
	case f.Expectation() != nil:
		// A filter's grant (an FTP data connection): its client may
		// still use the grant's protocol.
		return p.Permits(f.Inside().Addr(), f.Protocol()).Allow
	case f.Origin() == nat.Outbound:
		src, dst := f.Inside(), f.Target()
		if t == policy.ICMP {
			src, dst = netip.AddrPortFrom(src.Addr(), 0), netip.AddrPortFrom(dst.Addr(), 0)
		}
		d := p.Decide(policy.Flow{Transport: t, Direction: policy.Outbound, Src: src, Dst: dst})
		return d.Allow && d.Filter == f.Filter()
	case fw.table.IsPublished(f):
		pub, ok := p.Published(t, f.External(), f.Remote().Addr())
		return ok && pub.Server == f.Inside() && pub.Filter == f.Filter()
	}
	// Let in by a mapping's filtering: it lives with the mapping.
	return true
}

// diffPublications returns the publications of old that new lacks or
// changed, and those of new that old lacks or had otherwise.
func diffPublications(old, new []policy.Publication) (withdrawn, published []policy.Publication) {
	for _, o := range old {
		if !slices.Contains(new, o) {
			withdrawn = append(withdrawn, o)
		}
	}
	for _, n := range new {
		if !slices.Contains(old, n) {
			published = append(published, n)
		}
	}
	return withdrawn, published
}

// timeoutChanges lists the timeouts that differ, as the policy file names
// them: "udp 5m0s → 10m0s".
func timeoutChanges(running, next nat.Timeouts) string {
	var out []string
	for _, t := range []struct {
		name     string
		old, new time.Duration
	}{
		{"udp", running.UDP, next.UDP},
		{"tcp-syn-sent", running.TCPSynSent, next.TCPSynSent},
		{"tcp-syn-recv", running.TCPSynRecv, next.TCPSynRecv},
		{"tcp-established", running.TCPEstablished, next.TCPEstablished},
		{"tcp-transitory", running.TCPTransitory, next.TCPTransitory},
		{"tcp-rst", running.TCPRST, next.TCPRST},
		{"icmp", running.ICMP, next.ICMP},
	} {
		if t.old != t.new {
			out = append(out, fmt.Sprintf("%s %v → %v", t.name, t.old, t.new))
		}
	}
	if len(out) == 0 {
		return fmt.Sprintf("%+v → %+v", running, next)
	}
	return strings.Join(out, ", ")
}
