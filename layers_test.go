package fwx_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"os/exec"
	"strings"
	"testing"
)

// layers are fwx's packages from the bottom up (docs/DESIGN.md, "Layers
// and import arrows"): a package may import packages of its own layer or
// below, never above. A pattern ending in "/..." is a directory and what
// is below it; the longest match places a package.
var layers = [][]string{
	{"nat"},
	{"netstack", "netstack/..."},
	{"session/policy", "session/stream"},
	{"session"},
	{"filters", "filters/..."},
	{"nat/gateway"},
	{""}, // the root: the API
	{"cmd/...", "scripts/...", "netstack/lab/fwxlab"},
}

const module = "github.com/fwx-dev/fwx"

// layerOf returns the layer of package path rel (relative to the module),
// and false when no layer has it.
func layerOf(rel string) (int, bool) {
	best, bestLen := -1, -1
	for i, l := range layers {
		for _, pat := range l {
			dir, tree := strings.CutSuffix(pat, "/...")
			if rel == dir || (tree && strings.HasPrefix(rel, dir+"/")) {
				if len(pat) > bestLen {
					best, bestLen = i, len(pat)
				}
			}
		}
	}
	return best, best >= 0
}

// TestImportLayers fails on an import that points up the layers (nat or
// session importing the datapath, a filter importing the root, ...), and
// on a package that has no layer: a new one must be placed.
func TestImportLayers(t *testing.T) {
	if _, err := exec.LookPath("go"); err != nil {
		t.Skip("no go command:", err)
	}
	out, err := exec.Command("go", "list", "-json", module+"/...").Output()
	if err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			t.Fatalf("go list: %v\n%s", err, ee.Stderr)
		}
		t.Fatalf("go list: %v", err)
	}
	rel := func(path string) (string, bool) {
		if path == module {
			return "", true
		}
		return strings.CutPrefix(path, module+"/")
	}
	dec := json.NewDecoder(bytes.NewReader(out))
	n := 0
	for {
		var pkg struct {
			ImportPath string
			Imports    []string
		}
		if err := dec.Decode(&pkg); err == io.EOF {
			break
		} else if err != nil {
			t.Fatal(err)
		}
		n++
		from, _ := rel(pkg.ImportPath)
		fl, ok := layerOf(from)
		if !ok {
			t.Errorf("%s has no layer: place it in layers (and docs/DESIGN.md)", pkg.ImportPath)
			continue
		}
		for _, imp := range pkg.Imports {
			to, ours := rel(imp)
			if !ours {
				continue
			}
			if tl, ok := layerOf(to); ok && tl > fl {
				t.Errorf("%s (layer %d) imports %s (layer %d): an arrow pointing up", pkg.ImportPath, fl, imp, tl)
			}
		}
	}
	if n < 20 {
		t.Errorf("go list found %d packages; the module has more", n)
	}
}

// TestLayerOf checks the placing itself on paths whose answer is known,
// so that a pattern that matched nothing cannot pass the test above.
func TestLayerOf(t *testing.T) {
	for _, tt := range []struct {
		path  string
		layer int
	}{
		{"nat", 0},
		{"netstack/hostnet", 1},
		{"netstack/lab", 1},
		{"session/stream", 2},
		{"session", 3},
		{"filters/ftp", 4},
		{"nat/gateway", 5},
		{"", 6},
		{"netstack/lab/fwxlab", 7},
		{"cmd/fwx/internal/metrics", 7},
	} {
		if l, ok := layerOf(tt.path); !ok || l != tt.layer {
			t.Errorf("layer of %q = %d, %v; want %d", tt.path, l, ok, tt.layer)
		}
	}
	if _, ok := layerOf("natx"); ok {
		t.Error(`"natx" has a layer; it is no package of fwx's`)
	}
}
