package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestControlSocket: the control socket is its owner's only (mode 0600,
// in a directory of mode 0700 when fwx makes it); a socket an fwx that
// died left behind is replaced, a live fwx's is not, and a path that is
// not a socket is refused, never removed.
func TestControlSocket(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "fwx")
	path := filepath.Join(dir, "fwxi.sock")
	s, err := listenControl(path)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		path string
		mode os.FileMode
	}{{dir, 0o700 | os.ModeDir}, {path, 0o600 | os.ModeSocket}} {
		if fi, err := os.Stat(c.path); err != nil || fi.Mode() != c.mode {
			t.Errorf("%s: mode %v (%v), want %v", c.path, fi.Mode(), err, c.mode)
		}
	}
	if _, err := listenControl(path); err == nil || !strings.Contains(err.Error(), "another fwx answers on it") {
		t.Errorf("a second fwx on a live socket: %v", err)
	}
	// An fwx that died leaves its socket: nobody answers on it.
	s.ln.SetUnlinkOnClose(false)
	s.ln.Close()
	if _, err := os.Stat(path); err != nil {
		t.Fatal(err)
	}
	s, err = listenControl(path)
	if err != nil {
		t.Fatalf("a stale socket was not replaced: %v", err)
	}
	s.close()

	file := filepath.Join(dir, "policy.yaml")
	if err := os.WriteFile(file, []byte("rules: []\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := listenControl(file); err == nil || !strings.Contains(err.Error(), "not a socket") {
		t.Errorf("--control naming a file: %v, want refused", err)
	}
	if b, err := os.ReadFile(file); err != nil || string(b) != "rules: []\n" {
		t.Errorf("--control naming a file removed or changed it: %q, %v", b, err)
	}
}
