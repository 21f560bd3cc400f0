package filters

import (
	"fmt"
	"slices"
	"sync"

	"github.com/fwx-dev/fwx/session"
	"github.com/fwx-dev/fwx/session/policy"
)

// Entry is a registered filter: its name, how to make one, and the
// settings a policy rule may give it (its schema).
type Entry struct {
	Name string
	New  func() session.Filter
	// Settings declares the keys the filter takes in a rule's
	// filter_settings; none when empty. The filter reads them from
	// [session.Connection.Settings].
	Settings []policy.Setting
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

// Register adds a filter to r, with the settings it takes in a policy
// rule's filter_settings. Registering a name twice, or declaring a setting
// twice or without a type, panics: it is a programming error, found at
// start.
func (r *Registry) Register(name string, newFilter func() session.Filter, settings ...policy.Setting) {
	if name == "" || newFilter == nil {
		panic("filters: Register with an empty name or nil constructor")
	}
	for i, s := range settings {
		if s.Name == "" || s.Type.String() == "invalid" || slices.ContainsFunc(settings[:i], func(o policy.Setting) bool { return o.Name == s.Name }) {
			panic(fmt.Sprintf("filters: filter %q: bad or repeated setting %q", name, s.Name))
		}
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if slices.ContainsFunc(r.entries, func(e Entry) bool { return e.Name == name }) {
		panic(fmt.Sprintf("filters: filter %q registered twice", name))
	}
	r.entries = append(r.entries, Entry{name, newFilter, slices.Clone(settings)})
}

// Register adds a filter to [Default]; compiled-in filters call it from
// init.
func Register(name string, newFilter func() session.Filter, settings ...policy.Setting) {
	Default.Register(name, newFilter, settings...)
}

// Schema returns the settings the filter registered under name takes, and
// whether there is one: what [policy.Policy.CheckSettings] wants.
func (r *Registry) Schema(name string) ([]policy.Setting, bool) {
	e, ok := r.Lookup(name)
	return e.Settings, ok
}

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
