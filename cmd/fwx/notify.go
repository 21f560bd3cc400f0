package main

import (
	"net"
	"os"
	"strconv"

	"github.com/rs/zerolog"
	"golang.org/x/sys/unix"
)

// notifier tells systemd how fwx run is doing, when it runs as a unit of
// Type=notify (sd_notify(3)): READY=1 once it forwards and after each
// reload, RELOADING=1 with MONOTONIC_USEC while a reload runs, STOPPING=1
// on its way out. Outside systemd ($NOTIFY_SOCKET unset) it does nothing.
// Its methods may be called on a nil *notifier.
type notifier struct {
	conn *net.UnixConn
	log  zerolog.Logger
}

// newNotifier connects to $NOTIFY_SOCKET, if set, and unsets it so that
// nothing fwx starts inherits it.
func newNotifier(log zerolog.Logger) *notifier {
	addr := os.Getenv("NOTIFY_SOCKET")
	if addr == "" {
		return nil
	}
	os.Unsetenv("NOTIFY_SOCKET")
	// A name starting with @ is in the abstract namespace; Go's net
	// package reads it so.
	c, err := net.DialUnix("unixgram", nil, &net.UnixAddr{Name: addr, Net: "unixgram"})
	if err != nil {
		log.Warn().Err(err).Str("socket", addr).Msg("NOTIFY_SOCKET: cannot reach systemd")
		return nil
	}
	return &notifier{conn: c, log: log}
}

func (n *notifier) send(state string) {
	if n == nil {
		return
	}
	if _, err := n.conn.Write([]byte(state)); err != nil {
		n.log.Warn().Err(err).Msg("NOTIFY_SOCKET: write failed")
	}
}

func (n *notifier) ready() { n.send("READY=1\nSTATUS=forwarding") }

func (n *notifier) reloading() {
	var ts unix.Timespec
	unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts)
	usec := ts.Sec*1_000_000 + ts.Nsec/1000
	n.send("RELOADING=1\nSTATUS=reloading the policy\nMONOTONIC_USEC=" + strconv.FormatInt(usec, 10))
}

func (n *notifier) stopping() { n.send("STOPPING=1\nSTATUS=stopping") }

func (n *notifier) close() {
	if n != nil {
		n.conn.Close()
	}
}
