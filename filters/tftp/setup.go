package tftp

import (
	"fmt"
	"time"

	"github.com/rs/zerolog"

	"github.com/fwx-dev/fwx/filters"
	"github.com/fwx-dev/fwx/session"
	"github.com/fwx-dev/fwx/session/policy"
)

// Name is the name the filter registers under in [filters.Default]: a
// policy protocol turns it on with `filter: tftp`.
const Name = "tftp"

// Settings are the keys a policy rule's filter_settings may give the
// filter, for the transfers the rule allows: read_only (bool) and idle
// (duration), the Config fields of those names.
var Settings = []policy.Setting{
	{Name: "read_only", Type: policy.BoolSetting},
	{Name: "idle", Type: policy.DurationSetting},
}

func init() { Register(&filters.Default) }

// Register adds the filter, with the default Config, to r.
func Register(r *filters.Registry) {
	r.Register(Name, func() session.Filter { return New(Config{}) }, Settings...)
}

// Config configures the filter. The zero value is the default.
type Config struct {
	// ReadOnly refuses write requests: the client gets an ERROR (access
	// violation) from fwx, and the server never sees the request.
	ReadOnly bool
	// Idle is how long a transfer may go without a datagram before fwx
	// ends it, as an aborted transfer; at least twice the timeout the
	// client and server agreed on. Zero means 60 s.
	Idle time.Duration
	// Linger is how long a finished transfer's flow stays open after the
	// last acknowledgment, for a retransmission of the last block if that
	// acknowledgment was lost (RFC 1350's dallying). Zero means 3 s.
	Linger time.Duration
	// Log receives diagnostics. The zero value discards them.
	Log zerolog.Logger
}

// maxIdle bounds the idle setting: long enough for any retransmission
// schedule, short enough that a stray permission does not live on.
const maxIdle = time.Hour

func (c Config) withDefaults() Config {
	if c.Idle == 0 {
		c.Idle = 60 * time.Second
	}
	if c.Linger == 0 {
		c.Linger = 3 * time.Second
	}
	return c
}

func (c Config) validate() error {
	switch {
	case c.Idle < 0 || c.Idle > maxIdle:
		return fmt.Errorf("filters/tftp: Idle %v: want 0 to %v", c.Idle, maxIdle)
	case c.Linger < 0 || c.Linger > time.Minute:
		return fmt.Errorf("filters/tftp: Linger %v: want 0 to 1m", c.Linger)
	}
	return nil
}

// forConnection returns the Config for a connection a rule decided: its
// filter_settings override the filter's own.
func (c Config) forConnection(conn *session.Connection) Config {
	s := conn.Settings()
	if ro, ok := s.Bool("read_only"); ok {
		c.ReadOnly = ro
	}
	if idle, ok := s.Duration("idle"); ok && idle > 0 && idle <= maxIdle {
		c.Idle = idle
	}
	return c
}

// New returns a TFTP filter.
func New(cfg Config) *Filter { return &Filter{cfg: cfg.withDefaults()} }
