// Command fwxload is the TCP load generator of scripts/bench. It measures
// what iperf3 does not: how many short TCP connections per second pass a
// middlebox, and how long one small request/response takes through it.
//
//	fwxload serve --listen ADDR:PORT
//	fwxload cps   --target ADDR:PORT [--duration 2s] [--concurrency 8] [--timeout 5s]
//	fwxload rr    --target ADDR:PORT [--duration 2s] [--timeout 5s]
//
// serve runs an echo server until SIGINT or SIGTERM: every byte a client
// sends comes back on the same connection.
//
// cps opens connections for the given duration from --concurrency workers.
// Each connection is one sample: connect, send 1 byte, read the 1-byte echo,
// close. It prints one JSON object:
//
//	{"conns":12000,"per_sec":5990.1,"p50_us":310.2,"p99_us":1450.7,"errors":0,"duration_s":2.003}
//
// conns counts the connections that completed, per_sec is conns divided by
// the wall time from the first connect to the last close, p50_us and p99_us
// are the 50th and 99th percentile (nearest rank) of one connection's time
// from the start of connect to the end of close, in microseconds; errors
// counts connections that failed (first_error then says why).
//
// rr opens one connection and, for the given duration, sends 1 byte and
// waits for its echo before sending the next (TCP_NODELAY is on, as Go
// sets it by default). It prints
//
//	{"rtts":41000,"p50_us":45.1,"p99_us":98.0,"duration_s":2.0}
//
// Exit status is 0 when the measurement ran (even with errors counted in
// the result), 1 when it could not run at all, 2 on bad usage.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/netip"
	"os"
	"os/signal"
	"syscall"
	"time"
)

const usage = `usage:
  fwxload serve --listen ADDR:PORT
  fwxload cps   --target ADDR:PORT [--duration D] [--concurrency N] [--timeout D]
  fwxload rr    --target ADDR:PORT [--duration D] [--timeout D]

Run 'fwxload CMD -h' for the flags of CMD.
`

func main() {
	if len(os.Args) < 2 {
		fmt.Fprint(os.Stderr, usage)
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	var err error
	switch os.Args[1] {
	case "serve":
		err = serveCmd(ctx, os.Args[2:])
	case "cps":
		err = cpsCmd(ctx, os.Args[2:], os.Stdout)
	case "rr":
		err = rrCmd(ctx, os.Args[2:], os.Stdout)
	case "-h", "--help", "help":
		fmt.Print(usage)
		return
	default:
		fmt.Fprintf(os.Stderr, "fwxload: unknown command %q\n\n%s", os.Args[1], usage)
		os.Exit(2)
	}
	var uerr usageError
	switch {
	case err == nil:
	case errors.Is(err, flag.ErrHelp):
	case errors.As(err, &uerr):
		fmt.Fprintf(os.Stderr, "fwxload: %v\n", err)
		os.Exit(2)
	default:
		fmt.Fprintf(os.Stderr, "fwxload: %v\n", err)
		os.Exit(1)
	}
}

// usageError is a bad command line (exit status 2).
type usageError struct{ msg string }

func (e usageError) Error() string { return e.msg }

// parseFlags parses args with fs; a malformed flag is a usageError, -h is
// returned as [flag.ErrHelp].
func parseFlags(fs *flag.FlagSet, args []string) error {
	err := fs.Parse(args)
	if err == nil || errors.Is(err, flag.ErrHelp) {
		return err
	}
	return usageError{err.Error()}
}

// parseAddrFlag parses the value of --name as an address and port.
func parseAddrFlag(name, v string) (netip.AddrPort, error) {
	if v == "" {
		return netip.AddrPort{}, usageError{fmt.Sprintf("--%s is required", name)}
	}
	ap, err := netip.ParseAddrPort(v)
	if err != nil {
		return netip.AddrPort{}, usageError{fmt.Sprintf("--%s: %v", name, err)}
	}
	return ap, nil
}

func serveCmd(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("fwxload serve", flag.ContinueOnError)
	listen := fs.String("listen", "", "address and port to listen on, e.g. 198.51.100.2:7000 (required)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	ap, err := parseAddrFlag("listen", *listen)
	if err != nil {
		return err
	}
	srv, err := listenEcho(ap)
	if err != nil {
		return err
	}
	fmt.Fprintf(os.Stderr, "fwxload: echo server on %s\n", srv.Addr())
	<-ctx.Done()
	return srv.Close()
}

// clientFlags are the flags cps and rr share.
type clientFlags struct {
	target   netip.AddrPort
	duration time.Duration
	timeout  time.Duration
}

func parseClientFlags(fs *flag.FlagSet, args []string, extra func()) (clientFlags, error) {
	target := fs.String("target", "", "address and port of a fwxload echo server (required)")
	duration := fs.Duration("duration", 2*time.Second, "how long to measure")
	timeout := fs.Duration("timeout", 5*time.Second, "limit for one connection or one round trip")
	if extra != nil {
		extra()
	}
	if err := parseFlags(fs, args); err != nil {
		return clientFlags{}, err
	}
	if fs.NArg() > 0 {
		return clientFlags{}, usageError{fmt.Sprintf("unexpected argument %q", fs.Arg(0))}
	}
	ap, err := parseAddrFlag("target", *target)
	if err != nil {
		return clientFlags{}, err
	}
	if *duration <= 0 || *timeout <= 0 {
		return clientFlags{}, usageError{"--duration and --timeout must be positive"}
	}
	return clientFlags{target: ap, duration: *duration, timeout: *timeout}, nil
}

func cpsCmd(ctx context.Context, args []string, out io.Writer) error {
	fs := flag.NewFlagSet("fwxload cps", flag.ContinueOnError)
	var concurrency *int
	f, err := parseClientFlags(fs, args, func() {
		concurrency = fs.Int("concurrency", 8, "connections in flight at once")
	})
	if err != nil {
		return err
	}
	if *concurrency < 1 {
		return usageError{"--concurrency must be at least 1"}
	}
	res := runCPS(ctx, CPSConfig{
		Target: f.target, Duration: f.duration, Concurrency: *concurrency, Timeout: f.timeout,
	})
	return writeJSON(out, res)
}

func rrCmd(ctx context.Context, args []string, out io.Writer) error {
	fs := flag.NewFlagSet("fwxload rr", flag.ContinueOnError)
	f, err := parseClientFlags(fs, args, nil)
	if err != nil {
		return err
	}
	res, err := runRR(ctx, RRConfig{Target: f.target, Duration: f.duration, Timeout: f.timeout})
	if err != nil {
		return err
	}
	return writeJSON(out, res)
}

func writeJSON(w io.Writer, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("fwxload: encode result: %w", err)
	}
	b = append(b, '\n')
	if _, err := w.Write(b); err != nil {
		return fmt.Errorf("fwxload: write result: %w", err)
	}
	return nil
}
