// Command fwx runs the fwx firewall and NAT gateway.
//
//	fwx run --in-tun NAME --in-addr CIDR --out-tun NAME --out-addr CIDR [--policy FILE]
//
// It creates the two TUN devices and forwards between them until SIGINT or
// SIGTERM. It does not configure addresses or routes on the devices: the
// administrator, or a test harness, does that, possibly after moving them
// into other network namespaces.
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
	"syscall"
	"time"

	"github.com/rs/zerolog"

	"github.com/fwx-dev/fwx"
	_ "github.com/fwx-dev/fwx/filters/ftp" // registers the "ftp" and "ftp-readonly" filters
	_ "github.com/fwx-dev/fwx/filters/relay"
	"github.com/fwx-dev/fwx/netstack/vnettun"
	"github.com/fwx-dev/fwx/session/policy"
)

const usage = `usage: fwx run --in-tun NAME --in-addr CIDR --out-tun NAME --out-addr CIDR [flags]

Commands:
  run      create the TUN devices and forward between them until SIGINT/SIGTERM
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
		fmt.Fprintf(os.Stderr, "fwx: %v\n", err)
		os.Exit(1)
	}
}

// runFlags are the flags of fwx run. The first five are a contract that
// outside test harnesses rely on.
type runFlags struct {
	inTun, outTun   string
	inAddr, outAddr string
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
	fs.StringVar(&f.outTun, "out-tun", "", "name of the outside TUN device to create (required)")
	fs.StringVar(&f.outAddr, "out-addr", "", "fwx's address on the outside, the SecureNAT source, as CIDR (required)")
	fs.StringVar(&f.policy, "policy", "", "policy file (YAML); empty means the built-in default")
	fs.IntVar(&f.mtu, "mtu", 1500, "MTU of the TUN devices")
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
	for _, req := range []struct{ name, v string }{
		{"--in-tun", f.inTun}, {"--in-addr", f.inAddr}, {"--out-tun", f.outTun}, {"--out-addr", f.outAddr},
	} {
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
	outAddr, err := netip.ParsePrefix(f.outAddr)
	if err != nil {
		return fmt.Errorf("run: --out-addr: %w", err)
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

	// vnettun keeps GSO superpackets whole between the two devices.
	in, err := vnettun.Create(f.inTun, f.mtu)
	if err != nil {
		return fmt.Errorf("run: create %s: %w", f.inTun, err)
	}
	out, err := vnettun.Create(f.outTun, f.mtu)
	if err != nil {
		in.Close()
		return fmt.Errorf("run: create %s: %w", f.outTun, err)
	}
	fw, err := fwx.New(fwx.Config{
		Inside:      in,
		Outside:     out,
		InsideAddr:  inAddr,
		OutsideAddr: outAddr,
		Policy:      pol,
		Log:         diag,
		FirewallLog: fwlog,
	})
	if err != nil {
		in.Close()
		out.Close()
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
	diag.Info().Str("in_tun", f.inTun).Stringer("in_addr", inAddr).Str("out_tun", f.outTun).
		Stringer("out_addr", outAddr).Str("policy", policyName(f.policy)).Msg("fwx running")
	err = fw.Run(ctx)
	diag.Info().Err(err).Msg("fwx stopped")
	return err
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
