package main

import (
	"context"
	"fmt"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/rs/zerolog"

	"github.com/fwx-dev/fwx"
	"github.com/fwx-dev/fwx/session/policy"
)

// reloader re-reads the policy file and puts it in force, on SIGHUP and on
// fwx reload. A file with errors is refused, each error with its line,
// and the running policy stays.
type reloader struct {
	path     string // the --policy file; empty: the built-in default
	fw       *fwx.Firewall
	log      zerolog.Logger
	notifier *notifier

	mu    sync.Mutex // one reload at a time; guards stats
	stats reloadStats
}

// reloadStats count the reloads of a run.
type reloadStats struct {
	Count     uint64    `json:"count"`
	Failures  uint64    `json:"failures"`
	Last      time.Time `json:"last,omitzero"`
	LastOK    bool      `json:"last_ok"`
	LastError string    `json:"last_error,omitempty"`
}

// reloadReply is fwx reload's JSON.
type reloadReply struct {
	OK       bool             `json:"ok"`
	Policy   string           `json:"policy"`
	Errors   []string         `json:"errors,omitempty"`
	Warnings []string         `json:"warnings,omitempty"`
	Report   fwx.ReloadReport `json:"report"`
}

func (r *reloader) snapshot() reloadStats {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.stats
}

// reload re-reads the policy file and puts it in force; via says who
// asked, for the log.
func (r *reloader) reload(via string) reloadReply {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.notifier.reloading()
	defer r.notifier.ready()
	reply := reloadReply{Policy: policyName(r.path)}
	p, err := policy.Default(), error(nil)
	if r.path != "" {
		p, err = loadRunPolicy(r.path)
	}
	if err == nil {
		for _, w := range p.Warnings() {
			reply.Warnings = append(reply.Warnings, w.Error())
			r.log.Warn().Msg(w.Error())
		}
		reply.Report, err = r.fw.Reload(p)
	}
	r.stats.Count++
	r.stats.Last = time.Now()
	r.stats.LastOK = err == nil
	if err != nil {
		r.stats.Failures++
		r.stats.LastError = err.Error()
		reply.Errors = strings.Split(err.Error(), "\n")
		r.log.Error().Str("via", via).Str("policy", reply.Policy).Strs("errors", reply.Errors).
			Msg("reload refused; the running policy stays")
		return reply
	}
	r.stats.LastError = ""
	reply.OK = true
	rep := reply.Report
	r.log.Info().Str("via", via).Str("policy", reply.Policy).Bool("strict", rep.Strict).
		Strs("published", rep.Published).Strs("withdrawn", rep.Withdrawn).Strs("filters", rep.Filters).
		Int("flows_ended", rep.Ended).Int("grants_revoked", rep.Revoked).Msg("policy reloaded")
	return reply
}

// reloadOn reloads each time a signal comes on ch (SIGHUP), until ctx
// ends.
func (r *reloader) reloadOn(ctx context.Context, ch <-chan os.Signal) {
	for {
		select {
		case <-ctx.Done():
			return
		case sig := <-ch:
			r.reload(sig.String())
		}
	}
}

const reloadSynopsis = `usage: fwx reload [--in-tun NAME | --control PATH]

Makes a running fwx re-read its policy file (as SIGHUP does) and prints
what changed. A file with errors is refused, each error with its line, and
the running policy stays; the exit status is then 1. New flows follow the
new policy at once; established flows and filters' grants stay, or, with
options.reload: strict, those the new policy does not allow end.
`

func reloadCmd(args []string, e env) error {
	fs := flagSet("fwx reload", reloadSynopsis, e)
	control := fs.String("control", "", "the control socket `PATH` of the fwx to reload")
	inTun := fs.String("in-tun", "", "reload the fwx whose inside TUN is `NAME`")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return usagef("fwx reload: unexpected argument %q", fs.Arg(0))
	}
	c, err := dialControl(*control, *inTun)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var reply reloadReply
	if err := c.call(ctx, "POST", "/v1/reload", &reply); err != nil {
		return err
	}
	for _, w := range reply.Warnings {
		fmt.Fprintf(e.stderr, "warning: %s\n", w)
	}
	if !reply.OK {
		return fmt.Errorf("reload refused; the running policy stays:\n%s", strings.Join(reply.Errors, "\n"))
	}
	rep := reply.Report
	fmt.Fprintf(e.stdout, "%s: reloaded", reply.Policy)
	var parts []string
	if len(rep.Published) > 0 {
		parts = append(parts, "published "+strings.Join(rep.Published, ", "))
	}
	if len(rep.Withdrawn) > 0 {
		parts = append(parts, "withdrawn "+strings.Join(rep.Withdrawn, ", "))
	}
	if len(rep.Filters) > 0 {
		parts = append(parts, "filters on: "+strings.Join(rep.Filters, ", "))
	}
	if rep.Strict {
		parts = append(parts, fmt.Sprintf("strict: %d flows ended, %d grants revoked", rep.Ended, rep.Revoked))
	}
	if len(parts) > 0 {
		fmt.Fprintf(e.stdout, " (%s)", strings.Join(parts, "; "))
	}
	fmt.Fprintln(e.stdout)
	return nil
}
