package main

import (
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/rs/zerolog"
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

// TestControlDirUnsafe: fwx neither makes nor looks for its control
// socket in a directory where another user could replace it.
func TestControlDirUnsafe(t *testing.T) {
	open := t.TempDir()
	if err := os.Chmod(open, 0o777); err != nil {
		t.Fatal(err)
	}
	if _, err := listenControl(filepath.Join(open, "fwxi.sock")); err == nil || !strings.Contains(err.Error(), "writable by others") {
		t.Errorf("a directory anyone may write to: %v, want refused", err)
	}
	if _, err := dialControl(filepath.Join(open, "fwxi.sock"), ""); err == nil || !strings.Contains(err.Error(), "writable by others") {
		t.Errorf("fwx status in a directory anyone may write to: %v, want refused", err)
	}
	sticky := t.TempDir()
	if err := os.Chmod(sticky, 0o777|os.ModeSticky); err != nil {
		t.Fatal(err)
	}
	s, err := listenControl(filepath.Join(sticky, "fwxi.sock"))
	if err != nil {
		t.Errorf("a sticky directory like /tmp: %v, want accepted", err)
	} else {
		s.close()
	}
	if os.Geteuid() != 0 {
		t.Log("skipping a directory of another user's: making one needs root")
		return
	}
	theirs := t.TempDir()
	if err := os.Chown(theirs, 65534, 65534); err != nil {
		t.Fatal(err)
	}
	if _, err := listenControl(filepath.Join(theirs, "fwxi.sock")); err == nil || !strings.Contains(err.Error(), "belongs to user 65534") {
		t.Errorf("another user's directory: %v, want refused", err)
	}
}

// TestStatusWatch: fwx status --watch asks again every --interval, with
// the same filters, one screen (or one JSON line) per answer, until fwx
// stops answering, which it reports.
func TestStatusWatch(t *testing.T) {
	for _, asJSON := range []bool{true, false} {
		t.Run(map[bool]string{true: "json", false: "screen"}[asJSON], func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "fwxi.sock")
			s, err := listenControl(path)
			if err != nil {
				t.Fatal(err)
			}
			defer s.close()
			var mu sync.Mutex
			var queries []string
			s.serve(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				mu.Lock()
				queries = append(queries, r.URL.RawQuery)
				n := len(queries)
				mu.Unlock()
				if n > 3 {
					http.Error(w, "fwx is stopping", http.StatusServiceUnavailable)
					return
				}
				writeJSON(w, statusReply{Run: runInfo{PID: n}})
			}), zerolog.Nop())

			args := []string{"status", "--control", path, "--watch", "--interval", "1ms", "--port", "21", "--rule", "ftp-out"}
			if asJSON {
				args = append(args, "--json")
			}
			code, stdout, stderr := runCLI(t, "", args...)
			if code != 1 || !strings.Contains(stderr, "fwx is stopping") {
				t.Errorf("exit %d, stderr %q: want 1 and fwx's answer", code, stderr)
			}
			var pids []int
			if asJSON {
				for line := range strings.Lines(stdout) {
					var st statusReply
					if err := json.Unmarshal([]byte(line), &st); err != nil {
						t.Fatalf("line %q: %v", line, err)
					}
					pids = append(pids, st.Run.PID)
				}
			} else {
				for i, screen := range strings.Split(stdout, "\033[H\033[2J")[1:] {
					if !strings.Contains(screen, fmt.Sprintf(", pid %d,", i+1)) {
						t.Errorf("screen %d: %q", i+1, screen)
					}
					pids = append(pids, i+1)
				}
			}
			if !slices.Equal(pids, []int{1, 2, 3}) {
				t.Errorf("answers shown: %v, want 1, 2, 3 (stdout %q)", pids, stdout)
			}
			for _, q := range queries {
				if q != "port=21&rule=ftp-out" {
					t.Errorf("query %q: the filters were not asked for", q)
				}
			}
		})
	}
}
