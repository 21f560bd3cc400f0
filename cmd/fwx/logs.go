package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/rs/zerolog"

	"github.com/fwx-dev/fwx"
)

// logs are fwx run's two logs: the firewall log (standard output or
// --fwlog) and diagnostics (standard error). Each is written through a
// fwx.LogQueue, so that a reader that stops reading costs records, never
// forwarding, and a reader that goes away ends only its log.
type logs struct {
	fw, diag   zerolog.Logger
	fwq, diagq *fwx.LogQueue
	file       *logFile // the --fwlog file, or nil
}

// terminal reports whether w is a terminal: colours are for people at one,
// not for files and pipes, where their escape codes would be noise.
func terminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}

// closeTimeout bounds how long fwx waits at exit for a log's reader.
const closeTimeout = 2 * time.Second

func openLogs(c *runConfig, e env) (*logs, error) {
	l := &logs{}
	var fwOut io.Writer = e.stdout
	if c.fwlog != "" {
		f, err := openLogFile(c.fwlog, c.fwlogMaxSize, c.fwlogKeep)
		if err != nil {
			return nil, fmt.Errorf("run: --fwlog: %w", err)
		}
		l.file, fwOut = f, f
	}
	var diagOut = e.stderr
	if c.logFormat == "console" {
		// Formatting happens on the queues' goroutines, off the
		// packet path.
		fwOut = zerolog.ConsoleWriter{Out: fwOut, TimeFormat: time.TimeOnly, NoColor: !terminal(fwOut)}
		diagOut = zerolog.ConsoleWriter{Out: diagOut, TimeFormat: time.TimeOnly, NoColor: !terminal(diagOut)}
	}
	l.diagq = fwx.NewLogQueue(diagOut, fwx.LogQueueOptions{})
	level := zerolog.InfoLevel
	if c.verbose {
		level = zerolog.DebugLevel
	}
	l.diag = zerolog.New(l.diagq).Level(level).With().Timestamp().Logger()
	l.fwq = fwx.NewLogQueue(fwOut, fwx.LogQueueOptions{
		Rate: c.fwlogRate,
		OnError: func(err error) {
			l.diag.Error().Err(err).Msg("the firewall log's output failed: no more records are written until it is reopened (SIGUSR1, for a file); forwarding goes on")
		},
	})
	l.fw = zerolog.New(l.fwq)
	return l, nil
}

// reopenOn reopens the firewall log file each time a signal comes on ch
// (SIGUSR1), until ctx ends: logrotate renames the file, then signals fwx
// to write a new one.
func (l *logs) reopenOn(ctx context.Context, ch <-chan os.Signal) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-ch:
			if l.file == nil {
				l.diag.Info().Msg("SIGUSR1: the firewall log goes to standard output; nothing to reopen")
				continue
			}
			if err := l.file.Reopen(); err != nil {
				l.diag.Error().Err(err).Msg("SIGUSR1: reopening the firewall log failed")
				continue
			}
			l.fwq.Resume()
			l.diag.Info().Msg("SIGUSR1: firewall log reopened")
		}
	}
}

// close writes what the logs still hold, waiting a bounded time for
// readers that do not read: fwx's exit never hangs on its logs.
func (l *logs) close() {
	if err := l.fwq.Close(closeTimeout); err != nil {
		l.diag.Error().Err(err).Msg("firewall log")
	}
	if s := l.fwq.Stats(); s.Dropped+s.Suppressed+s.Lost > 0 {
		l.diag.Warn().Uint64("written", s.Written).Uint64("dropped", s.Dropped).
			Uint64("suppressed", s.Suppressed).Uint64("lost", s.Lost).Msg("firewall log records not written")
	}
	l.diagq.Close(closeTimeout)
	if l.file != nil {
		l.file.Close()
	}
}
