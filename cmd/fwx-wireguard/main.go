// Command fwx-wireguard is a WireGuard server with fwx inside: the example
// of a VPN product that embeds fwx (docs/EMBED.md walks through it).
//
//	fwx-wireguard --name wg0 --in-addr 10.8.0.1/24 --out-tun fwxo --out-addr 198.51.100.1/24
//	fwx-wireguard --name wg0 --in-addr 10.8.0.1/24 --out host [--out-dev eth0]
//
// wireguard-go's device decrypts what the peers send and hands the packets
// to its TUN. Here that TUN is one end of an in-process device pair
// (memtun.NewPair), whose other end is fwx's inside: the peers are fwx's
// SecureNAT clients, and no kernel TUN lies between the tunnel and the
// firewall. fwx's outside is a TUN it creates (router mode, --out-tun) or
// the host's own network (host mode, --out host).
//
// The WireGuard side is configured as wireguard-go's own command is:
// through the UAPI socket /var/run/wireguard/NAME.sock, so wg(8) works
// unchanged (wg setconf NAME FILE, wg show NAME). fwx-wireguard runs until
// SIGINT or SIGTERM, or until the tunnel or fwx fails.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/rs/zerolog"
	"golang.zx2c4.com/wireguard/conn"
	"golang.zx2c4.com/wireguard/device"
	"golang.zx2c4.com/wireguard/ipc"

	"github.com/fwx-dev/fwx"
	_ "github.com/fwx-dev/fwx/filters/ftp" // registers the "ftp" filter
	"github.com/fwx-dev/fwx/netstack/hostnet"
	"github.com/fwx-dev/fwx/netstack/memtun"
	"github.com/fwx-dev/fwx/netstack/vnettun"
	"github.com/fwx-dev/fwx/session/policy"
)

func main() {
	if err := run(os.Args[1:]); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return
		}
		fmt.Fprintln(os.Stderr, "fwx-wireguard:", err)
		os.Exit(1)
	}
}

type options struct {
	name            string
	inAddr, outAddr string
	outTun, out     string
	outDev          string
	policy, fwlog   string
	mtu             int
	verbose         bool
}

func parse(args []string) (*options, error) {
	var o options
	fs := flag.NewFlagSet("fwx-wireguard", flag.ContinueOnError)
	fs.StringVar(&o.name, "name", "wg0", "WireGuard interface name: the UAPI socket is /var/run/wireguard/NAME.sock")
	fs.StringVar(&o.inAddr, "in-addr", "", "fwx's address inside the tunnel, the peers' gateway, as CIDR (required; a comma-separated list for dual stack)")
	fs.StringVar(&o.outTun, "out-tun", "", "router mode: name of the outside TUN device to create")
	fs.StringVar(&o.outAddr, "out-addr", "", "router mode: fwx's outside address, the peers' SecureNAT source, as CIDR (a comma-separated list for dual stack)")
	fs.StringVar(&o.out, "out", "", `"host": the outside is the host's own network (host mode)`)
	fs.StringVar(&o.outDev, "out-dev", "", "host mode: bind fwx's sockets to this interface")
	fs.StringVar(&o.policy, "policy", "", "fwx policy file (YAML); empty means the built-in default")
	fs.StringVar(&o.fwlog, "fwlog", "", "write the firewall log to this file instead of standard output")
	fs.IntVar(&o.mtu, "mtu", device.DefaultMTU, "MTU of the tunnel")
	fs.BoolVar(&o.verbose, "v", false, "verbose diagnostics (WireGuard's too)")
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	switch {
	case fs.NArg() > 0:
		return nil, fmt.Errorf("unexpected argument %q", fs.Arg(0))
	case o.inAddr == "":
		return nil, errors.New("--in-addr is required")
	case o.out == "host" && (o.outTun != "" || o.outAddr != ""):
		return nil, errors.New("--out host excludes --out-tun and --out-addr")
	case o.out == "" && (o.outTun == "" || o.outAddr == ""):
		return nil, errors.New("name the outside: --out-tun and --out-addr (router mode), or --out host")
	case o.out != "" && o.out != "host":
		return nil, fmt.Errorf("--out %q: the only value is host", o.out)
	}
	return &o, nil
}

func run(args []string) error {
	o, err := parse(args)
	if err != nil {
		return err
	}
	level := zerolog.InfoLevel
	if o.verbose {
		level = zerolog.DebugLevel
	}
	diag := zerolog.New(os.Stderr).Level(level).With().Timestamp().Logger()

	// The firewall log is written on the packet path: a fwx.LogQueue
	// queues it, so a slow destination costs records, never packets.
	fwlogDst := io.Writer(os.Stdout)
	if o.fwlog != "" {
		f, err := os.OpenFile(o.fwlog, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o640)
		if err != nil {
			return fmt.Errorf("--fwlog: %w", err)
		}
		defer f.Close()
		fwlogDst = f
	}
	fwlog := fwx.NewLogQueue(fwlogDst, fwx.LogQueueOptions{})
	defer fwlog.Close(5 * time.Second)

	cfg, closeOutside, err := firewallConfig(o, diag)
	if err != nil {
		return err
	}
	cfg.FirewallLog = zerolog.New(fwlog)

	// The tunnel's TUN and fwx's inside are the two ends of one pair.
	wgTun, fwxTun := memtun.NewPair(o.name, o.name+"-fwx", o.mtu)
	cfg.Inside = fwxTun
	fw, err := fwx.New(cfg)
	if err != nil {
		fwxTun.Close()
		closeOutside()
		return err
	}
	wg := device.NewDevice(wgTun, conn.NewDefaultBind(), wireguardLogger(diag))
	defer wg.Close()
	uapi, err := listenUAPI(o.name, wg)
	if err != nil {
		fwxTun.Close()
		closeOutside()
		return err
	}
	defer uapi.Close()

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	go reloadOn(ctx, hup, fw, o.policy, diag)
	go func() {
		// The tunnel closes itself when its TUN (the pair) closes or
		// it fails; either way fwx has nothing left to serve.
		<-wg.Wait()
		cancel()
	}()
	diag.Info().Str("name", o.name).Str("in_addr", o.inAddr).
		Stringer("out_addr", fw.OutsideAddr().Addr()).Msg("fwx-wireguard running")
	// Run owns both of fwx's devices and closes them when it returns;
	// closing fwx's end of the pair closes the tunnel's end too.
	err = fw.Run(ctx)
	diag.Info().Err(err).Msg("fwx-wireguard stopped")
	return err
}

