package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/signal"
	"runtime"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/rs/zerolog"
	"golang.zx2c4.com/wireguard/tun"

	"github.com/fwx-dev/fwx"
	_ "github.com/fwx-dev/fwx/filters/ftp" // registers the "ftp" and "ftp-readonly" filters
	_ "github.com/fwx-dev/fwx/filters/relay"
	_ "github.com/fwx-dev/fwx/filters/rtsp" // registers the "rtsp" filter
	_ "github.com/fwx-dev/fwx/filters/sip"  // registers the "sip" filter
	_ "github.com/fwx-dev/fwx/filters/tftp" // registers the "tftp" filter
	"github.com/fwx-dev/fwx/netstack/hostnet"
	"github.com/fwx-dev/fwx/netstack/vnettun"
	"github.com/fwx-dev/fwx/session/policy"
)

const runSynopsis = `usage: fwx run --in-tun NAME --in-addr CIDR --out-tun NAME --out-addr CIDR [flags]
       fwx run --in-tun NAME --in-addr CIDR --out host [--out-dev IFACE] [--out-addr ADDR] [flags]

Forwards between the inside TUN and the outside until SIGINT or SIGTERM.
--in-addr and --out-addr take IPv4 and IPv6 (dual stack: one of each),
repeated or as a comma-separated list; more --out-addrs of a family make a
pool, each client's flows leaving from one of them.
SIGHUP re-reads the policy file (as fwx reload does); SIGUSR1 reopens the
firewall log file (after logrotate moved it). fwx status and fwx reload
talk to it over its control socket.
`

// runConfig is fwx run's command line, checked.
type runConfig struct {
	inTun, outTun string
	inAddrs       []netip.Prefix
	outAddrs      []netip.Prefix // router mode; host mode: the address (a /32) if given
	host          bool
	outDev        string
	outMark       uint32
	policyPath    string
	policy        *policy.Policy
	mtu           int
	queues        int
	busyPoll      time.Duration
	logFormat     string
	fwlog         string
	fwlogMaxSize  int64
	fwlogKeep     int
	fwlogRate     float64
	deniedWait    time.Duration
	verbose       bool
	cpuProfile    string
	state         string
	control       string
	metrics       string
}

// Limits of the values fwx run takes.
const (
	maxIfName = 15 // IFNAMSIZ - 1
	minMTU    = 576
	maxMTU    = 65535
	maxQueues = 256 // MAX_TAP_QUEUES
	// maxBusyPoll bounds --busy-poll: a spin bridges the gap between the
	// packets of one burst (microseconds); one of milliseconds only burns
	// a core.
	maxBusyPoll = time.Millisecond
)

