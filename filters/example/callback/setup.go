package callback

import (
	"github.com/fwx-dev/fwx/filters"
	"github.com/fwx-dev/fwx/session"
)

// Name is the name the filter registers under: a policy protocol turns it
// on with "filter: callback".
const Name = "callback"

// Register adds the callback filter, with the default Config, to r. It is
// an example filter, so it does not register itself in filters.Default
// from init; a program that wants it calls Register, or registers New
// with a Config of its own.
func Register(r *filters.Registry) {
	r.Register(Name, func() session.Filter { return New(Config{}) })
}
