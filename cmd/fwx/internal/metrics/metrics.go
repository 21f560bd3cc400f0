// Package metrics exports a running fwx's counters to Prometheus: flows by
// transport, path and state, flows created and attempts denied by rule,
// bytes and packets, pinholes, outside ports in use, drops by reason,
// filter refusals, reloads, the firewall log's counts, and the Go runtime.
//
// Nothing is counted on the packet path for it: a scrape reads the
// counters the flow table and the firewall log keep anyway (per flow,
// atomics) and adds them up, as fwx status does.
package metrics

import (
	"net/http"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/fwx-dev/fwx"
	"github.com/fwx-dev/fwx/nat"
)

// Reloads are the policy reloads of a run so far.
type Reloads struct {
	OK, Refused uint64
	// Last is when the last one was asked for (zero: never); LastOK says
	// whether it went into force.
	Last   time.Time
	LastOK bool
}

// Options are what a Collector reports besides the firewall's own counters.
type Options struct {
	// Version labels fwx_build_info.
	Version string
	// Reloads, if set, reports the reloads so far.
	Reloads func() Reloads
	// Log, if set, reports the firewall log's counts.
	Log func() fwx.LogQueueStats
}

// Collector is a prometheus.Collector of a running fwx's counters. It is
// safe for concurrent use.
type Collector struct {
	fw   *fwx.Firewall
	opts Options

	mu   sync.Mutex
	high map[highKey]uint64 // the largest value each summed counter had
}

// highKey names a counter that is summed over live and ended flows.
type highKey struct{ name, direction string }

var _ prometheus.Collector = (*Collector)(nil)

// New returns a Collector of fw's counters.
func New(fw *fwx.Firewall, opts Options) *Collector {
	return &Collector{fw: fw, opts: opts, high: make(map[highKey]uint64)}
}

func desc(name, help string, labels ...string) *prometheus.Desc {
	return prometheus.NewDesc("fwx_"+name, help, labels, nil)
}

var (
	descFlows      = desc("flows", "Live flows, by transport and path (fast: rewritten in place; user: terminated in fwx's netstacks).", "protocol", "path")
	descFlowStates = desc("flow_states", "Live flows by state: a TCP connection's state, or replied/unreplied for UDP and ICMP.", "state")
	descMappings   = desc("mappings", "Live SecureNAT mappings (an inside endpoint bound to an outside one).")
	descCreated    = desc("flows_created_total", "Flows admitted, by the rule, publication or grant that admitted them.", "rule")
	descDenied     = desc("flow_attempts_denied_total", "Packets that tried to open a refused flow (a SYN and its retries count each), by rule.", "rule")
	descBytes      = desc("bytes_total", "Bytes of whole IP packets the flows carried, sent (client to destination) or received.", "direction")
	descPackets    = desc("packets_total", "Packets the flows carried, sent (client to destination) or received.", "direction")
	descPinholes   = desc("pinholes", "Live grants of application filters (bound ports, permissions).")
	descSessions   = desc("sessions", "Filter SDK sessions (one per client that a filter served).")
	descPortsUsed  = desc("ports_in_use", "Outside ports (ICMP: identifiers) in use, by transport.", "protocol")
	descPorts      = desc("ports", "Outside ports (ICMP: identifiers) there are, by transport.", "protocol")
	descDrops      = desc("drops_total", "Packets dropped and new flows refused, by reason.", "reason")
	descEarlyDrops = desc("early_drops_total", "Flows reclaimed before their timer ran out to make room for new ones.")
	descPickedUp   = desc("picked_up_total", "TCP connections taken up mid-stream after a start that lost them.")
	descRefusals   = desc("filter_refusals_total", "Connections an application filter refused, by the filter of their protocol.", "filter")
	descReloads    = desc("reloads_total", "Policy reloads asked for (SIGHUP, fwx reload), by result.", "result")
	descReloadOK   = desc("reload_last_success", "1 if the last reload put its policy in force, 0 if it was refused.")
	descReloadTime = desc("reload_last_timestamp_seconds", "When the last reload was asked for, in Unix seconds.")
	descLog        = desc("log_records_total", "Firewall log records, by what became of them (written; dropped: the reader fell behind; suppressed: over the rate limit; lost: the output had failed).", "outcome")
	descStart      = desc("start_time_seconds", "When fwx started, in Unix seconds.")
	descBuild      = desc("build_info", "Always 1; labelled with fwx's version.", "version")
)