// parseRun reads and checks fwx run's command line, and loads the policy
// file, making every check that needs no device.
func parseRun(args []string, e env) (*runConfig, error) {
	var c runConfig
	var out, mark, maxSize string
	var inAddr, outAddr addrList
	fs := flagSet("fwx run", runSynopsis, e)
	fs.StringVar(&c.inTun, "in-tun", "", "`NAME` of the inside TUN device to create or attach to (required)")
	fs.Var(&inAddr, "in-addr", "fwx's own address on the inside, the clients' gateway, with the inside network's prefix length, as `CIDR` (required; IPv4 or IPv6, repeat it or list them for both)")
	fs.StringVar(&c.outTun, "out-tun", "", "`NAME` of the outside TUN device to create (router mode)")
	fs.StringVar(&out, "out", "", "`host`: the outside is the host's own network, reached through ordinary sockets (host mode)")
	fs.Var(&outAddr, "out-addr", "router mode (required): fwx's address on the outside, the SecureNAT source, as `CIDR` (IPv4 or IPv6; repeat it or list them: one per family, more make a pool); host mode: the host addresses fwx's sockets bind to, one per family (default: the --out-dev's, or the default route's interface's; its IPv6 one too when an IPv6 default route goes through it)")
	fs.StringVar(&c.outDev, "out-dev", "", "host mode: bind fwx's sockets to this interface `IFACE` (SO_BINDTODEVICE), so they never loop back into the inside TUN")
	fs.StringVar(&mark, "out-mark", "", "host mode: mark fwx's sockets' packets with `N` (SO_MARK, needs CAP_NET_ADMIN) for a policy-routing rule")
	fs.StringVar(&c.policyPath, "policy", "", "policy `FILE` (YAML); without it, the built-in default: the inside may go out, nothing comes in")
	fs.IntVar(&c.mtu, "mtu", 0, "MTU `N` of the TUN devices, 576 to 65535; without it, 1500 for devices fwx creates, and an existing device's own")
	fs.IntVar(&c.queues, "queues", min(runtime.GOMAXPROCS(0), maxQueues), "queues `N` of each TUN device (IFF_MULTI_QUEUE), each read by a goroutine of its own, 1 to 256; a flow stays on one queue; an existing device made without multi_queue has one; the default is the CPUs fwx may use (GOMAXPROCS, at most 256)")
	fs.DurationVar(&c.busyPoll, "busy-poll", 0, "a TUN queue's reader whose queue runs empty while packets arrive closely reads again for up to `DURATION` (say 20us) before it waits, 0 to 1ms: fewer wake-ups for CPU the endpoints may need; 0 (the default) never spins; an idle fwx never does")
	fs.StringVar(&c.logFormat, "log-format", "json", "`FORMAT` of both logs: json (one JSON object per line) or console (for people)")
	fs.StringVar(&c.fwlog, "fwlog", "", "write the firewall log to `FILE` instead of standard output")
	fs.StringVar(&maxSize, "fwlog-max-size", "", "rotate the --fwlog file when it would grow past `SIZE` (bytes, or with K, M or G): FILE becomes FILE.1, and so on")
	fs.IntVar(&c.fwlogKeep, "fwlog-keep", 5, "how many rotated firewall log files `N` to keep")
	fs.Float64Var(&c.fwlogRate, "fwlog-rate", 1000, "write at most `N` firewall log records per second on average (bursts of five seconds' worth); the rest are counted in a log-suppressed record; 0: no limit")
	fs.DurationVar(&c.deniedWait, "fwlog-denied-wait", 30*time.Second, "write a denied flow's one record once it has gone `DURATION` without another attempt")
	fs.StringVar(&c.state, "state", "", "keep connections across a restart: write the flow table to `FILE` at SIGTERM and read it back (then remove it) at start")
	fs.StringVar(&c.control, "control", "", "the control socket `PATH` for fwx status and fwx reload, usable by fwx's user and root only (default: /run/fwx/IN-TUN.sock for root, else $XDG_RUNTIME_DIR/fwx/IN-TUN.sock)")
	fs.StringVar(&c.metrics, "metrics", "", "serve Prometheus metrics on http://`ADDR`/metrics, and a read-only live page of the status on http://ADDR/ (host:port, such as 127.0.0.1:9140; a network listener, so only when asked)")
	fs.BoolVar(&c.verbose, "v", false, "verbose diagnostics")
	fs.StringVar(&c.cpuProfile, "cpuprofile", "", "write a CPU profile (pprof) of the whole run to `FILE`")
	if err := parseFlags(fs, args); err != nil {
		return nil, err
	}
	if fs.NArg() > 0 {
		return nil, usagef("fwx run: unexpected argument %q (every setting is a flag, such as --policy FILE)", fs.Arg(0))
	}

	switch out {
	case "":
	case "host":
		c.host = true
	default:
		return nil, usagef("fwx run: --out %q: the only value is host (for router mode, name the outside device with --out-tun)", out)
	}
	switch {
	case c.inTun == "":
		return nil, usagef("fwx run: --in-tun is required: the name of the inside TUN device")
	case len(inAddr) == 0:
		return nil, usagef("fwx run: --in-addr is required: fwx's inside address with the network's prefix length, such as 10.0.0.1/24")
	case c.host && c.outTun != "":
		return nil, usagef("fwx run: --out host and --out-tun exclude each other: host mode has no outside device")
	case !c.host && c.outTun == "":
		return nil, usagef("fwx run: --out-tun NAME is required in router mode (or pass --out host for host mode)")
	case !c.host && len(outAddr) == 0:
		return nil, usagef("fwx run: --out-addr is required in router mode: fwx's outside address with its prefix length, such as 198.51.100.1/24")
	case !c.host && (c.outDev != "" || mark != ""):
		return nil, usagef("fwx run: --out-dev and --out-mark are for host mode (--out host)")
	}
	for _, t := range []struct{ flag, name string }{{"--in-tun", c.inTun}, {"--out-tun", c.outTun}, {"--out-dev", c.outDev}} {
		if err := checkIfName(t.flag, t.name); err != nil {
			return nil, err
		}
	}
	if c.outTun == c.inTun {
		return nil, usagef("fwx run: --in-tun and --out-tun are both %q: the inside and the outside need a device each", c.inTun)
	}
	var err error
	if c.inAddrs, err = parseOwnAddrs("--in-addr", inAddr, "10.0.0.1/24"); err != nil {
		return nil, err
	}
	if c.host {
		for _, s := range outAddr {
			p, err := parseHostAddr(s)
			if err != nil {
				return nil, err
			}
			if len(c.outAddrs) > 0 && c.outAddrs[0].Addr().Is6() == p.Addr().Is6() || len(c.outAddrs) == 2 {
				return nil, usagef("fwx run: --out-addr %s: host mode binds to one host address per family", strings.Join(outAddr, ","))
			}
			c.outAddrs = append(c.outAddrs, p)
		}
		// IPv4 first, as hostnet takes them.
		slices.SortFunc(c.outAddrs, func(a, b netip.Prefix) int { return a.Addr().BitLen() - b.Addr().BitLen() })
	} else if c.outAddrs, err = parseOwnAddrs("--out-addr", outAddr, "198.51.100.1/24"); err != nil {
		return nil, err
	}
	for _, in := range c.inAddrs {
		for _, out := range c.outAddrs {
			if err := checkSides(in, out, c.host); err != nil {
				return nil, err
			}
		}
	}
	if mark != "" {
		m, err := strconv.ParseUint(mark, 0, 32)
		if err != nil {
			return nil, usagef("fwx run: --out-mark %q: want a 32-bit number, such as 0x100", mark)
		}
		c.outMark = uint32(m)
	}
	if c.mtu != 0 && (c.mtu < minMTU || c.mtu > maxMTU) {
		return nil, usagef("fwx run: --mtu %d: out of range; pass %d to %d, or leave it out for 1500", c.mtu, minMTU, maxMTU)
	}
	if c.queues < 1 || c.queues > maxQueues {
		return nil, usagef("fwx run: --queues %d: out of range; pass 1 to %d", c.queues, maxQueues)
	}
	if c.busyPoll < 0 || c.busyPoll > maxBusyPoll {
		return nil, usagef("fwx run: --busy-poll %v: out of range; pass 0 (off) to %v, such as 20us", c.busyPoll, maxBusyPoll)
	}
	if c.logFormat != "json" && c.logFormat != "console" {
		return nil, usagef("fwx run: --log-format %q: pass json or console", c.logFormat)
	}
	if maxSize != "" {
		if c.fwlog == "" {
			return nil, usagef("fwx run: --fwlog-max-size rotates a log file: pass --fwlog FILE too")
		}
		if c.fwlogMaxSize, err = parseSize(maxSize); err != nil {
			return nil, usagef("fwx run: --fwlog-max-size %q: %v", maxSize, err)
		}
	}
	if c.fwlogKeep < 1 {
		return nil, usagef("fwx run: --fwlog-keep %d: keep at least 1 rotated file", c.fwlogKeep)
	}
	if c.fwlogRate < 0 {
		return nil, usagef("fwx run: --fwlog-rate %v: pass a rate of records per second, or 0 for no limit", c.fwlogRate)
	}
	if c.deniedWait <= 0 {
		return nil, usagef("fwx run: --fwlog-denied-wait %v: pass a positive duration, such as 30s", c.deniedWait)
	}
	if c.metrics != "" {
		if _, port, err := net.SplitHostPort(c.metrics); err != nil || port == "" {
			return nil, usagef("fwx run: --metrics %q: want HOST:PORT, such as 127.0.0.1:9140", c.metrics)
		}
	}
	if c.policy, err = loadRunPolicy(c.policyPath); err != nil {
		return nil, err
	}
	return &c, nil
}

