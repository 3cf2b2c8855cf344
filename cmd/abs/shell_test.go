package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/peterh/liner"
	"google.golang.org/grpc"

	"github.com/abs-backup/abs/api"
)

// fakeMaster answers the listings completion uses, counting the calls.
type fakeMaster struct {
	api.OperatorServiceClient // other calls panic
	calls                     atomic.Int32
	block                     bool // wait for the caller's deadline, as an unreachable master would
}

func (f *fakeMaster) wait(ctx context.Context) error {
	f.calls.Add(1)
	if f.block {
		<-ctx.Done()
		return ctx.Err()
	}
	return nil
}

func (f *fakeMaster) ListSlaves(ctx context.Context, _ *api.ListSlavesRequest, _ ...grpc.CallOption) (*api.ListSlavesResponse, error) {
	if err := f.wait(ctx); err != nil {
		return nil, err
	}
	return &api.ListSlavesResponse{Slaves: []*api.SlaveInfo{
		{Name: "tape1", Reaches: []*api.Target{
			{Scope: "volume", Server: "fs1", Partition: "vicepa", Volume: "user.alice"},
			{Scope: "volume", Server: "fs2", Partition: "vicepa", Volume: "user.alice"},
			{Scope: "volume", Server: "fs2", Partition: "vicepb", Volume: "user.alice"},
			{Scope: "volume", Server: "fs2", Partition: "vicepb", Volume: "user.bob"},
			{Scope: "partition", Server: "fs3", Partition: "vicepc"},
		}},
		{Name: "tape2", Reaches: []*api.Target{{Scope: "server", Server: "fs4"}}},
	}}, nil
}

func (f *fakeMaster) ListVolumes(ctx context.Context, _ *api.ListVolumesRequest, _ ...grpc.CallOption) (*api.ListVolumesResponse, error) {
	if err := f.wait(ctx); err != nil {
		return nil, err
	}
	return &api.ListVolumesResponse{Volumes: []*api.VolumeInfo{{Server: "fs3", Partition: "vicepc", Volume: "user.carol"}}}, nil
}

func (f *fakeMaster) ListJobs(ctx context.Context, _ *api.ListJobsRequest, _ ...grpc.CallOption) (*api.ListJobsResponse, error) {
	if err := f.wait(ctx); err != nil {
		return nil, err
	}
	return &api.ListJobsResponse{Jobs: []*api.Job{{Id: "q7k2m-1"}, {Id: "q7k2m-12"}, {Id: "q7k2m-13", AbortRequested: true}}}, nil
}

func (f *fakeMaster) ListTapes(ctx context.Context, _ *api.ListTapesRequest, _ ...grpc.CallOption) (*api.ListTapesResponse, error) {
	if err := f.wait(ctx); err != nil {
		return nil, err
	}
	return &api.ListTapesResponse{Tapes: []*api.TapeInfo{{Label: "ABS0001"}, {Label: "ABS0002"}}}, nil
}

func testShell(t *testing.T, fake *fakeMaster) *shell {
	t.Helper()
	sh, err := newShell(&Globals{Timeout: "30s"}, os.Stdout)
	if err != nil {
		t.Fatal(err)
	}
	sh.names.api = fake
	return sh
}

