// Command fwx runs the fwx firewall and NAT gateway.
//
//	fwx run --in-tun NAME --in-addr CIDR --out-tun NAME --out-addr CIDR [--policy FILE]
//	fwx run --in-tun NAME --in-addr CIDR --out host [--out-dev IFACE] [--out-addr ADDR] [--policy FILE]
//
// In router mode it creates the two TUN devices and forwards between them
// until SIGINT or SIGTERM. In host mode the outside is the host's own
// network: flows leave from ordinary sockets, and fwx needs no privilege
// when its TUN was created for its user beforehand (ip tuntap add ...
// user NAME). fwx does not configure addresses or routes on the devices:
// the administrator, or a test harness, does that, possibly after moving
// them into other network namespaces.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/netip"
	"os"
	"os/signal"
	"runtime/pprof"
	"strings"
	"syscall"
	"time"

	"github.com/rs/zerolog"

	"github.com/fwx-dev/fwx"
	_ "github.com/fwx-dev/fwx/filters/ftp" // registers the "ftp" and "ftp-readonly" filters
	_ "github.com/fwx-dev/fwx/filters/relay"
	"github.com/fwx-dev/fwx/netstack/hostnet"
	"github.com/fwx-dev/fwx/netstack/vnettun"
	"github.com/fwx-dev/fwx/session/policy"
)

const usage = `usage: fwx run --in-tun NAME --in-addr CIDR --out-tun NAME --out-addr CIDR [flags]
       fwx run --in-tun NAME --in-addr CIDR --out host [--out-dev IFACE] [--out-addr ADDR] [flags]

Commands:
  run      forward between the inside TUN and the outside (a TUN, or the host) until SIGINT/SIGTERM
  policy   check a policy file: fwx policy FILE

Run 'fwx run -h' for the flags of run.
`

func main() {
	if len(os.Args) < 2 {
		fmt.Fprint(os.Stderr, usage)
		os.Exit(2)
	}
	var err error
	switch os.Args[1] {
	case "run":
		err = run(os.Args[2:])
	case "policy":
		err = checkPolicy(os.Args[2:])
	case "-h", "--help", "help":
		fmt.Print(usage)
		return
	default:
		fmt.Fprintf(os.Stderr, "fwx: unknown command %q\n\n%s", os.Args[1], usage)
		os.Exit(2)
	}
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			os.Exit(0)
		}
		msg := err.Error()
		if !strings.HasPrefix(msg, "fwx") {
			msg = "fwx: " + msg
		}
		fmt.Fprintln(os.Stderr, msg)
		os.Exit(1)
	}
}

// runFlags are the flags of fwx run. The first five are a contract that
// outside test harnesses rely on.
type runFlags struct {
	inTun, outTun   string
	inAddr, outAddr string
	out             string // "host" for host mode
	outDev          string
	outMark         uint
	policy          string
	mtu             int
	logFormat       string
	fwlog           string
	verbose         bool
	cpuProfile      string
}

