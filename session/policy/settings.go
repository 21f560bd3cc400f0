package policy

import (
	"errors"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"
)

// Per-rule filter settings (ISA 2004's per-rule "Configure FTP"): an access
// or publish rule may carry filter_settings, a mapping of values for the
// application filter of the protocols it allows. The file format checks
// their shape; the filter's schema, which fwx knows from the filter's
// registration, checks their keys and types ([Policy.CheckSettings]).

// SettingType is the type of a filter setting's value.
type SettingType uint8

// Setting types.
const (
	// BoolSetting: true or false.
	BoolSetting SettingType = iota + 1
	// IntSetting: an integer (decimal, or 0x, 0o, 0b prefixed).
	IntSetting
	// StringSetting: any single value, as text.
	StringSetting
	// DurationSetting: a non-negative Go duration, such as "30s".
	DurationSetting
)

var settingTypeNames = [...]string{BoolSetting: "bool", IntSetting: "int", StringSetting: "string", DurationSetting: "duration"}

// String returns the type's name.
func (t SettingType) String() string {
	if int(t) < len(settingTypeNames) && settingTypeNames[t] != "" {
		return settingTypeNames[t]
	}
	return "invalid"
}

// Setting declares one key a filter takes in a rule's filter_settings: its
// schema is a list of them, given when it registers.
type Setting struct {
	Name string
	Type SettingType
}

// Settings are the filter_settings of one rule, as the file gives them.
// Read them with the typed accessors, which report false for a key the
// rule does not set (or, before [Policy.CheckSettings], one of another
// type). The zero value holds none. Settings are immutable and safe for
// concurrent use. Settings values are comparable: equal when they are the
// same rule's.
type Settings struct {
	set *settingSet
}

type settingSet struct{ m map[string]settingValue }

// get returns the value of key name.
func (s Settings) get(name string) (settingValue, bool) {
	if s.set == nil {
		return settingValue{}, false
	}
	v, ok := s.set.m[name]
	return v, ok
}

// settingValue is one key of a rule's filter_settings.
type settingValue struct {
	text  string
	tag   string // YAML's resolved tag: !!bool, !!int, !!str, ...
	keyAt pos
	at    pos
}

// Len returns how many keys are set.
func (s Settings) Len() int {
	if s.set == nil {
		return 0
	}
	return len(s.set.m)
}

// Keys returns the keys set, sorted.
func (s Settings) Keys() []string {
	if s.set == nil {
		return nil
	}
	return slices.Sorted(maps.Keys(s.set.m))
}

// Bool returns a bool setting.
func (s Settings) Bool(name string) (value, ok bool) {
	v, ok := s.get(name)
	if !ok {
		return false, false
	}
	b, err := v.bool()
	return b, err == nil
}

// Int returns an int setting.
func (s Settings) Int(name string) (int64, bool) {
	v, ok := s.get(name)
	if !ok {
		return 0, false
	}
	n, err := v.int()
	return n, err == nil
}

// String returns a string setting.
func (s Settings) String(name string) (string, bool) {
	v, ok := s.get(name)
	return v.text, ok
}

// Duration returns a duration setting.
func (s Settings) Duration(name string) (time.Duration, bool) {
	v, ok := s.get(name)
	if !ok {
		return 0, false
	}
	d, err := v.duration()
	return d, err == nil
}

func (v settingValue) bool() (bool, error) {
	if v.tag != "!!bool" {
		return false, errors.New("want true or false")
	}
	return strconv.ParseBool(strings.ToLower(v.text))
}

func (v settingValue) int() (int64, error) {
	if v.tag != "!!int" {
		return 0, errors.New("want an integer")
	}
	text := strings.ReplaceAll(v.text, "_", "")
	if rest, ok := strings.CutPrefix(text, "0o"); ok {
		text = "0" + rest
	}
	n, err := strconv.ParseInt(text, 0, 64)
	if err != nil {
		return 0, errors.New("want an integer that fits in 64 bits")
	}
	return n, nil
}

func (v settingValue) duration() (time.Duration, error) {
	d, err := time.ParseDuration(v.text)
	switch {
	case err != nil:
		return 0, errors.New(`want a Go duration such as "30s" or "5m"`)
	case d < 0:
		return 0, errors.New("want a duration of 0 or more")
	}
	return d, nil
}

