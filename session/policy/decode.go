package policy

import (
	"strconv"
	"strings"
	"unicode"

	"gopkg.in/yaml.v3"
)

// decoder walks a policy file's yaml.Node tree. It decodes by hand rather
// than into tagged structs so that every problem can name its line and field
// path, and so that it can go on after one and report them all.
type decoder struct {
	errorList
}

// at returns the position of node n at path.
func at(n *yaml.Node, path string) pos { return pos{line: n.Line, path: path} }

// child returns the path of field key below path. Keys that are not plain
// names are quoted, so a path stays on one line and unambiguous.
func child(path, key string) string {
	if !isName(key) {
		return path + "[" + strconv.Quote(key) + "]"
	}
	if path == "" {
		return key
	}
	return path + "." + key
}

// index returns the path of item i of the list at path.
func index(path string, i int) string { return path + "[" + strconv.Itoa(i) + "]" }

// isNull reports whether n is YAML's null ("", "~" or "null" unquoted), which
// the decoder treats as an absent value.
func isNull(n *yaml.Node) bool { return n.Kind == yaml.ScalarNode && n.Tag == "!!null" }

// value returns n, or reports an error and returns nil if n is an alias.
// Aliases are refused: policies name what they reuse (networks, protocols),
// and a walk that followed aliases could be made to do quadratic work.
func (d *decoder) value(n *yaml.Node, path string) *yaml.Node {
	if n.Kind == yaml.AliasNode {
		d.errorf(at(n, path), "YAML aliases (*%s) are not supported; define a network or protocol and use its name", quote(n.Value))
		return nil
	}
	return n
}

// field describes one key of a mapping for [decoder.fields].
type field struct {
	name     string
	required bool
	// decode is called with the field's value unless it is null.
	decode func(v *yaml.Node, p pos)
}

// fields decodes the mapping n at path: it calls each field's decode with its
// value, and reports keys that are not fields (with a suggestion for typos),
// keys given twice, and required fields that are missing or null.
func (d *decoder) fields(n *yaml.Node, path string, fs ...field) {
	if n.Kind != yaml.MappingNode {
		if path == "" {
			d.errorf(at(n, path), "a policy file must be a mapping of sections (networks, protocols, rules, publish, options), not %s", kindName(n))
		} else {
			d.errorf(at(n, path), "must be a mapping, not %s", kindName(n))
		}
		return
	}
	seen := make([]*yaml.Node, len(fs)) // the key node of each field found
	got := make([]bool, len(fs))        // whether the field had a non-null value
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		if k.Kind != yaml.ScalarNode {
			d.errorf(at(k, path), "keys must be names, not %s", kindName(k))
			continue
		}
		kp := child(path, k.Value)
		j := fieldIndex(fs, k.Value)
		if j < 0 {
			d.errorf(at(k, kp), "unknown field%s; want one of %s", suggest(k.Value, fieldNames(fs)), strings.Join(fieldNames(fs), ", "))
			continue
		}
		if seen[j] != nil {
			d.errorf(at(k, kp), "field given twice (first at line %d)", seen[j].Line)
			continue
		}
		seen[j] = k
		if v = d.value(v, kp); v == nil {
			got[j] = true // reported; do not also call it missing
			continue
		}
		if isNull(v) {
			continue
		}
		got[j] = true
		fs[j].decode(v, at(v, kp))
	}
	for j, f := range fs {
		switch {
		case !f.required || got[j]:
		case seen[j] != nil:
			d.errorf(at(seen[j], child(path, f.name)), "required field has no value")
		default:
			d.errorf(at(n, child(path, f.name)), "required field missing")
		}
	}
}

func fieldIndex(fs []field, name string) int {
	for i, f := range fs {
		if f.name == name {
			return i
		}
	}
	return -1
}

func fieldNames(fs []field) []string {
	names := make([]string, len(fs))
	for i, f := range fs {
		names[i] = f.name
	}
	return names
}

// list calls each for every item of n, a list or a single scalar (which is
// read as a list of one), and returns the number of items; -1 if n is
// neither.
func (d *decoder) list(n *yaml.Node, p pos, each func(item *yaml.Node, p pos)) int {
	switch n.Kind {
	case yaml.ScalarNode:
		each(n, p)
		return 1
	case yaml.SequenceNode:
		for i, item := range n.Content {
			ip := index(p.path, i)
			if item = d.value(item, ip); item != nil {
				each(item, at(item, ip))
			}
		}
		return len(n.Content)
	}
	d.errorf(p, "must be a list, not %s", kindName(n))
	return -1
}

// items calls each for every item of the list n; unlike [decoder.list] it
// accepts only a list, as sections of mappings need one.
func (d *decoder) items(n *yaml.Node, p pos, each func(item *yaml.Node, p pos)) {
	if n.Kind != yaml.SequenceNode {
		d.errorf(p, "must be a list, not %s", kindName(n))
		return
	}
	d.list(n, p, each)
}

// scalar returns n's text, or reports that n is not a scalar.
func (d *decoder) scalar(n *yaml.Node, p pos) (string, bool) {
	if n.Kind != yaml.ScalarNode {
		d.errorf(p, "must be a single value, not %s", kindName(n))
		return "", false
	}
	return n.Value, true
}

// maxName is the longest name a policy may give.
const maxName = 64

// isName reports whether s is a valid name for a network, protocol, rule or
// publish rule: 1 to 64 letters, digits, '-', '_' or '.'.
func isName(s string) bool {
	if s == "" || len(s) > maxName {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-' || c == '_' || c == '.') {
			return false
		}
	}
	return true
}

// name decodes a name (see [isName]).
func (d *decoder) name(n *yaml.Node, p pos) (string, bool) {
	s, ok := d.scalar(n, p)
	switch {
	case !ok:
		return "", false
	case s == "":
		d.errorf(p, "name must not be empty")
		return "", false
	case !isName(s):
		d.errorf(p, "bad name %s: use 1 to %d letters, digits, '-', '_' or '.'", quote(s), maxName)
		return "", false
	}
	return s, true
}

// enum decodes one of choices and returns its index.
func (d *decoder) enum(n *yaml.Node, p pos, choices ...string) (int, bool) {
	s, ok := d.scalar(n, p)
	if !ok {
		return 0, false
	}
	for i, c := range choices {
		if s == c {
			return i, true
		}
	}
	d.errorf(p, "bad value %s%s; want one of %s", quote(s), suggest(s, choices), strings.Join(choices, ", "))
	return 0, false
}

// quote quotes s for a message, truncating what is too long to read.
func quote(s string) string {
	if len(s) > 80 {
		s = s[:80] + "..."
	}
	return strconv.Quote(s)
}

// isFilterName reports whether s is acceptable as an application filter
// name. Filters are registered by name elsewhere, so this checks only that
// the name is printable text of sensible length.
func isFilterName(s string) bool {
	if len(s) > maxName || strings.TrimSpace(s) != s {
		return false
	}
	for _, r := range s {
		if !unicode.IsPrint(r) || r == unicode.ReplacementChar {
			return false
		}
	}
	return true
}
