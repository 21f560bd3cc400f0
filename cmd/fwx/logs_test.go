package main

import (
	"bytes"
	"os"
	"strings"
	"testing"
)

// TestConsoleLogsColourless: the console format writes no colour escape
// codes to what is not a terminal (a file, a pipe, a buffer), where an
// operator's grep or journal would show them as noise.
func TestConsoleLogsColourless(t *testing.T) {
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	var fw bytes.Buffer
	l, err := openLogs(&runConfig{logFormat: "console"}, env{stdout: &fw, stderr: w})
	if err != nil {
		t.Fatal(err)
	}
	l.fw.Info().Str("event", "allowed").Msg("flow")
	l.diag.Info().Str("in_tun", "fwx0").Msg("fwx running")
	l.close()
	w.Close()
	var diag bytes.Buffer
	diag.ReadFrom(r)
	for name, out := range map[string]string{"firewall log (buffer)": fw.String(), "diagnostics (pipe)": diag.String()} {
		if !strings.Contains(out, "INF") {
			t.Errorf("%s: no record in %q", name, out)
		}
		if strings.Contains(out, "\x1b[") {
			t.Errorf("%s: colour escape codes in %q", name, out)
		}
	}
}