func TestShellSplitWords(t *testing.T) {
	for _, tc := range []struct {
		line string
		want []string
	}{
		{"  dump volume   user.alice  ", []string{"dump", "volume", "user.alice"}},
		{`restore volume 'my vol' --to "/srv/a b" x\ y`, []string{"restore", "volume", "my vol", "--to", "/srv/a b", "x y"}},
		{`a "q\"uote" 'it''s' ""`, []string{"a", `q"uote`, "its", ""}},
	} {
		got, err := splitWords(tc.line)
		if err != nil || !reflect.DeepEqual(got, tc.want) {
			t.Errorf("splitWords(%q) = %q, %v; want %q", tc.line, got, err, tc.want)
		}
		if back, _ := splitWords(joinWords(got)); !reflect.DeepEqual(back, got) {
			t.Errorf("joinWords(%q) = %q does not split back", got, joinWords(got))
		}
	}
	for _, bad := range []string{`jobs 'oops`, `jobs "oops`, `jobs \`} {
		if _, err := splitWords(bad); err == nil {
			t.Errorf("splitWords(%q) did not fail", bad)
		}
	}
}

// The shell's tree is the CLI's, less the daemons, the offline tools and the
// global flags, plus help and exit.
func TestShellTree(t *testing.T) {
	k, err := newShellParser(func(int) {})
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, c := range k.Model.Children {
		names = append(names, c.Name)
	}
	want := []string{"dump", "restore", "jobs", "abort", "status", "slaves", "volumes", "tapes", "report", "help", "exit"}
	if !reflect.DeepEqual(names, want) {
		t.Fatalf("shell commands %q, want %q", names, want)
	}
	if len(k.Model.Flags) != 1 || k.Model.Flags[0].Name != "help" {
		t.Fatalf("shell root flags: %v", k.Model.Flags)
	}
	sh := testShell(t, &fakeMaster{})
	for _, line := range [][]string{{"master", "--config", "x"}, {"jobs", "--master", "x:1"}, {"shell"}} {
		if _, err := sh.parse(line); err == nil || exitCode(err) != exitUsage {
			t.Errorf("%q parsed in the shell: %v", line, err)
		}
	}
	kctx, err := sh.parse([]string{"dump", "volume", "v", "--server", "fs1", "--detach"})
	if err != nil || kctx.Command() != "dump volume <name>" {
		t.Fatalf("dump volume: %v, %v", kctx, err)
	}
	if c := kctx.Selected().Target.Addr().Interface().(*dumpVolumeCmd); c.Name != "v" || c.Server != "fs1" || !c.Detach || c.Level != "auto" {
		t.Fatalf("parsed %+v", c)
	}
}

func TestShellCompletion(t *testing.T) {
	fake := &fakeMaster{}
	sh := testShell(t, fake)
	for _, tc := range []struct {
		line string
		want []string
	}{
		{"sta", []string{"status "}},
		{"e", []string{"exit "}},
		{"q", []string{"quit "}},
		{"abs st", []string{"status "}},
		{"dump ", []string{"partition ", "server ", "volume "}},
		{"dump volume --l", []string{"--level "}},
		{"dump volume --detach --", []string{"--help ", "--json ", "--level ", "--partition ", "--server "}},
		{"dump volume --level ", []string{"auto ", "full ", "incremental "}},
		{"dump volume --level=f", []string{"--level=full "}},
		{"dump volume ", []string{"user.alice ", "user.bob ", "user.carol "}},
		{"dump volume --server fs2 ", []string{"user.alice ", "user.bob "}},
		{"dump volume user.alice --server ", []string{"fs1 ", "fs2 "}},
		{"dump volume user.alice --server fs2 --partition ", []string{"vicepa ", "vicepb "}},
		{"dump partition ", []string{"vicepa ", "vicepb ", "vicepc "}},
		{"dump partition vicepb --server ", []string{"fs2 "}},
		{"dump server f", []string{"fs1 ", "fs2 ", "fs3 ", "fs4 "}},
		{"restore volume ", []string{"user.carol "}},
		{"restore volume user.carol --slave ", []string{"tape1 ", "tape2 "}},
		{"abort ", []string{"q7k2m-1 ", "q7k2m-12 "}},
		{"abort q7k2m-1 ", nil},
		{"report --volume user.b", []string{"user.bob "}},
		{"help ", []string{"abort ", "dump ", "exit ", "help ", "jobs ", "quit ", "report ", "restore ", "slaves ", "status ", "tapes ", "volumes "}},
		{"help dump v", []string{"volume "}},
	} {
		head, got, tail := sh.complete(tc.line, len([]rune(tc.line)))
		if !reflect.DeepEqual(got, tc.want) || tail != "" || !strings.HasPrefix(tc.line, head) {
			t.Errorf("complete(%q) = %q, %q, %q; want %q", tc.line, head, got, tail, tc.want)
		}
	}
	// In the middle of a line, the word before the cursor.
	if head, got, tail := sh.complete("dump volume x --det --json", len("dump volume x --det")); head != "dump volume x " || !reflect.DeepEqual(got, []string{"--detach "}) || tail != " --json" {
		t.Errorf("mid-line completion: %q %q %q", head, got, tail)
	}
}

// Names are fetched at most once per few seconds, again after a command,
// and a master that does not answer costs one short wait, not one per Tab.
func TestShellNamesCache(t *testing.T) {
	fake := &fakeMaster{}
	sh := testShell(t, fake)
	sh.candidates([]string{"abort"}, "")
	sh.candidates([]string{"abort"}, "q")
	if n := fake.calls.Load(); n != 1 {
		t.Fatalf("%d calls for two completions, want 1 (cached)", n)
	}
	sh.names.invalidate()
	sh.candidates([]string{"abort"}, "")
	if n := fake.calls.Load(); n != 2 {
		t.Fatalf("%d calls after invalidate, want 2", n)
	}

	down := &fakeMaster{block: true}
	sh = testShell(t, down)
	sh.names.timeout = 20 * time.Millisecond
	if got := sh.candidates([]string{"abort"}, ""); got != nil {
		t.Fatalf("names from a master that did not answer: %q", got)
	}
	sh.candidates([]string{"abort"}, "")
	if n := down.calls.Load(); n != 1 {
		t.Fatalf("%d calls to a master that does not answer, want 1", n)
	}
	if got := sh.candidates([]string{"dump", "volume"}, ""); got != nil { // slaves and volumes
		t.Fatalf("volume names from a master that did not answer: %q", got)
	}
	sh.candidates([]string{"dump", "volume"}, "u")
	if n := down.calls.Load(); n != 3 {
		t.Fatalf("%d calls to a master that does not answer, want 3", n)
	}
	if got := sh.candidates([]string{}, "st"); !reflect.DeepEqual(got, []string{"status "}) {
		t.Fatalf("command names need no master: %q", got)
	}

	// No master configured at all: no names, no error.
	sh = testShell(t, &fakeMaster{})
	sh.names.api = nil
	if got := sh.candidates([]string{"abort"}, ""); got != nil {
		t.Fatalf("names without a master: %q", got)
	}
}

// scriptedEditor answers prompts from a script and records what was asked.
type scriptedEditor struct {
	answers []any // string, or an error (liner.ErrPromptAborted, io.EOF)
	asked   []string
	offered [][]string // what Tab offered at each prompt
	sets    int
}

func (e *scriptedEditor) Prompt(p string) (string, error) { return e.PromptWithSuggestion(p, "", -1) }
func (e *scriptedEditor) PromptWithSuggestion(p, text string, _ int) (string, error) {
	e.asked = append(e.asked, p+text)
	if len(e.answers) == 0 {
		return "", errors.New("no more answers")
	}
	a := e.answers[0]
	e.answers = e.answers[1:]
	if err, ok := a.(error); ok {
		return "", err
	}
	return text + a.(string), nil
}
func (e *scriptedEditor) SetWordCompleter(f liner.WordCompleter) {
	// Each prompt sets its completer, then puts the shell's back.
	if e.sets++; e.sets%2 == 1 {
		_, c, _ := f("", 0)
		e.offered = append(e.offered, c)
	}
}

func TestShellPrompts(t *testing.T) {
	for _, tc := range []struct {
		line    string
		answers []any
		asked   []string
		want    string // the completed line; "" when cancelled
	}{
		{"dump volume --detach", []any{"user.alice", "fs2", "vicepb"}, []string{"volume: ", "server: ", "partition: "},
			"dump volume --detach user.alice --server=fs2 --partition=vicepb"},
		{"dump volume --server fs1", []any{"user.alice"}, []string{"volume: "}, "dump volume --server fs1 user.alice"},             // one partition there: nothing more to ask
		{"dump volume", []any{"user.bob"}, []string{"volume: "}, "dump volume user.bob"},                                           // in one place only
		{"dump volume", []any{"user.zed"}, []string{"volume: "}, "dump volume user.zed"},                                           // unknown: the master decides
		{"dump volume --partition vicepb", []any{"user.alice"}, []string{"volume: "}, "dump volume --partition vicepb user.alice"}, // one server has it
		{"dump volume --partition vicepa", []any{"user.alice", "fs1"}, []string{"volume: ", "server: "}, "dump volume --partition vicepa user.alice --server=fs1"},
		{"dump volume user.alice", nil, nil, "dump volume user.alice"},                                                        // named in full: the CLI's meaning, any place
		{"dump partition", []any{"vicepb", ""}, []string{"partition: ", "server: fs2"}, "dump partition vicepb --server=fs2"}, // the only server, offered
		{"dump partition vicepa", []any{"fs1"}, []string{"server: "}, "dump partition vicepa --server=fs1"},                   // two servers
		{"dump server", []any{"-odd"}, []string{"server: "}, "dump server -- -odd"},                                           // not a flag
		{"restore volume user.carol --detach", []any{"/srv/r"}, []string{"restore to directory: "}, "restore volume user.carol --detach --to=/srv/r"},
		{"abort", []any{"q7k2m-12"}, []string{"job: "}, "abort q7k2m-12"},
		{"dump volume", []any{""}, []string{"volume: "}, ""},                                               // empty answer cancels
		{"dump volume", []any{"user.alice", liner.ErrPromptAborted}, []string{"volume: ", "server: "}, ""}, // Ctrl-C cancels
		{"restore volume x", []any{errors.New("EOF")}, []string{"restore to directory: "}, ""},
		// Nothing is asked of lines kong refuses for another reason, nor of help.
		{"dump volume --level sometimes", nil, nil, "dump volume --level sometimes"},
		{"dump volume --bogus", nil, nil, "dump volume --bogus"},
		{"dump volume --help", nil, nil, "dump volume --help"},
		{"dump", nil, nil, "dump"},
		{"dump volume --server", nil, nil, "dump volume --server"},
		{"jobs", nil, nil, "jobs"},
	} {
		sh := testShell(t, &fakeMaster{})
		ed := &scriptedEditor{answers: tc.answers}
		sh.ed = ed
		words, _, _ := shellWords(tc.line)
		got, asked, ok := sh.fillMissing(words)
		line := ""
		if ok {
			line = joinWords(got)
		}
		if line != tc.want || !reflect.DeepEqual(ed.asked, tc.asked) || (ok && asked != (len(tc.asked) > 0)) {
			t.Errorf("%q: got %q (asked %q, %v), want %q (asked %q)", tc.line, line, ed.asked, asked, tc.want, tc.asked)
		}
	}

	// What Tab offers at each prompt follows the answers before it.
	sh := testShell(t, &fakeMaster{})
	ed := &scriptedEditor{answers: []any{"user.alice", "fs2", "vicepa"}}
	sh.ed = ed
	sh.fillMissing([]string{"dump", "volume"})
	want := [][]string{{"user.alice", "user.bob", "user.carol"}, {"fs1", "fs2"}, {"vicepa", "vicepb"}}
	if !reflect.DeepEqual(ed.offered, want) {
		t.Fatalf("offered %q, want %q", ed.offered, want)
	}
}

type memHistory struct{ lines []string }

func (m *memHistory) AppendHistory(l string) { m.lines = append(m.lines, l) }

func TestShellHistoryFile(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "state", "abs") // missing: made
	path := filepath.Join(dir, "shell_history")
	warn := func(err error) { t.Errorf("warning: %v", err) }
	h := openHistory(path, &memHistory{}, warn)
	h.add("status")
	h.add("status")
	h.add("  ")
	h.add("jobs --all")
	h.close()
	mem := &memHistory{}
	h = openHistory(path, mem, warn)
	h.add("abort q7k2m-1")
	h.close()
	if !reflect.DeepEqual(mem.lines, []string{"status", "jobs --all", "abort q7k2m-1"}) {
		t.Fatalf("history read back: %q", mem.lines)
	}
	if fi, err := os.Stat(path); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("history file: %v %v", fi, err)
	}

	// Grown past twice the limit, it is cut to the newest lines.
	var b strings.Builder
	for i := range 2*historyKeep + 5 {
		fmt.Fprintf(&b, "jobs --limit %d\n", i)
	}
	os.WriteFile(path, []byte(b.String()), 0o600)
	mem = &memHistory{}
	openHistory(path, mem, warn).close()
	data, _ := os.ReadFile(path)
	if len(mem.lines) != historyKeep || mem.lines[0] != fmt.Sprintf("jobs --limit %d", historyKeep+5) || strings.Count(string(data), "\n") != historyKeep {
		t.Fatalf("trimmed history: %d lines in memory (first %q), %d in the file", len(mem.lines), mem.lines[0], strings.Count(string(data), "\n"))
	}

	// The default place.
	t.Setenv("XDG_STATE_HOME", "/x/state")
	if p, _ := defaultHistoryPath(); p != "/x/state/abs/shell_history" {
		t.Fatalf("default with XDG_STATE_HOME: %s", p)
	}
	t.Setenv("XDG_STATE_HOME", "")
	t.Setenv("HOME", "/home/alice")
	if p, _ := defaultHistoryPath(); p != "/home/alice/.abs_shell_history" {
		t.Fatalf("default without XDG_STATE_HOME: %s", p)
	}
}

// Batch mode: errors are printed and the shell goes on; the status is the
// last failure's; exit stops reading.
func TestShellBatch(t *testing.T) {
	for _, tc := range []struct {
		input string
		code  int
	}{
		{"help\n# comment\n\nhelp jobs\n", exitOK},
		{"frob\nhelp\n", exitUsage},
		{"jobs 'unterminated\n", exitUsage},
		{"dump volume\n", exitUsage}, // no prompts
		{"jobs\n", exitUsage},        // no master given: the CLI's usage error
		{"exit\nfrob\n", exitOK},
	} {
		sh := testShell(t, &fakeMaster{})
		err := sh.batch(context.Background(), strings.NewReader(tc.input))
		if code := exitCode(err); (err == nil && tc.code != exitOK) || (err != nil && code != tc.code) {
			t.Errorf("%q: %v (exit %d), want exit %d", tc.input, err, code, tc.code)
		}
	}
}
