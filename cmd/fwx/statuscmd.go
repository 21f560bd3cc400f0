package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"
)

const statusSynopsis = `usage: fwx status [--json] [--watch [--interval D]] [--addr A] [--port P] [--rule R]
                  [--in-tun NAME | --control PATH]

Shows a running fwx: its totals, its flows the way conntrack -L shows them
(client, translated address, destination, state, path, filter, rule, age,
idle time, bytes and packets each way), and what the application filters'
sessions hold (bound ports and permissions). It asks fwx over its control
socket, which only fwx's user and root may use.
`

func statusCmd(args []string, e env) error {
	fs := flagSet("fwx status", statusSynopsis, e)
	control := fs.String("control", "", "the control socket `PATH` of the fwx to ask")
	inTun := fs.String("in-tun", "", "ask the fwx whose inside TUN is `NAME`")
	asJSON := fs.Bool("json", false, "print the status as JSON, for scripts")
	watch := fs.Bool("watch", false, "show the status again every --interval until interrupted")
	interval := fs.Duration("interval", 2*time.Second, "how often --watch asks, a `DURATION`")
	addr := fs.String("addr", "", "only flows with `ADDRESS` as client, destination or translated address")
	port := fs.String("port", "", "only flows with `PORT` on one of those endpoints")
	rule := fs.String("rule", "", "only flows admitted by `RULE`")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return usagef("fwx status: unexpected argument %q", fs.Arg(0))
	}
	if _, err := parseStatusFilter(*addr, *port, *rule); err != nil {
		return usagef("fwx status: %v", err)
	}
	if *interval <= 0 {
		return usagef("fwx status: --interval %v: pass a positive duration", *interval)
	}
	c, err := dialControl(*control, *inTun)
	if err != nil {
		return err
	}
	q := url.Values{}
	for k, v := range map[string]string{"addr": *addr, "port": *port, "rule": *rule} {
		if v != "" {
			q.Set(k, v)
		}
	}
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		var st statusReply
		err := c.call(ctx, "GET", "/v1/status?"+q.Encode(), &st)
		cancel()
		if err != nil {
			return err
		}
		if *asJSON {
			enc := json.NewEncoder(e.stdout)
			if !*watch {
				enc.SetIndent("", "  ")
			}
			enc.Encode(st)
		} else {
			if *watch {
				fmt.Fprint(e.stdout, "\033[H\033[2J") // home, clear
			}
			printStatus(e.stdout, &st)
		}
		if !*watch {
			return nil
		}
		time.Sleep(*interval)
	}
}

