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

// buildInfo is what the binary knows of its build: the module version
// ("(devel)" for a build from a work tree), the VCS revision and time,
// whether the tree was modified, and the Go version.
type buildInfo struct {
	module, revision, at, goVersion string
	modified                        bool
}

func readBuildInfo() buildInfo {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return buildInfo{module: "(unknown)"}
	}
	b := buildInfo{module: bi.Main.Version, goVersion: bi.GoVersion}
	for _, kv := range bi.Settings {
		switch kv.Key {
		case "vcs.revision":
			b.revision = kv.Value
		case "vcs.time":
			b.at = kv.Value
		case "vcs.modified":
			b.modified = kv.Value == "true"
		}
	}
	return b
}

// version describes the running binary in full, for fwx version.
func version() string {
	b := readBuildInfo()
	s := "fwx " + b.module
	if b.revision == "" {
		s += " (no source revision: built with -buildvcs=false or outside a repository)"
	} else {
		modified := ""
		if b.modified {
			modified = ", modified"
		}
		s += fmt.Sprintf(" revision %s (%s%s)", b.revision, b.at, modified)
	}
	return s + " " + b.goVersion
}

// shortVersion is the module version and the revision's first 12 digits,
// for status and metrics.
func shortVersion() string {
	b := readBuildInfo()
	s := b.module
	if len(b.revision) >= 12 {
		s += " " + b.revision[:12]
		if b.modified {
			s += "+"
		}
	}
	return s
}
