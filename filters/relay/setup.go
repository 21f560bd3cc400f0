package relay

import (
	"github.com/fwx-dev/fwx/filters"
	"github.com/fwx-dev/fwx/session"
)

// Name is the name the filter registers under in [filters.Default]: a
// policy protocol turns it on with `filter: relay`.
const Name = "relay"

func init() {
	filters.Register(Name, func() session.Filter { return New(Config{}) })
}