func parseRunFlags(args []string) (*runFlags, error) {
	var f runFlags
	fs := flag.NewFlagSet("fwx run", flag.ContinueOnError)
	fs.StringVar(&f.inTun, "in-tun", "", "name of the inside TUN device to create (required)")
	fs.StringVar(&f.inAddr, "in-addr", "", "fwx's own address on the inside, the clients' gateway, as CIDR (required)")
	fs.StringVar(&f.outTun, "out-tun", "", "name of the outside TUN device to create (router mode)")
	fs.StringVar(&f.out, "out", "", `"host": the outside is the host's own network, reached through ordinary sockets (host mode)`)
	fs.StringVar(&f.outAddr, "out-addr", "", "fwx's address on the outside, the SecureNAT source: a CIDR in router mode (required); in host mode the host address fwx's sockets bind to (default: the --out-dev's, or the default route's interface's)")
	fs.StringVar(&f.outDev, "out-dev", "", "host mode: bind fwx's sockets to this interface (SO_BINDTODEVICE), so they never loop back into the inside TUN")
	fs.UintVar(&f.outMark, "out-mark", 0, "host mode: mark fwx's sockets' packets (SO_MARK, needs CAP_NET_ADMIN) for a policy-routing rule")
	fs.StringVar(&f.policy, "policy", "", "policy file (YAML); empty means the built-in default")
	fs.IntVar(&f.mtu, "mtu", 0, "MTU of the TUN devices; 0 means 1500 for devices fwx creates, and leaves an existing device's")
	fs.StringVar(&f.logFormat, "log-format", "json", "log format: json or console")
	fs.StringVar(&f.fwlog, "fwlog", "", "write the firewall log to this file instead of standard output")
	fs.BoolVar(&f.verbose, "v", false, "verbose diagnostics")
	fs.StringVar(&f.cpuProfile, "cpuprofile", "", "write a CPU profile (pprof) of the whole run to this file")
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("run: unexpected argument %q", fs.Arg(0))
	}
	required := []struct{ name, v string }{{"--in-tun", f.inTun}, {"--in-addr", f.inAddr}}
	switch f.out {
	case "":
		required = append(required, struct{ name, v string }{"--out-tun", f.outTun}, struct{ name, v string }{"--out-addr", f.outAddr})
		if f.outDev != "" || f.outMark != 0 {
			return nil, errors.New("run: --out-dev and --out-mark are for host mode (--out host)")
		}
	case "host":
		if f.outTun != "" {
			return nil, errors.New("run: --out host and --out-tun exclude each other")
		}
	default:
		return nil, fmt.Errorf("run: --out %q: the only value is host (for router mode, name the device with --out-tun)", f.out)
	}
	if f.outMark > 0xffffffff {
		return nil, fmt.Errorf("run: --out-mark %d: not a 32-bit mark", f.outMark)
	}
	for _, req := range required {
		if req.v == "" {
			return nil, fmt.Errorf("run: %s is required", req.name)
		}
	}
	if f.logFormat != "json" && f.logFormat != "console" {
		return nil, fmt.Errorf("run: --log-format %q: want json or console", f.logFormat)
	}
	return &f, nil
}