// parseSize parses a byte count with an optional K, M or G (powers of 1024).
func parseSize(s string) (int64, error) {
	mult := int64(1)
	num := strings.TrimSuffix(strings.ToUpper(s), "B")
	switch {
	case strings.HasSuffix(num, "K"):
		mult, num = 1<<10, strings.TrimSuffix(num, "K")
	case strings.HasSuffix(num, "M"):
		mult, num = 1<<20, strings.TrimSuffix(num, "M")
	case strings.HasSuffix(num, "G"):
		mult, num = 1<<30, strings.TrimSuffix(num, "G")
	}
	n, err := strconv.ParseInt(num, 10, 64)
	if err != nil || n <= 0 || n > (1<<62)/mult {
		return 0, errors.New("want a size such as 100M, 1G or 65536")
	}
	return n * mult, nil
}

func run(args []string, e env) error {
	c, err := parseRun(args, e)
	if err != nil {
		return err
	}
	// From here on no signal an operator sends kills fwx by surprise:
	// SIGHUP reloads, SIGUSR1 reopens the log, and a reader of standard
	// output or error that goes away ends its log, not fwx (writes fail
	// with EPIPE instead).
	signal.Ignore(syscall.SIGPIPE)
	hup, usr1 := make(chan os.Signal, 1), make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	signal.Notify(usr1, syscall.SIGUSR1)
	defer signal.Stop(hup)
	defer signal.Stop(usr1)
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	logs, err := openLogs(c, e)
	if err != nil {
		return err
	}
	defer logs.close()
	diag := logs.diag
	for _, w := range c.policy.Warnings() {
		diag.Warn().Msg(w.Error())
	}
	controlAt := c.control
	if controlAt == "" {
		controlAt = controlPath(c.inTun)
	}
	ctl, err := listenControl(controlAt)
	if err != nil {
		return err
	}
	defer ctl.close()
	var ms *metricsServer
	if c.metrics != "" {
		if ms, err = listenMetrics(c.metrics); err != nil {
			return fmt.Errorf("run: --metrics: %w", err)
		}
		defer ms.close()
	}
	if c.cpuProfile != "" {
		prof, err := os.Create(c.cpuProfile)
		if err != nil {
			return fmt.Errorf("run: --cpuprofile: %w", err)
		}
		defer prof.Close()
		if err := pprof.StartCPUProfile(prof); err != nil {
			return fmt.Errorf("run: --cpuprofile: %w", err)
		}
		defer pprof.StopCPUProfile()
	}
	fw, outName, err := newFirewall(c, logs)
	if err != nil {
		return err
	}
	notify := newNotifier(diag)
	defer notify.close()
	rl := &reloader{path: c.policyPath, fw: fw, log: diag, notifier: notify}
	go rl.reloadOn(ctx, hup)
	go logs.reopenOn(ctx, usr1)
	info := func() runInfo {
		s := logs.fwq.Stats()
		ls := logStats{Written: s.Written, Dropped: s.Dropped, Suppressed: s.Suppressed, Lost: s.Lost}
		if s.Failed != nil {
			ls.Failed = s.Failed.Error()
		}
		return runInfo{Version: shortVersion(), PID: os.Getpid(), InTun: c.inTun, Out: outName,
			Policy: policyName(c.policyPath), Reloads: rl.snapshot(), Log: ls}
	}
	ctl.serve(controlHandler(fw, info, rl), diag)
	if ms != nil {
		ms.serve(fw, rl, logs.fwq, info, diag)
	}

	diag.Info().Str("version", version()).Str("in_tun", c.inTun).Str("in_addr", prefixes(fw.InsideAddrs())).Str("out", outName).
		Str("out_addr", addrsOf(fw.OutsideAddrs())).Str("policy", policyName(c.policyPath)).Str("control", controlAt).Msg("fwx running")
	notify.ready()
	err = fw.Run(ctx)
	notify.stopping()
	diag.Info().Err(err).Msg("fwx stopped")
	return err
}