// printStatus writes the status screen.
func printStatus(w io.Writer, st *statusReply) {
	r, t := st.Run, st.Totals
	fmt.Fprintf(w, "fwx %s, pid %d, up %s\n", r.Version, r.PID, dur(st.Time.Sub(st.Totals.Started)))
	fmt.Fprintf(w, "inside  %s on %s\noutside %s on %s\n", prefixes(st.InsideAddrs), r.InTun, prefixes(st.OutsideAddrs), r.Out)
	fmt.Fprintf(w, "policy  %s", r.Policy)
	if rl := r.Reloads; rl.Count > 0 {
		result := "ok"
		if !rl.LastOK {
			result = "refused: " + firstLine(rl.LastError)
		}
		fmt.Fprintf(w, ", reloaded %d times (%d refused), last at %s: %s", rl.Count, rl.Failures, rl.Last.Format(time.TimeOnly), result)
	}
	fmt.Fprintln(w)
	fmt.Fprintf(w, "\nflows   %d", t.Flows)
	if t.Flows > 0 {
		fmt.Fprintf(w, ": %s; %s; %s", counts(t.ByProtocol), counts(t.ByPath), counts(t.ByState))
	}
	fmt.Fprintln(w)
	var ports []string
	for _, p := range []string{"tcp", "udp", "icmp"} {
		u := t.Ports[p]
		ports = append(ports, fmt.Sprintf("%s %d/%d", p, u.Used, u.Size))
	}
	fmt.Fprintf(w, "ports   %s\n", strings.Join(ports, ", "))
	fmt.Fprintf(w, "traffic sent %s in %s packets, received %s in %s packets\n",
		bytesStr(t.BytesSent), count(t.PacketsSent), bytesStr(t.BytesReceived), count(t.PacketsReceived))
	fmt.Fprintf(w, "created %s\n", countsU(t.Created))
	fmt.Fprintf(w, "denied  %s\n", countsU(t.Denied))
	fmt.Fprintf(w, "drops   %s", countsU(t.Drops))
	if t.EarlyDrops > 0 {
		fmt.Fprintf(w, "; %d flows reclaimed early", t.EarlyDrops)
	}
	if t.PickedUp > 0 {
		fmt.Fprintf(w, "; %d connections picked up after a restart", t.PickedUp)
	}
	fmt.Fprintln(w)
	fmt.Fprintf(w, "filters %d pinholes in %s; refused %s\n", t.Pinholes, plural(t.Sessions, "session"), countsU(t.FilterRefusals))
	fmt.Fprintf(w, "log     %d written, %d dropped, %d suppressed, %d lost", r.Log.Written, r.Log.Dropped, r.Log.Suppressed, r.Log.Lost)
	if r.Log.Failed != "" {
		fmt.Fprintf(w, " (output failed: %s)", r.Log.Failed)
	}
	fmt.Fprintln(w)

	fmt.Fprintln(w)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "PROTO\tCLIENT\tTRANSLATED\tDESTINATION\tSTATE\tPATH\tFILTER\tRULE\tAGE\tIDLE\tSENT\tRECEIVED\t")
	for _, f := range st.Flows {
		client, dest, trans := f.Client.String(), f.Destination.String(), f.Translated.String()
		if f.Direction == "inbound" {
			trans = "→ " + trans
		}
		filter := f.Filter
		if filter == "" {
			filter = "-"
		}
		rule := f.Rule
		if f.Grant {
			rule += " (grant)"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s/%s\t%s/%s\t\n", f.Protocol, client, trans, dest, f.State, f.Path,
			filter, rule, dur(secs(f.Age)), dur(secs(f.Idle)),
			bytesStr(f.BytesSent), count(f.PacketsSent), bytesStr(f.BytesReceived), count(f.PacketsReceived))
	}
	tw.Flush()
	if len(st.Flows) == 0 {
		fmt.Fprintln(w, "(no flows)")
	}

	if len(st.Sessions) == 0 {
		return
	}
	fmt.Fprintln(w, "\nSESSIONS")
	for _, s := range st.Sessions {
		fmt.Fprintf(w, "%s: %s", s.Client, plural(s.Connections, "user-mode connection"))
		if len(s.Filters) > 0 {
			fmt.Fprintf(w, ", filters %s", strings.Join(s.Filters, ", "))
		}
		fmt.Fprintln(w)
		for _, g := range s.Grants {
			state := "live"
			if !g.Live {
				state = "spent"
			}
			line := fmt.Sprintf("  %-8s %s %s %s, %s, used %d", g.Kind, g.Transport, g.Addr, g.Protocol, state, g.Used)
			if g.Client.IsValid() {
				line += ", for " + g.Client.String()
			}
			if !g.Deadline.IsZero() && g.Live {
				line += ", lapses in " + dur(g.Deadline.Sub(st.Time))
			}
			fmt.Fprintln(w, line)
		}
	}
}

// plural writes "1 thing" or "2 things".
func plural(n int, thing string) string {
	if n == 1 {
		return "1 " + thing
	}
	return strconv.Itoa(n) + " " + thing + "s"
}

func secs(s float64) time.Duration { return time.Duration(s * float64(time.Second)) }

// dur writes a duration the way ps does: 1d2h, 3h4m, 5m6s, 7s.
func dur(d time.Duration) string {
	if d < 0 {
		d = 0
	}
	s := int64(d / time.Second)
	switch {
	case s >= 86400:
		return fmt.Sprintf("%dd%dh", s/86400, s%86400/3600)
	case s >= 3600:
		return fmt.Sprintf("%dh%dm", s/3600, s%3600/60)
	case s >= 60:
		return fmt.Sprintf("%dm%ds", s/60, s%60)
	}
	return fmt.Sprintf("%ds", s)
}

// bytesStr writes a byte count with a binary unit: 980B, 1.5K, 23M.
func bytesStr(n uint64) string {
	const units = "KMGTP"
	if n < 1024 {
		return strconv.FormatUint(n, 10) + "B"
	}
	f, i := float64(n)/1024, 0
	for f >= 1024 && i < len(units)-1 {
		f /= 1024
		i++
	}
	if f < 10 {
		return fmt.Sprintf("%.1f%c", f, units[i])
	}
	return fmt.Sprintf("%.0f%c", f, units[i])
}

// count writes a packet count: 950, 12k, 3.4M.
func count(n uint64) string {
	switch {
	case n < 10000:
		return strconv.FormatUint(n, 10)
	case n < 1000000:
		return fmt.Sprintf("%dk", n/1000)
	}
	return fmt.Sprintf("%.1fM", float64(n)/1e6)
}

func counts(m map[string]int) string {
	if len(m) == 0 {
		return "none"
	}
	var out []string
	for _, k := range slices.Sorted(maps.Keys(m)) {
		out = append(out, fmt.Sprintf("%s %d", k, m[k]))
	}
	return strings.Join(out, ", ")
}

func countsU(m map[string]uint64) string {
	if len(m) == 0 {
		return "none"
	}
	var out []string
	for _, k := range slices.Sorted(maps.Keys(m)) {
		name := k
		if name == "" {
			name = "(any)"
		}
		out = append(out, fmt.Sprintf("%s %d", name, m[k]))
	}
	return strings.Join(out, ", ")
}

func firstLine(s string) string {
	s, _, _ = strings.Cut(s, "\n")
	return s
}
