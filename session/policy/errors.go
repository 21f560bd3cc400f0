package policy

import (
	"bytes"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"
)

// Error is one problem in a policy file: the file, the line, the field and
// what is wrong with it. Its text is "FILE:LINE: PATH: MESSAGE", as in
//
//	policy.yaml:12: rules[1].from[0]: unknown network "lan"
//
// [Parse] and [Load] report every problem they find, not only the first:
// their error joins one *Error per problem (see [errors.Join]), sorted by
// line, so [errors.As] finds the first of them.
type Error struct {
	// File is the name given to Parse or the path given to Load; "policy"
	// when Parse was given no name.
	File string
	// Line is the 1-based line the problem is on.
	Line int
	// Path is the field path, such as "rules[1].from[0]"; empty for a YAML
	// syntax error.
	Path string
	// Msg says what is wrong.
	Msg string
}

// Error returns "FILE:LINE: PATH: MESSAGE".
func (e *Error) Error() string {
	var b strings.Builder
	b.WriteString(e.File)
	if e.Line > 0 {
		b.WriteByte(':')
		b.WriteString(strconv.Itoa(e.Line))
	}
	b.WriteString(": ")
	if e.Path != "" {
		b.WriteString(e.Path)
		b.WriteString(": ")
	}
	b.WriteString(e.Msg)
	return b.String()
}

// pos is where a value was in the file: its line and field path. Values
// keep it so that checks made after decoding (references, conflicts) can
// point at them.
type pos struct {
	line int
	path string
}

// errorList collects the errors of one Parse.
type errorList struct {
	file string
	errs []*Error
}

// errorf records a problem at p.
func (l *errorList) errorf(p pos, format string, args ...any) {
	l.errs = append(l.errs, &Error{File: l.file, Line: p.line, Path: p.path, Msg: fmt.Sprintf(format, args...)})
}

// err returns the collected errors sorted by line and joined, or nil.
func (l *errorList) err() error {
	if len(l.errs) == 0 {
		return nil
	}
	slices.SortStableFunc(l.errs, func(a, b *Error) int { return a.Line - b.Line })
	errs := make([]error, len(l.errs))
	for i, e := range l.errs {
		errs[i] = e
	}
	return errors.Join(errs...)
}

// syntax records a YAML syntax error from yaml.v3 decoding data. Its text
// is "yaml: line N: problem" or, when the problem is on the first line or
// found after parsing, "yaml: problem". yaml.v3 prints a scanner error's
// line 1-based but a parser error's 0-based (and then it is often the line
// where the enclosing block or flow collection starts), so parser errors get
// 1 added.
func (l *errorList) syntax(err error, data []byte) {
	msg := strings.TrimPrefix(err.Error(), "yaml: ")
	line := 0
	if rest, ok := strings.CutPrefix(msg, "line "); ok {
		if i := strings.Index(rest, ": "); i > 0 {
			if n, err := strconv.Atoi(rest[:i]); err == nil && n > 0 {
				line, msg = n, rest[i+2:]
			}
		}
	}
	if isParserProblem(msg) || line == 0 {
		line++
	}
	// An unknown alias is found after parsing, with no line; find its use.
	if name, ok := strings.CutPrefix(msg, "unknown anchor '"); ok && line == 1 {
		if name, ok = strings.CutSuffix(name, "' referenced"); ok {
			if i := bytes.Index(data, []byte("*"+name)); i >= 0 {
				line = 1 + bytes.Count(data[:i], []byte("\n"))
			}
		}
	}
	// Keep the report one line per problem, whatever yaml.v3 quoted.
	msg = strings.Map(func(r rune) rune {
		if r == '\n' || r == '\r' {
			return ' '
		}
		return r
	}, msg)
	l.errorf(pos{line: line}, "YAML syntax error: %s", msg)
}

// isParserProblem reports whether msg is one of the problems yaml.v3's
// parser (not its scanner) reports; see yaml_parser_set_parser_error in its
// parserc.go.
func isParserProblem(msg string) bool {
	switch msg {
	case "did not find expected <stream-start>",
		"did not find expected <document start>",
		"did not find expected node content",
		"did not find expected '-' indicator",
		"did not find expected key",
		"did not find expected ',' or ']'",
		"did not find expected ',' or '}'",
		"found undefined tag handle",
		"found duplicate %YAML directive",
		"found incompatible YAML document",
		"found duplicate %TAG directive":
		return true
	}
	return false
}

// kindName names a node's kind for messages such as "must be a list, not a
// mapping".
func kindName(n *yaml.Node) string {
	switch n.Kind {
	case yaml.SequenceNode:
		return "a list"
	case yaml.MappingNode:
		return "a mapping"
	case yaml.ScalarNode:
		return "a scalar"
	case yaml.AliasNode:
		return "an alias"
	}
	return "a document"
}

// suggest returns ` (did you mean "x"?)` when one of known is within two
// edits of s, so that typos such as "acton" point at "action"; else "".
func suggest(s string, known []string) string {
	best, bestDist := "", 3
	for _, k := range known {
		if d := editDistance(s, k); d < bestDist {
			best, bestDist = k, d
		}
	}
	if best == "" || bestDist >= len(s) {
		return ""
	}
	return fmt.Sprintf(" (did you mean %q?)", best)
}

// editDistance is the Levenshtein distance between a and b, in bytes.
// Inputs longer than 64 bytes are not worth a suggestion.
func editDistance(a, b string) int {
	if len(a) > 64 || len(b) > 64 {
		return len(a) + len(b)
	}
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}
