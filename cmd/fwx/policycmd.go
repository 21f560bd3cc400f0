package main

import (
	"bytes"
	"fmt"
	"io"
	"os"

	"github.com/fwx-dev/fwx"
	"github.com/fwx-dev/fwx/session/policy"
)

const policySynopsis = `usage: fwx policy FILE
       fwx policy -          (the policy on standard input)

Checks a policy file as fwx run and a reload would, and reports every
problem with its line: YAML, names and references, publication conflicts,
filters this fwx does not have, and an empty file. Warnings (such as a rule
that lets a filtered protocol bypass its filter) are printed too; they do
not fail the check. Exits 0 when fwx would run the file.
`

func policyCmd(args []string, e env) error {
	fs := flagSet("fwx policy", policySynopsis, e)
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() != 1 {
		return usagef("fwx policy: want one policy file (or - for standard input)")
	}
	name := fs.Arg(0)
	var data []byte
	var err error
	if name == "-" {
		name = "stdin"
		data, err = io.ReadAll(e.stdin)
	} else {
		data, err = os.ReadFile(name)
	}
	if err != nil {
		return fmt.Errorf("policy: %w", err)
	}
	p, err := checkPolicy(name, data)
	if err != nil {
		return err
	}
	warnings := p.Warnings()
	for _, w := range warnings {
		fmt.Fprintf(e.stderr, "warning: %v\n", w)
	}
	fmt.Fprintf(e.stdout, "%s: ok", name)
	if len(warnings) > 0 {
		fmt.Fprintf(e.stdout, " (%s)", plural(len(warnings), "warning"))
	}
	fmt.Fprintln(e.stdout)
	return nil
}

// loadRunPolicy loads the policy file of fwx run, or the built-in default
// when path is empty.
func loadRunPolicy(path string) (*policy.Policy, error) {
	if path == "" {
		return policy.Default(), nil
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("policy: %w", err)
	}
	return checkPolicy(path, data)
}

// checkPolicy parses a policy file and makes every check fwx run makes.
func checkPolicy(name string, data []byte) (*policy.Policy, error) {
	if isBlank(data) {
		return nil, fmt.Errorf("policy: %s is empty: fwx would deny every flow. Leave --policy out to run the built-in default (the inside may go out, nothing comes in), or write \"rules: []\" to deny everything on purpose", name)
	}
	p, err := policy.Parse(name, data)
	if err != nil {
		return nil, err
	}
	if err := fwx.CheckPolicy(p, nil); err != nil {
		return nil, err
	}
	return p, nil
}

// isBlank reports whether a YAML file holds nothing but blank lines,
// comments and document markers.
func isBlank(data []byte) bool {
	for line := range bytes.Lines(data) {
		line = bytes.TrimSpace(line)
		if len(line) > 0 && line[0] != '#' && !bytes.Equal(line, []byte("---")) && !bytes.Equal(line, []byte("...")) {
			return false
		}
	}
	return true
}
