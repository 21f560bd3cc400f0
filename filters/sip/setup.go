package sip

import (
	"fmt"
	"time"

	"github.com/fwx-dev/fwx/filters"
	"github.com/fwx-dev/fwx/session"
	"github.com/fwx-dev/fwx/session/policy"
)

// Name is the name the filter registers under in [filters.Default]: a
// policy protocol turns it on with `filter: sip`.
const Name = "sip"

// Settings are the keys a policy rule's filter_settings may give the
// filter, for the signalling its rule allows: max_message, max_fields,
// max_media, max_calls, max_registrations (integers), third_party_media
// (bool), ring_timeout and media_idle (durations): the Config fields of
// those names. A value out of a field's range is brought into it.
var Settings = []policy.Setting{
	{Name: "max_message", Type: policy.IntSetting},
	{Name: "max_fields", Type: policy.IntSetting},
	{Name: "max_media", Type: policy.IntSetting},
	{Name: "max_calls", Type: policy.IntSetting},
	{Name: "max_registrations", Type: policy.IntSetting},
	{Name: "third_party_media", Type: policy.BoolSetting},
	{Name: "ring_timeout", Type: policy.DurationSetting},
	{Name: "media_idle", Type: policy.DurationSetting},
}

func init() { Register(&filters.Default) }

// Register adds the filter, with the default Config, to r.
func Register(r *filters.Registry) {
	r.Register(Name, func() session.Filter { return New(Config{}) }, Settings...)
}

// Config configures the filter. The zero value is the default.
type Config struct {
	// MaxMessage is the largest SIP message the filter reads, in bytes,
	// head and body; a larger one is dropped (UDP) or ends the connection
	// (TCP). 0 means 16384; 1024 to 65535.
	MaxMessage int
	// MaxFields is the most header fields a message may have. 0 means
	// 64; 16 to 1024.
	MaxFields int
	// MaxMedia is the most media streams (RTP/RTCP pairs) one session
	// description may open. 0 means 4; 1 to 16.
	MaxMedia int
	// MaxCalls is the most calls with media a client may have at once.
	// 0 means 16; 1 to 1024.
	MaxCalls int
	// MaxRegistrations is the most registrations fwx keeps reachable for
	// a client. 0 means 4; 1 to 64.
	MaxRegistrations int
	// ThirdPartyMedia lets media come from the address a peer's session
	// description names even when it is not the peer's own (calls through
	// a proxy that does not relay media). By default media are accepted
	// only from the signalling peer, as Linux's sip_direct_media does.
	ThirdPartyMedia bool
	// RingTimeout ends the media ports of an offer that gets no answer.
	// 0 means 3 minutes (RFC 3261's Timer C); 10 s to 1 h.
	RingTimeout time.Duration
	// MediaIdle ends a call whose media and signalling have both been
	// quiet that long (its BYE was lost). 0 means 5 minutes; 30 s to 24 h.
	MediaIdle time.Duration
}

// bound is a Config field's default and range.
type bound[T int | time.Duration] struct{ def, lo, hi T }

var (
	maxMessage       = bound[int]{16384, 1024, 65535}
	maxFields        = bound[int]{64, 16, 1024}
	maxMedia         = bound[int]{4, 1, 16}
	maxCalls         = bound[int]{16, 1, 1024}
	maxRegistrations = bound[int]{4, 1, 64}
	ringTimeout      = bound[time.Duration]{3 * time.Minute, 10 * time.Second, time.Hour}
	mediaIdle        = bound[time.Duration]{5 * time.Minute, 30 * time.Second, 24 * time.Hour}
)

func (b bound[T]) orDefault(v T) T {
	if v == 0 {
		return b.def
	}
	return v
}

func (b bound[T]) clamp(v T) T { return min(max(v, b.lo), b.hi) }

func (b bound[T]) check(name string, v T) error {
	if v < b.lo || v > b.hi {
		return fmt.Errorf("filters/sip: %s %v: want %v to %v", name, v, b.lo, b.hi)
	}
	return nil
}

func (c Config) withDefaults() Config {
	c.MaxMessage = maxMessage.orDefault(c.MaxMessage)
	c.MaxFields = maxFields.orDefault(c.MaxFields)
	c.MaxMedia = maxMedia.orDefault(c.MaxMedia)
	c.MaxCalls = maxCalls.orDefault(c.MaxCalls)
	c.MaxRegistrations = maxRegistrations.orDefault(c.MaxRegistrations)
	c.RingTimeout = ringTimeout.orDefault(c.RingTimeout)
	c.MediaIdle = mediaIdle.orDefault(c.MediaIdle)
	return c
}

func (c Config) check() error {
	for _, err := range []error{
		maxMessage.check("MaxMessage", c.MaxMessage),
		maxFields.check("MaxFields", c.MaxFields),
		maxMedia.check("MaxMedia", c.MaxMedia),
		maxCalls.check("MaxCalls", c.MaxCalls),
		maxRegistrations.check("MaxRegistrations", c.MaxRegistrations),
		ringTimeout.check("RingTimeout", c.RingTimeout),
		mediaIdle.check("MediaIdle", c.MediaIdle),
	} {
		if err != nil {
			return err
		}
	}
	return nil
}

// forConnection returns the Config for signalling a rule decided: its
// filter_settings override the filter's own, within their ranges.
func (c Config) forConnection(conn *session.Connection) Config {
	s := conn.Settings()
	for _, f := range []struct {
		name string
		b    bound[int]
		v    *int
	}{
		{"max_message", maxMessage, &c.MaxMessage},
		{"max_fields", maxFields, &c.MaxFields},
		{"max_media", maxMedia, &c.MaxMedia},
		{"max_calls", maxCalls, &c.MaxCalls},
		{"max_registrations", maxRegistrations, &c.MaxRegistrations},
	} {
		if n, ok := s.Int(f.name); ok {
			*f.v = int(min(max(n, int64(f.b.lo)), int64(f.b.hi)))
		}
	}
	if d, ok := s.Duration("ring_timeout"); ok {
		c.RingTimeout = ringTimeout.clamp(d)
	}
	if d, ok := s.Duration("media_idle"); ok {
		c.MediaIdle = mediaIdle.clamp(d)
	}
	if b, ok := s.Bool("third_party_media"); ok {
		c.ThirdPartyMedia = b
	}
	return c
}

// limits returns what Parse accepts under c.
func (c Config) limits() Limits { return Limits{Size: c.MaxMessage, Fields: c.MaxFields} }

// New returns a SIP filter.
func New(cfg Config) *Filter { return &Filter{cfg: cfg.withDefaults()} }

// Filter is the SIP filter.
type Filter struct{ cfg Config }

var (
	_ session.Filter         = (*Filter)(nil)
	_ session.SessionFilter  = (*sessionFilter)(nil)
	_ session.DatagramFilter = (*datagrams)(nil)
	_ session.DataFilter     = (*tcpStream)(nil)
)

// Init implements session.Filter: the filter reads the signalling of its
// protocols, UDP flows and TCP connections a client starts. A bad Config
// stops fwx from starting.
func (f *Filter) Init() (session.Hooks, error) {
	if err := f.cfg.check(); err != nil {
		return session.Hooks{}, err
	}
	return session.Hooks{Events: session.EventUDPDestination | session.EventConnectTCP}, nil
}

// AttachToSession implements session.Filter.
func (f *Filter) AttachToSession(s *session.Session) (session.SessionFilter, error) {
	return newSessionFilter(f, s), nil
}

// Shutdown implements session.Filter.
func (f *Filter) Shutdown() {}
