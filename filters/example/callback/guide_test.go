package callback_test

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// guide is the filter guide that quotes this package.
const guide = "../../../docs/FILTERS.md"

// TestGuideExcerpts keeps the guide true to the code: every code block
// the guide introduces with "From `FILE`:" must appear verbatim in FILE.
func TestGuideExcerpts(t *testing.T) {
	text, err := os.ReadFile(guide)
	if err != nil {
		t.Fatal(err)
	}
	from := regexp.MustCompile("^From `([^`]+)`:$")
	lines := strings.Split(string(text), "\n")
	quoted := 0
	for i := 0; i < len(lines); i++ {
		m := from.FindStringSubmatch(lines[i])
		if m == nil {
			continue
		}
		file := m[1]
		j := i + 1
		for j < len(lines) && lines[j] == "" {
			j++
		}
		if j == len(lines) || !strings.HasPrefix(lines[j], "```") {
			t.Errorf("%s:%d: %q is not followed by a code block", guide, i+1, lines[i])
			continue
		}
		k := j + 1
		for k < len(lines) && lines[k] != "```" {
			k++
		}
		excerpt := strings.Join(lines[j+1:k], "\n")
		src, err := os.ReadFile(filepath.Join("../../..", file))
		if err != nil {
			t.Errorf("%s:%d: %v", guide, i+1, err)
			continue
		}
		if excerpt == "" || !strings.Contains(string(src), excerpt) {
			t.Errorf("%s:%d: the excerpt is not in %s any more:\n%s", guide, j+1, file, excerpt)
		}
		quoted++
		i = k
	}
	if quoted < 10 {
		t.Errorf("%s quotes %d code blocks from files, want at least 10", guide, quoted)
	}
}