// check reports whether v is of type t.
func (v settingValue) check(t SettingType) error {
	var err error
	switch t {
	case BoolSetting:
		_, err = v.bool()
	case IntSetting:
		_, err = v.int()
	case DurationSetting:
		_, err = v.duration()
	}
	return err
}

// settings decodes a rule's filter_settings: a mapping from names to single
// values.
func (d *decoder) settings(n *yaml.Node, p pos) Settings {
	if n.Kind != yaml.MappingNode {
		d.errorf(p, "must be a mapping of setting names to values, such as {read_only: true}, not %s", kindName(n))
		return Settings{}
	}
	m := make(map[string]settingValue)
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		kp := at(k, child(p.path, k.Value))
		name, ok := d.name(k, kp)
		if !ok {
			continue
		}
		if first, dup := m[name]; dup {
			d.errorf(kp, "setting given twice (first at line %d)", first.keyAt.line)
			continue
		}
		if v = d.value(v, kp.path); v == nil {
			continue
		}
		if isNull(v) {
			d.errorf(kp, "setting has no value")
			continue
		}
		text, ok := d.scalar(v, at(v, kp.path))
		if !ok {
			continue
		}
		m[name] = settingValue{text: text, tag: v.ShortTag(), keyAt: kp, at: at(v, kp.path)}
	}
	return Settings{&settingSet{m}}
}

// settingsUse is a rule's filter_settings with the filter they are for.
type settingsUse struct {
	filter   string
	settings Settings
}

// settingsFilter returns the one filter of pds that a rule's settings at p
// are for, reporting a rule whose protocols name none or several.
func (r *resolver) settingsFilter(p pos, pds []*protocolDef) string {
	var names []string
	for _, pd := range pds {
		if pd.filter != "" && !slices.Contains(names, pd.filter) {
			names = append(names, pd.filter)
		}
	}
	switch len(names) {
	case 0:
		r.d.errorf(p, "no protocol of this rule has a filter to take the settings")
		return ""
	case 1:
		return names[0]
	}
	r.d.errorf(p, "the rule's protocols name several filters (%s); settings are for one: split the rule", strings.Join(names, ", "))
	return ""
}

// CheckSettings checks every rule's filter_settings against the schema of
// its filter, which schema returns (ok false: the filter is not known,
// which [Policy.CheckFilters] reports). A key the schema does not declare
// and a value of the wrong type are errors, each with its line. Its error
// joins one [*Error] per problem.
func (p *Policy) CheckSettings(schema func(filter string) ([]Setting, bool)) error {
	if p == nil {
		return nil
	}
	var errs []*Error
	for _, u := range p.settings {
		decl, ok := schema(u.filter)
		if !ok {
			continue
		}
		names := make([]string, len(decl))
		for i, s := range decl {
			names[i] = s.Name
		}
		takes := "it takes none"
		if len(names) > 0 {
			takes = "it takes " + strings.Join(names, ", ")
		}
		for _, key := range u.settings.Keys() {
			v, _ := u.settings.get(key)
			i := slices.IndexFunc(decl, func(s Setting) bool { return s.Name == key })
			if i < 0 {
				errs = append(errs, &Error{File: p.file, Line: v.keyAt.line, Path: v.keyAt.path,
					Msg: fmt.Sprintf("filter %q has no setting %q%s; %s", u.filter, key, suggest(key, names), takes)})
				continue
			}
			if err := v.check(decl[i].Type); err != nil {
				errs = append(errs, &Error{File: p.file, Line: v.at.line, Path: v.at.path,
					Msg: fmt.Sprintf("%s setting of filter %q: %v, not %s", decl[i].Type, u.filter, err, quote(v.text))})
			}
		}
	}
	slices.SortStableFunc(errs, func(a, b *Error) int { return a.Line - b.Line })
	out := make([]error, len(errs))
	for i, e := range errs {
		out[i] = e
	}
	return errors.Join(out...)
}

// Settings returns the filter_settings of the access rule named rule, or,
// when inbound, of the publish rule of that name; the zero Settings when it
// has none. fwx hands them to the filter with the rule's connections.
func (p *Policy) Settings(rule string, inbound bool) Settings {
	if p == nil {
		return Settings{}
	}
	if inbound {
		for i := range p.pubs {
			if p.pubs[i].Name == rule {
				return p.pubs[i].Settings
			}
		}
		return Settings{}
	}
	for i := range p.rules {
		if p.rules[i].name == rule {
			return p.rules[i].settings
		}
	}
	return Settings{}
}