func run(args []string) error {
	f, err := parseRunFlags(args)
	if err != nil {
		return err
	}
	inAddr, err := netip.ParsePrefix(f.inAddr)
	if err != nil {
		return fmt.Errorf("run: --in-addr: %w", err)
	}
	pol := policy.Default()
	if f.policy != "" {
		if pol, err = policy.Load(f.policy); err != nil {
			return err
		}
	}

	fwOut := io.Writer(os.Stdout)
	if f.fwlog != "" {
		file, err := os.OpenFile(f.fwlog, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o640)
		if err != nil {
			return fmt.Errorf("run: --fwlog: %w", err)
		}
		defer file.Close()
		fwOut = file
	}
	diagOut := io.Writer(os.Stderr)
	if f.logFormat == "console" {
		fwOut = zerolog.ConsoleWriter{Out: fwOut, TimeFormat: time.TimeOnly, NoColor: f.fwlog != ""}
		diagOut = zerolog.ConsoleWriter{Out: diagOut, TimeFormat: time.TimeOnly}
	}
	level := zerolog.InfoLevel
	if f.verbose {
		level = zerolog.DebugLevel
	}
	diag := zerolog.New(diagOut).Level(level).With().Timestamp().Logger()
	fwlog := zerolog.New(fwOut)

	cfg := fwx.Config{InsideAddr: inAddr, Policy: pol, Log: diag, FirewallLog: fwlog}
	outName := f.outTun
	if f.out == "host" {
		if cfg.Host, err = hostOutside(f, diag); err != nil {
			return err
		}
		outName = "host"
		if f.outDev != "" {
			outName = "host via " + f.outDev
		}
	} else if cfg.OutsideAddr, err = netip.ParsePrefix(f.outAddr); err != nil {
		return fmt.Errorf("run: --out-addr: %w", err)
	}
	if cfg.Host != nil && f.outDev == "" {
		// A default route through fwx's own TUN would loop its sockets
		// back into it.
		if dev, _, err := hostnet.Uplink(""); err == nil && dev == f.inTun {
			return fmt.Errorf("run: the default route goes through %s, fwx's inside TUN: name the uplink with --out-dev", f.inTun)
		}
	}
	// vnettun keeps GSO superpackets whole between the two devices.
	mtu := f.mtu
	if mtu == 0 && f.out != "host" {
		mtu = 1500
	}
	in, err := vnettun.Create(f.inTun, mtu)
	if err != nil {
		if errors.Is(err, syscall.EPERM) {
			err = fmt.Errorf("%w (without CAP_NET_ADMIN, fwx attaches only to a TUN created for its user: ip tuntap add dev %s mode tun user $USER)", err, f.inTun)
		}
		return fmt.Errorf("run: %s: %w", f.inTun, err)
	}
	cfg.Inside = in
	if cfg.Host == nil {
		if cfg.Outside, err = vnettun.Create(f.outTun, mtu); err != nil {
			in.Close()
			return fmt.Errorf("run: create %s: %w", f.outTun, err)
		}
	}
	fw, err := fwx.New(cfg)
	if err != nil {
		in.Close()
		if cfg.Outside != nil {
			cfg.Outside.Close()
		}
		if cfg.Host != nil {
			cfg.Host.Close()
		}
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if f.cpuProfile != "" {
		prof, err := os.Create(f.cpuProfile)
		if err != nil {
			return fmt.Errorf("run: --cpuprofile: %w", err)
		}
		defer prof.Close()
		if err := pprof.StartCPUProfile(prof); err != nil {
			return fmt.Errorf("run: --cpuprofile: %w", err)
		}
		defer pprof.StopCPUProfile()
	}
	outAddr := cfg.OutsideAddr.Addr()
	if cfg.Host != nil {
		outAddr = cfg.Host.Addr()
	}
	diag.Info().Str("in_tun", f.inTun).Stringer("in_addr", inAddr).Str("out", outName).
		Stringer("out_addr", outAddr).Str("policy", policyName(f.policy)).Msg("fwx running")
	err = fw.Run(ctx)
	diag.Info().Err(err).Msg("fwx stopped")
	return err
}

// hostOutside makes the host's network fwx's outside, as the flags say.
func hostOutside(f *runFlags, log zerolog.Logger) (*hostnet.Host, error) {
	opts := hostnet.Options{Device: f.outDev, Mark: uint32(f.outMark), Log: log}
	if f.outAddr != "" {
		a, err := netip.ParseAddr(f.outAddr)
		if err != nil {
			p, perr := netip.ParsePrefix(f.outAddr)
			if perr != nil {
				return nil, fmt.Errorf("run: --out-addr: %w", err)
			}
			a = p.Addr()
		}
		opts.Addr = a
	} else {
		_, a, err := hostnet.Uplink(f.outDev)
		if err != nil {
			return nil, fmt.Errorf("run: %w", err)
		}
		opts.Addr = a
	}
	h, err := hostnet.New(opts)
	if err != nil {
		return nil, fmt.Errorf("run: %w", err)
	}
	return h, nil
}

func policyName(path string) string {
	if path == "" {
		return "built-in default"
	}
	return path
}

// checkPolicy validates a policy file and reports every error in it.
func checkPolicy(args []string) error {
	if len(args) != 1 {
		return errors.New("policy: usage: fwx policy FILE")
	}
	if _, err := policy.Load(args[0]); err != nil {
		return err
	}
	fmt.Printf("%s: ok\n", args[0])
	return nil
}