// newFirewall creates the devices and the firewall the flags describe, and
// names the outside for status.
func newFirewall(c *runConfig, logs *logs) (*fwx.Firewall, string, error) {
	diag := logs.diag
	cfg := fwx.Config{InsideAddr: c.inAddrs[0], InsideAddrs: c.inAddrs[1:], Policy: c.policy, Log: diag, FirewallLog: logs.fw, DenialQuiet: c.deniedWait, StateFile: c.state}
	outName := c.outTun
	var err error
	if c.host {
		if cfg.Host, err = hostOutside(c, diag); err != nil {
			return nil, "", err
		}
		outName = "host"
		if c.outDev != "" {
			outName = "host via " + c.outDev
		}
	} else {
		cfg.OutsideAddr, cfg.OutsideAddrs = c.outAddrs[0], c.outAddrs[1:]
	}
	if cfg.Host != nil && c.outDev == "" {
		// A default route through fwx's own TUN would loop its sockets
		// back into it.
		if dev, _, err := hostnet.Uplink(""); err == nil && dev == c.inTun {
			cfg.Host.Close()
			return nil, "", fmt.Errorf("run: the default route goes through %s, fwx's inside TUN: name the uplink with --out-dev", c.inTun)
		}
	}
	// vnettun keeps GSO superpackets whole between the two devices.
	mtu := c.mtu
	if mtu == 0 && !c.host {
		mtu = 1500
	}
	in, err := vnettun.CreateQueues(c.inTun, mtu, c.queues)
	if err != nil {
		if errors.Is(err, syscall.EPERM) {
			err = fmt.Errorf("%w (without CAP_NET_ADMIN, fwx attaches only to a TUN created for its user: ip tuntap add dev %s mode tun user $USER multi_queue; see docs/HOST.md)", err, c.inTun)
		}
		if cfg.Host != nil {
			cfg.Host.Close()
		}
		return nil, "", fmt.Errorf("run: %s: %w", c.inTun, err)
	}
	cfg.Inside, cfg.InsideQueues = in[0], devices(in[1:])
	var out []*vnettun.Device
	if cfg.Host == nil {
		if out, err = vnettun.CreateQueues(c.outTun, mtu, c.queues); err != nil {
			closeQueues(in)
			return nil, "", fmt.Errorf("run: create %s: %w", c.outTun, err)
		}
		cfg.Outside, cfg.OutsideQueues = out[0], devices(out[1:])
	}
	for _, q := range append(in, out...) {
		q.SetBusyPoll(c.busyPoll) // see docs/BENCH.md for what it pays
	}
	if len(in) < c.queues {
		diag.Info().Str("in_tun", c.inTun).Int("queues", len(in)).Msg("the inside TUN exists without multi_queue: one queue")
	}
	// A longer transmit queue than a TUN's 500 packets, so that fwx
	// descheduled for a few milliseconds loses nothing (vnettun.TxQueueLen).
	// It needs CAP_NET_ADMIN, which host mode often runs without.
	devs := []*vnettun.Device{in[0]}
	if out != nil {
		devs = append(devs, out[0])
	}
	for _, d := range devs {
		if err := d.RaiseTxQueueLen(vnettun.TxQueueLen); err != nil {
			name, _ := d.Name()
			diag.Info().Err(err).Msgf("%s keeps its transmit queue length; set it with: ip link set dev %s txqueuelen %d", name, name, vnettun.TxQueueLen)
		}
	}
	fw, err := fwx.New(cfg)
	if err != nil {
		closeQueues(in)
		closeQueues(out)
		if cfg.Host != nil {
			cfg.Host.Close()
		}
		return nil, "", err
	}
	return fw, outName, nil
}