// reloadOn re-reads the policy file and puts it into effect at each
// signal on hup, as fwx run does at SIGHUP: the tunnel and its flows stay
// up, and a policy with errors is refused with them, the running one
// staying.
func reloadOn(ctx context.Context, hup <-chan os.Signal, fw *fwx.Firewall, file string, diag zerolog.Logger) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-hup:
		}
		if file == "" {
			diag.Warn().Msg("reload: no --policy file to re-read; the built-in default stays")
			continue
		}
		p, err := loadPolicy(file, diag)
		if err == nil {
			var r fwx.ReloadReport
			if r, err = fw.Reload(p); err == nil {
				diag.Info().Str("policy", file).Interface("report", r).Msg("policy reloaded")
				continue
			}
		}
		diag.Error().Err(err).Str("policy", file).Msg("reload refused; the running policy stays")
	}
}

// loadPolicy reads the policy file and logs its warnings (a rule that can
// never match, say), as fwx run does: a policy may load and still not say
// what its author meant.
func loadPolicy(file string, log zerolog.Logger) (*policy.Policy, error) {
	p, err := policy.Load(file)
	if err != nil {
		return nil, err
	}
	for _, w := range p.Warnings() {
		log.Warn().Msg(w.Error()) // it names the file and line
	}
	return p, nil
}

// firewallConfig builds fwx's configuration from the options, except its
// inside and its firewall log, and returns a function that releases the outside if fwx does not
// start.
func firewallConfig(o *options, log zerolog.Logger) (fwx.Config, func(), error) {
	cfg := fwx.Config{Policy: policy.Default(), Log: log}
	in, err := prefixes(o.inAddr)
	if err != nil {
		return cfg, nil, fmt.Errorf("--in-addr: %w", err)
	}
	cfg.InsideAddr, cfg.InsideAddrs = in[0], in[1:]
	if o.policy != "" {
		if cfg.Policy, err = loadPolicy(o.policy, log); err != nil {
			return cfg, nil, err
		}
	}
	if o.out == "host" {
		dev, addr, err := hostnet.Uplink(o.outDev)
		if err == nil {
			// The uplink's IPv6 address too, when IPv6 leaves through it.
			addr6, _ := hostnet.Uplink6(dev)
			cfg.Host, err = hostnet.New(hostnet.Options{Addr: addr, Addr6: addr6, Device: o.outDev, Log: log})
		}
		if err != nil {
			return cfg, nil, fmt.Errorf("host mode: %w", err)
		}
		return cfg, func() { cfg.Host.Close() }, nil
	}
	outs, err := prefixes(o.outAddr)
	if err != nil {
		return cfg, nil, fmt.Errorf("--out-addr: %w", err)
	}
	cfg.OutsideAddr, cfg.OutsideAddrs = outs[0], outs[1:]
	// vnettun keeps GSO superpackets whole on the outside; fwx cuts them
	// into segments for the pair, which has no offloads.
	out, err := vnettun.Create(o.outTun, 1500)
	if err != nil {
		return cfg, nil, fmt.Errorf("create %s: %w", o.outTun, err)
	}
	cfg.Outside = out
	return cfg, func() { out.Close() }, nil
}

// listenUAPI serves wireguard-go's configuration protocol for dev on
// /var/run/wireguard/NAME.sock until the listener is closed.
func listenUAPI(name string, dev *device.Device) (net.Listener, error) {
	file, err := ipc.UAPIOpen(name)
	if err != nil {
		return nil, fmt.Errorf("uapi: %w", err)
	}
	ln, err := ipc.UAPIListen(name, file)
	if err != nil {
		file.Close()
		return nil, fmt.Errorf("uapi: %w", err)
	}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go dev.IpcHandle(c)
		}
	}()
	return ln, nil
}

// wireguardLogger sends wireguard-go's log lines to fwx's diagnostics.
func wireguardLogger(log zerolog.Logger) *device.Logger {
	log = log.With().Str("component", "wireguard").Logger()
	return &device.Logger{
		Verbosef: func(format string, args ...any) { log.Debug().Msgf(format, args...) },
		Errorf:   func(format string, args ...any) { log.Error().Msgf(format, args...) },
	}
}

// prefixes parses a comma-separated list of addresses with their prefix
// lengths: one, or one per family for dual stack.
func prefixes(s string) ([]netip.Prefix, error) {
	var ps []netip.Prefix
	for _, f := range strings.Split(s, ",") {
		p, err := netip.ParsePrefix(strings.TrimSpace(f))
		if err != nil {
			return nil, err
		}
		ps = append(ps, p)
	}
	return ps, nil
}
