package abs

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

const module = "github.com/abs-backup/abs"

type pkg struct {
	ImportPath string
	Dir        string
	Imports    []string
	Deps       []string
	GoFiles    []string
}

func listPackages(t *testing.T) []pkg {
	t.Helper()
	out, err := exec.Command("go", "list", "-json", "./...").Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	var pkgs []pkg
	dec := json.NewDecoder(strings.NewReader(string(out)))
	for dec.More() {
		var p pkg
		if err := dec.Decode(&p); err != nil {
			t.Fatal(err)
		}
		pkgs = append(pkgs, p)
	}
	if len(pkgs) < 5 {
		t.Fatalf("go list found only %d packages", len(pkgs))
	}
	return pkgs
}

// TestLayering enforces DESIGN.md §11: statemachine is pure (no IO, no
// clock, no randomness, no goroutines, nothing of the project); nothing
// imports cmd or chaos; the slave never imports the master's logic.
func TestLayering(t *testing.T) {
	forbiddenInCore := []string{
		"os", "os/exec", "os/signal", "io/ioutil", "io/fs", "net", "net/http", "syscall", "unsafe",
		"math/rand", "math/rand/v2", "crypto/rand", "log", "log/slog", "sync", "sync/atomic", "runtime",
		"github.com/cockroachdb/pebble/v2", "github.com/tidwall/wal", "github.com/prometheus/client_golang/prometheus",
		"google.golang.org/grpc",
	}
	// Calls that read the clock or sleep; time.Time values are fine.
	clockRE := regexp.MustCompile(`\btime\.(Now|Since|Until|Sleep|After|AfterFunc|Tick|NewTimer|NewTicker)\b`)
	goRE := regexp.MustCompile(`(?m)(^|[;{])\s*go\s+[\w.(]`)
	checkedCore := false
	for _, p := range listPackages(t) {
		rel := strings.TrimPrefix(strings.TrimPrefix(p.ImportPath, module), "/")
		for _, imp := range p.Imports {
			if imp == module+"/cmd/abs" || strings.HasPrefix(imp, module+"/cmd/") {
				t.Errorf("%s imports %s: nothing may import cmd", p.ImportPath, imp)
			}
			if imp == module+"/chaos" || strings.HasPrefix(imp, module+"/chaos/") {
				t.Errorf("%s imports %s: nothing may import chaos", p.ImportPath, imp)
			}
			if (rel == "slave" || strings.HasPrefix(rel, "slave/")) && strings.HasPrefix(imp, module+"/master") {
				t.Errorf("%s imports %s: the slave never imports the master's logic", p.ImportPath, imp)
			}
		}
		if rel != "statemachine" {
			continue
		}
		checkedCore = true
		for _, imp := range p.Imports {
			if strings.HasPrefix(imp, module) {
				t.Errorf("statemachine imports project package %s", imp)
			}
			for _, f := range forbiddenInCore {
				if imp == f || strings.HasPrefix(imp, f+"/") {
					t.Errorf("statemachine imports %s (no IO, clock, randomness or concurrency in the pure core)", imp)
				}
			}
		}
		for _, d := range p.Deps {
			for _, f := range []string{"github.com/cockroachdb/pebble/v2", "github.com/tidwall/wal", "github.com/prometheus/client_golang/prometheus", "google.golang.org/grpc"} {
				if d == f {
					t.Errorf("statemachine depends on %s", d)
				}
			}
		}
		for _, f := range p.GoFiles {
			src, err := os.ReadFile(filepath.Join(p.Dir, f))
			if err != nil {
				t.Fatal(err)
			}
			if m := clockRE.Find(src); m != nil {
				t.Errorf("statemachine/%s calls %s: time enters Decide as a value", f, m)
			}
			if m := goRE.Find(src); m != nil {
				t.Errorf("statemachine/%s starts a goroutine (%q)", f, strings.TrimSpace(string(m)))
			}
		}
	}
	if !checkedCore {
		t.Fatal("statemachine package not found: the layering rule checked nothing")
	}
}