// Describe implements prometheus.Collector.
func (c *Collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descFlows, descFlowStates, descMappings, descCreated, descDenied,
		descBytes, descPackets, descPinholes, descSessions, descPortsUsed, descPorts, descDrops, descEarlyDrops, descPickedUp,
		descRefusals, descReloads, descReloadOK, descReloadTime, descLog, descStart, descBuild} {
		ch <- d
	}
}

// Collect implements prometheus.Collector.
func (c *Collector) Collect(ch chan<- prometheus.Metric) {
	st := c.fw.Totals()
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	counter := func(d *prometheus.Desc, v uint64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v), labels...)
	}
	for _, proto := range []string{"tcp", "udp", "icmp"} {
		for _, path := range []string{"fast", "user"} {
			gauge(descFlows, float64(st.ByProtocolPath[proto][path]), proto, path)
		}
		gauge(descPortsUsed, float64(st.Ports[proto].Used), proto)
		gauge(descPorts, float64(st.Ports[proto].Size), proto)
	}
	for s := nat.TCPSynSent; s <= nat.TCPReset; s++ {
		gauge(descFlowStates, float64(st.ByState[s.String()]), s.String())
	}
	for _, s := range []string{"replied", "unreplied"} {
		gauge(descFlowStates, float64(st.ByState[s]), s)
	}
	gauge(descMappings, float64(st.Mappings))
	for rule, n := range st.Created {
		counter(descCreated, n, rule)
	}
	for rule, n := range st.Denied {
		counter(descDenied, n, rule)
	}
	// Bytes and packets are the ended flows' plus the live ones': a flow
	// ending while they are added up could be missed once, so each is
	// kept from going back (a counter that decreased would read as a
	// restart).
	c.mu.Lock()
	counter(descBytes, c.monotonic("bytes", "sent", st.BytesSent), "sent")
	counter(descBytes, c.monotonic("bytes", "received", st.BytesReceived), "received")
	counter(descPackets, c.monotonic("packets", "sent", st.PacketsSent), "sent")
	counter(descPackets, c.monotonic("packets", "received", st.PacketsReceived), "received")
	c.mu.Unlock()
	gauge(descPinholes, float64(st.Pinholes))
	gauge(descSessions, float64(st.Sessions))
	for r := range nat.NumDropReasons {
		counter(descDrops, st.Drops[r.String()], r.String())
	}
	counter(descEarlyDrops, st.EarlyDrops)
	counter(descPickedUp, st.PickedUp)
	for filter, n := range st.FilterRefusals {
		counter(descRefusals, n, filter)
	}
	if c.opts.Reloads != nil {
		r := c.opts.Reloads()
		counter(descReloads, r.OK, "ok")
		counter(descReloads, r.Refused, "refused")
		if !r.Last.IsZero() {
			ok := 0.0
			if r.LastOK {
				ok = 1
			}
			gauge(descReloadOK, ok)
			gauge(descReloadTime, float64(r.Last.UnixNano())/1e9)
		}
	}
	if c.opts.Log != nil {
		s := c.opts.Log()
		counter(descLog, s.Written, "written")
		counter(descLog, s.Dropped, "dropped")
		counter(descLog, s.Suppressed, "suppressed")
		counter(descLog, s.Lost, "lost")
	}
	gauge(descStart, float64(st.Started.UnixNano())/1e9)
	gauge(descBuild, 1, c.opts.Version)
}

// monotonic returns v, or the largest value the counter had if that is
// larger.
func (c *Collector) monotonic(name, direction string, v uint64) uint64 {
	k := highKey{name, direction}
	if v < c.high[k] {
		return c.high[k]
	}
	c.high[k] = v
	return v
}

// Handler serves c, the Go runtime's metrics and the process's (CPU,
// memory, open files) in Prometheus's text format.
func Handler(c *Collector) http.Handler {
	reg := prometheus.NewRegistry()
	reg.MustRegister(c, collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return promhttp.HandlerFor(reg, promhttp.HandlerOpts{ErrorHandling: promhttp.ContinueOnError})
}