// devices returns qs as tun.Devices, for fwx.Config.
func devices(qs []*vnettun.Device) []tun.Device {
	ds := make([]tun.Device, len(qs))
	for i, q := range qs {
		ds[i] = q
	}
	return ds
}

func closeQueues(qs []*vnettun.Device) {
	for _, q := range qs {
		q.Close()
	}
}

// hostOutside makes the host's network fwx's outside, as the flags say.
func hostOutside(c *runConfig, log zerolog.Logger) (*hostnet.Host, error) {
	opts := hostnet.Options{Device: c.outDev, Mark: c.outMark, Log: log}
	switch len(c.outAddrs) {
	case 2:
		opts.Addr, opts.Addr6 = c.outAddrs[0].Addr(), c.outAddrs[1].Addr()
	case 1:
		opts.Addr = c.outAddrs[0].Addr()
	default:
		// The uplink's IPv4 address, and its IPv6 one when IPv6 can
		// leave through it.
		dev, a, err := hostnet.Uplink(c.outDev)
		if err != nil {
			return nil, fmt.Errorf("run: %w", err)
		}
		opts.Addr = a
		opts.Addr6, _ = hostnet.Uplink6(dev)
	}
	h, err := hostnet.New(opts)
	if err != nil {
		return nil, fmt.Errorf("run: %w", err)
	}
	return h, nil
}

// addrsOf writes the addresses of ps as a comma-separated list.
func addrsOf(ps []netip.Prefix) string {
	s := make([]string, len(ps))
	for i, p := range ps {
		s[i] = p.Addr().String()
	}
	return strings.Join(s, ",")
}

// prefixes writes ps as a comma-separated list.
func prefixes(ps []netip.Prefix) string {
	s := make([]string, len(ps))
	for i, p := range ps {
		s[i] = p.String()
	}
	return strings.Join(s, ",")
}

func policyName(path string) string {
	if path == "" {
		return "built-in default"
	}
	return path
}
