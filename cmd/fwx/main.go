// Command fwx runs the fwx firewall and NAT gateway, and talks to a running
// one.
//
//	fwx run --in-tun NAME --in-addr CIDR --out-tun NAME --out-addr CIDR [--policy FILE] [flags]
//	fwx run --in-tun NAME --in-addr CIDR --out host [--out-dev IFACE] [--out-addr ADDR] [flags]
//	fwx policy FILE|-
//	fwx status [--json] [--watch] [--addr A] [--port P] [--rule R]
//	fwx reload
//	fwx version
//
// In router mode fwx run creates the two TUN devices and forwards between
// them until SIGINT or SIGTERM. In host mode the outside is the host's own
// network: flows leave from ordinary sockets, and fwx needs no privilege
// when its TUN was created for its user beforehand (ip tuntap add ...
// user NAME). fwx does not configure addresses or routes on the devices:
// the administrator, or a test harness, does that, possibly after moving
// them into other network namespaces.
package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
)

const usage = `usage: fwx COMMAND [flags]

Commands:
  run       forward between the inside TUN and the outside (a TUN, or the host)
            until SIGINT or SIGTERM; SIGHUP reloads the policy, SIGUSR1 reopens
            the firewall log file
  policy    check a policy file as fwx run would: fwx policy FILE (- for stdin)
  status    show a running fwx's flows, sessions and counters
  reload    make a running fwx re-read its policy file (as SIGHUP does)
  version   print fwx's version and source revision

Run 'fwx COMMAND --help' for the flags of a command.
`

// Exit codes.
const (
	exitOK    = 0
	exitError = 1 // the command failed
	exitUsage = 2 // the command line was wrong
)

// usageError is a mistake on the command line: the exit code is 2.
type usageError struct{ error }

func usagef(format string, args ...any) error { return usageError{fmt.Errorf(format, args...)} }

// env is what a command reads and writes besides its arguments, so that
// tests run commands in process.
type env struct {
	stdin          io.Reader
	stdout, stderr io.Writer
}

func main() {
	os.Exit(cli(os.Args[1:], env{os.Stdin, os.Stdout, os.Stderr}))
}

// cli runs the command line args and returns the exit code.
func cli(args []string, e env) int {
	if len(args) == 0 {
		fmt.Fprint(e.stderr, usage)
		return exitUsage
	}
	var err error
	switch cmd, rest := args[0], args[1:]; cmd {
	case "run":
		err = run(rest, e)
	case "policy":
		err = policyCmd(rest, e)
	case "status":
		err = statusCmd(rest, e)
	case "reload":
		err = reloadCmd(rest, e)
	case "version", "--version", "-version":
		err = versionCmd(rest, e)
	case "help", "-h", "--help", "-help":
		fmt.Fprint(e.stdout, usage)
	default:
		err = usagef("unknown command %q; the commands are run, policy, status, reload and version", cmd)
	}
	return exitCode(err, e)
}

// exitCode reports err, if any, and returns the exit code for it.
func exitCode(err error, e env) int {
	var ue usageError
	switch {
	case err == nil, errors.Is(err, flag.ErrHelp):
		return exitOK
	case errors.As(err, &ue):
		fmt.Fprintf(e.stderr, "%s\nRun 'fwx --help' or 'fwx COMMAND --help' for usage.\n", message(err))
		return exitUsage
	}
	fmt.Fprintln(e.stderr, message(err))
	return exitError
}

// message prefixes an error with "fwx: " once.
func message(err error) string {
	msg := err.Error()
	if !strings.HasPrefix(msg, "fwx") {
		msg = "fwx: " + msg
	}
	return msg
}
