package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"regexp"
	"strings"
)

// A command's flags are written --name, as the README and the usage text
// write them; Go's flag package takes -name and --name alike but speaks of
// -name, so its messages and usage are redone here.

// flags is a command's flag set with its usage text.
type flags struct {
	*flag.FlagSet
	synopsis string
	out      io.Writer
}

// flagSet returns an empty flag set for command name (as in "fwx run")
// whose usage, printed to standard output on --help, is synopsis followed
// by the flags.
func flagSet(name, synopsis string, e env) *flags {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.Usage = func() {} // the flag package calls it on every error too
	return &flags{fs, synopsis, e.stdout}
}

// usage prints the command's synopsis and flags.
func (fs *flags) usage() {
	fmt.Fprint(fs.out, fs.synopsis)
	n := 0
	fs.VisitAll(func(*flag.Flag) { n++ })
	if n > 0 {
		fmt.Fprintln(fs.out, "\nFlags:")
		printFlags(fs.out, fs.FlagSet)
	}
}

// parseFlags parses args, printing the usage to standard output on --help
// (flag.ErrHelp is returned, for exit 0) and making any other problem a
// usage error that names flags as --name.
func parseFlags(fs *flags, args []string) error {
	err := fs.Parse(args)
	switch {
	case err == nil:
		return nil
	case errors.Is(err, flag.ErrHelp):
		fs.usage()
		return err
	}
	return usageError{fmt.Errorf("%s: %s", fs.Name(), dashes(err.Error()))}
}

var singleDash = regexp.MustCompile(`(^|[\s:])-([a-z][a-z0-9-]+)`)

// dashes rewrites Go's "-name" as "--name" in a flag package message.
func dashes(msg string) string { return singleDash.ReplaceAllString(msg, "$1--$2") }

// flagName returns how a flag is written: -v for one letter, else --name.
func flagName(name string) string {
	if len(name) == 1 {
		return "-" + name
	}
	return "--" + name
}

// printFlags lists fs's flags, one paragraph each.
func printFlags(w io.Writer, fs *flag.FlagSet) {
	fs.VisitAll(func(f *flag.Flag) {
		arg, text := flag.UnquoteUsage(f)
		head := "  " + flagName(f.Name)
		if arg != "" {
			head += " " + arg
		}
		if f.DefValue != "" && f.DefValue != "0" && f.DefValue != "false" {
			text += " (default " + f.DefValue + ")"
		}
		fmt.Fprintf(w, "%s\n      %s\n", head, strings.ReplaceAll(wrap(text, 74), "\n", "\n      "))
	})
}

// wrap breaks text into lines of at most width bytes at spaces.
func wrap(text string, width int) string {
	var b strings.Builder
	n := 0
	for i, word := range strings.Fields(text) {
		if i > 0 && n+1+len(word) > width {
			b.WriteByte('\n')
			n = 0
		} else if i > 0 {
			b.WriteByte(' ')
			n++
		}
		b.WriteString(word)
		n += len(word)
	}
	return b.String()
}
