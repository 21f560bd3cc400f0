package main

import (
	"fmt"
	"runtime/debug"
)

const versionSynopsis = "usage: fwx version\n\nPrints fwx's module version, the source revision it was built from, and the Go version.\n"

func versionCmd(args []string, e env) error {
	fs := flagSet("fwx version", versionSynopsis, e)
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return usagef("fwx version: unexpected argument %q", fs.Arg(0))
	}
	fmt.Fprintln(e.stdout, version())
	return nil
}

// version describes the running binary from its build information: the
// module version ("(devel)" for a build from a work tree), the VCS
// revision and time, whether the tree was modified, and the Go version.
func version() string {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return "fwx (no build information)"
	}
	s := "fwx " + bi.Main.Version
	var rev, at, modified string
	for _, kv := range bi.Settings {
		switch kv.Key {
		case "vcs.revision":
			rev = kv.Value
		case "vcs.time":
			at = kv.Value
		case "vcs.modified":
			if kv.Value == "true" {
				modified = ", modified"
			}
		}
	}
	if rev != "" {
		s += fmt.Sprintf(" revision %s (%s%s)", rev, at, modified)
	} else {
		s += " (no source revision: built with -buildvcs=false or outside a repository)"
	}
	return s + " " + bi.GoVersion
}
