package filters

import (
	"fmt"
	"slices"
	"sync"

	"github.com/fwx-dev/fwx/session"
)

// Entry is a registered filter: its name and how to make one.
type Entry struct {
	Name string
	New  func() session.Filter
}

// Registry is an ordered set of filters. Filters receive events in the
// order they were registered. The zero value is empty and ready to use; it
// is safe for concurrent use.
type Registry struct {
	mu      sync.Mutex
	entries []Entry
}

// Default holds the filters compiled into fwx.
var Default Registry

// Register adds a filter to r. Registering a name twice panics: it is a
// programming error, found at start.
func (r *Registry) Register(name string, newFilter func() session.Filter) {
	if name == "" || newFilter == nil {
		panic("filters: Register with an empty name or nil constructor")
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if slices.ContainsFunc(r.entries, func(e Entry) bool { return e.Name == name }) {
		panic(fmt.Sprintf("filters: filter %q registered twice", name))
	}
	r.entries = append(r.entries, Entry{name, newFilter})
}

// Register adds a filter to [Default]; compiled-in filters call it from
// init.
func Register(name string, newFilter func() session.Filter) { Default.Register(name, newFilter) }

// Entries returns the registered filters in order.
func (r *Registry) Entries() []Entry {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.entries)
}

// Lookup returns the filter registered under name.
func (r *Registry) Lookup(name string) (Entry, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	i := slices.IndexFunc(r.entries, func(e Entry) bool { return e.Name == name })
	if i < 0 {
		return Entry{}, false
	}
	return r.entries[i], true
}
