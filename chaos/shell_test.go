package chaos

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/creack/pty"
	"github.com/hinshun/vt10x"
	"google.golang.org/grpc/metadata"

	"github.com/abs-backup/abs/api"
	"github.com/abs-backup/abs/cluster"
)

const (
	shellCols, shellRows = 120, 50
	keyUp                = "\x1b[A"
	keyCtrlC             = "\x03"
	keyCtrlD             = "\x04"
	keyCtrlU             = "\x15"
)

// ptyShell is `abs shell` on a pseudo-terminal, read through a terminal
// emulator: the tests look at the screen a user would see.
type ptyShell struct {
	t    *testing.T
	cmd  *exec.Cmd
	tty  *os.File
	vt   vt10x.Terminal
	mu   sync.Mutex
	raw  bytes.Buffer // everything the shell wrote, for failure messages
	done chan struct{}
	err  error // cmd.Wait's, once done is closed
}

func startShell(t *testing.T, env []string, args ...string) *ptyShell {
	t.Helper()
	return startPty(t, env, append([]string{"shell"}, args...)...)
}

// startPty runs abs with args on a pseudo-terminal read through a terminal
// emulator.
func startPty(t *testing.T, env []string, args ...string) *ptyShell {
	t.Helper()
	cmd := exec.Command(Binary(t), args...)
	cmd.Env = append(os.Environ(), append(env, "TERM=xterm")...)
	tty, err := pty.StartWithSize(cmd, &pty.Winsize{Rows: shellRows, Cols: shellCols})
	if err != nil {
		t.Fatal(err)
	}
	s := &ptyShell{t: t, cmd: cmd, tty: tty, vt: vt10x.New(vt10x.WithWriter(tty), vt10x.WithSize(shellCols, shellRows)), done: make(chan struct{})}
	copied := make(chan struct{})
	go func() {
		defer close(copied)
		buf := make([]byte, 4096)
		for {
			n, err := tty.Read(buf)
			if n > 0 {
				s.mu.Lock()
				s.raw.Write(buf[:n])
				s.mu.Unlock()
				s.vt.Write(buf[:n])
			}
			if err != nil {
				return
			}
		}
	}()
	go func() {
		s.err = cmd.Wait()
		<-copied // the pty reads EIO once the shell and its children are gone
		close(s.done)
	}()
	t.Cleanup(func() {
		cmd.Process.Kill()
		<-s.done
		tty.Close()
		if strings.Contains(s.transcript(), "WARNING: DATA RACE") {
			t.Errorf("the shell had a data race:\n%s", s.transcript())
		}
	})
	return s
}

func (s *ptyShell) transcript() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.raw.String()
}

// send types keys.
func (s *ptyShell) send(keys string) {
	s.t.Helper()
	if _, err := s.tty.Write([]byte(keys)); err != nil {
		s.t.Fatalf("typing %q: %v", keys, err)
	}
}

// screen is the emulated screen, one string per row, trailing blanks cut.
func (s *ptyShell) screen() (rows []string, cursorRow, cursorCol int) {
	s.vt.Lock()
	defer s.vt.Unlock()
	cols, n := s.vt.Size()
	for y := 0; y < n; y++ {
		var b strings.Builder
		for x := 0; x < cols; x++ {
			c := s.vt.Cell(x, y).Char
			if c == 0 {
				c = ' '
			}
			b.WriteRune(c)
		}
		rows = append(rows, strings.TrimRight(b.String(), " "))
	}
	cur := s.vt.Cursor()
	return rows, cur.Y, cur.X
}

func (s *ptyShell) screenText() string {
	rows, _, _ := s.screen()
	return strings.Join(rows, "\n")
}

// waitFor waits until the screen satisfies ok (a generous deadline only
// bounds a broken run: nothing is asserted about speed).
func (s *ptyShell) waitFor(what string, ok func(rows []string, row, col int) bool) {
	s.t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for {
		rows, row, col := s.screen()
		if ok(rows, row, col) {
			return
		}
		select {
		case <-s.done:
			if rows, row, col := s.screen(); ok(rows, row, col) {
				return
			}
			s.t.Fatalf("the shell ended (%v) before %s; screen:\n%s", s.err, what, s.screenText())
		default:
		}
		if time.Now().After(deadline) {
			s.t.Fatalf("no %s on the screen:\n%s", what, s.screenText())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// waitText waits for text anywhere on the screen.
func (s *ptyShell) waitText(text string) {
	s.t.Helper()
	s.waitFor(fmt.Sprintf("%q", text), func(rows []string, _, _ int) bool {
		return strings.Contains(strings.Join(rows, "\n"), text)
	})
}

// waitMatch waits for a row matching the regular expression.
func (s *ptyShell) waitMatch(re string) {
	s.t.Helper()
	r := regexp.MustCompile(re)
	s.waitFor(fmt.Sprintf("a line matching %s", re), func(rows []string, _, _ int) bool { return slicesContain(rows, r) })
}

// waitLine waits until the line the cursor is on reads text, with the
// cursor at its end: a prompt waiting for input, with what was typed.
func (s *ptyShell) waitLine(text string) {
	s.t.Helper()
	s.waitFor(fmt.Sprintf("input line %q", text), func(rows []string, row, col int) bool {
		return rows[row] == strings.TrimRight(text, " ") && col == len([]rune(text))
	})
}

// prompt waits for the shell's empty prompt.
func (s *ptyShell) prompt() { s.t.Helper(); s.waitLine("abs> ") }

// exit waits for the shell to end and returns its exit status.
func (s *ptyShell) exit() int {
	s.t.Helper()
	select {
	case <-s.done:
	case <-time.After(60 * time.Second):
		s.t.Fatalf("the shell did not end; screen:\n%s", s.screenText())
	}
	if ee, ok := s.err.(*exec.ExitError); ok {
		return ee.ExitCode()
	}
	if s.err != nil {
		s.t.Fatal(s.err)
	}
	return 0
}

// registerFakeSlave registers slave tape1 (at an address where nothing
// listens) reaching volume user.alice on three partitions of two servers.
func registerFakeSlave(t *testing.T, realm *Realm, m *Master) {
	t.Helper()
	cfg, err := cluster.Load(m.Config)
	if err != nil {
		t.Fatal(err)
	}
	c := slaveClient(t, realm.Issue(t, "slave", "tape1"), m.Addr)
	ctx := metadata.AppendToOutgoingContext(context.Background(), "abs-cluster-hash", cfg.Cluster.Hash())
	_, err = c.RegisterDevice(ctx, &api.RegisterDeviceRequest{Name: "tape1", Addr: fmt.Sprintf("127.0.0.1:%d", FreePort(t)), Drives: 1,
		Reaches: []*api.Reach{
			{Server: "fs1", Partition: "vicepa", Volumes: []string{"user.alice", "user.carol"}},
			{Server: "fs2", Partition: "vicepa", Volumes: []string{"user.alice"}},
			{Server: "fs2", Partition: "vicepb", Volumes: []string{"user.alice", "user.bob"}},
		}})
	if err != nil {
		t.Fatal(err)
	}
}

var jobIDLine = regexp.MustCompile(`(?m)^([0-9a-z]{5}-[0-9]+)$`)

// TestShellInteractive drives `abs shell` on a terminal as an operator
// would: completion of commands, names and job IDs, prompts for missing
// arguments, errors that leave the shell running, Ctrl-C while following a
// job, history across sessions (in a directory the shell creates), Ctrl-D.
func TestShellInteractive(t *testing.T) {
	realm := NewRealm(t)
	m := realm.NewMaster(t, "green-acres")
	m.Start(t)
	defer m.Kill(t)
	registerFakeSlave(t, realm, m)
	state := filepath.Join(t.TempDir(), "state") // missing: the shell makes it
	env := append(realm.OperatorEnv(m), "XDG_STATE_HOME="+state)

	sh := startShell(t, env)
	sh.prompt()

	// A command name completes; the command runs.
	sh.send("sta\t")
	sh.waitLine("abs> status ")
	sh.send("\r")
	sh.waitText("master   green-acres (realm athena, normal mode")
	sh.prompt()

	// dump volume without a volume asks for it (Tab completes the names
	// the slaves reach), then for the server and the partition, since
	// user.alice is on fs1/vicepa, fs2/vicepa and fs2/vicepb.
	sh.send("dump volume --detach\r")
	sh.waitLine("volume: ")
	sh.send("user.a\t")
	sh.waitLine("volume: user.alice")
	sh.send("\r")
	sh.waitLine("server: ")
	sh.send("\t\t")
	sh.waitFor("the servers holding user.alice", func(rows []string, _, _ int) bool {
		return slicesContain(rows, regexp.MustCompile(`^fs1\s+fs2$`))
	})
	sh.waitLine("server: fs") // the common prefix
	sh.send("2\r")
	sh.waitLine("partition: ")
	sh.send("v\t")
	sh.waitLine("partition: vicep")
	sh.send("\t")
	sh.waitFor("fs2's partitions holding user.alice", func(rows []string, _, _ int) bool {
		return slicesContain(rows, regexp.MustCompile(`^vicepa\s+vicepb$`))
	})
	sh.send("b\r")
	sh.waitFor("a job ID", func(rows []string, _, _ int) bool { return jobIDLine.MatchString(strings.Join(rows, "\n")) })
	id := jobIDLine.FindStringSubmatch(sh.screenText())[1]
	sh.prompt()
	sh.send("jobs\r")
	sh.waitFor("the job in the jobs table", func(rows []string, _, _ int) bool {
		return slicesContain(rows, regexp.MustCompile(`^`+id+`\s+\w+\s+dump\s+volume fs2/vicepb/user\.alice\s`))
	})
	sh.prompt()

	// dump partition asks for the partition, then for its server, offering
	// the only one that has it.
	sh.send("dump partition --detach\r")
	sh.waitLine("partition: ")
	sh.send("vicepb\r")
	sh.waitLine("server: fs2")
	sh.send("\r")
	sh.prompt()
	ids := jobIDLine.FindAllString(sh.screenText(), -1)
	if len(ids) < 2 || ids[len(ids)-1] == id {
		t.Fatalf("dump partition printed no new job ID:\n%s", sh.screenText())
	}
	second := ids[len(ids)-1]

	// abort completes the IDs of the jobs not ended.
	sh.send("abort \t\t")
	sh.waitFor("both job IDs offered", func(rows []string, _, _ int) bool {
		return slicesContain(rows, regexp.MustCompile(`^`+id+`\s+`+second+`$`))
	})
	sh.send(second[len(second)-1:] + "\r") // the IDs differ only in their last digits
	sh.waitMatch(`^(aborted ` + second + `|abort of ` + second + ` requested; .*)$`)
	sh.prompt()
	sh.send("abort " + id[:3] + "\t")
	sh.waitLine("abs> abort " + id + " ")
	sh.send("\r")
	sh.waitMatch(`^(aborted ` + id + `|abort of ` + id + ` requested; .*)$`)
	sh.prompt()

	// Bad lines print the CLI's error and the shell goes on.
	sh.send("frob\r")
	sh.waitText("abs: unexpected argument frob")
	sh.prompt()
	sh.send("dump volume user.alice --level sometimes\r")
	sh.waitText(`abs: --level must be one of "auto","full","incremental" but got "sometimes"`)
	sh.prompt()
	sh.send("jobs 'oops\r")
	sh.waitText("abs: unterminated quote (')")
	sh.prompt()
	sh.send("abort zzzzz-99\r")
	sh.waitText("abs: no job zzzzz-99")
	sh.prompt()

	// An empty answer or Ctrl-C at a prompt cancels the command.
	sh.send("restore volume user.alice\r")
	sh.waitLine("restore to directory: ")
	sh.send("\r")
	sh.waitText("cancelled")
	sh.prompt()
	sh.send("dump server\r")
	sh.waitLine("server: ")
	sh.send(keyCtrlC)
	sh.waitFor("a second cancel", func(rows []string, _, _ int) bool {
		return strings.Count("\n"+strings.Join(rows, "\n")+"\n", "\ncancelled\n") == 2
	})
	sh.prompt()

	// Ctrl-C stops following a job and returns to the prompt.
	sh.send("dump server fs9\r")
	sh.waitText("waiting for a slave")
	sh.send(keyCtrlC)
	sh.waitText("stopped following")
	sh.prompt()

	// Up recalls the history, newest first.
	sh.send(keyUp)
	sh.waitLine("abs> dump server fs9")
	sh.send(keyUp)
	sh.waitLine("abs> dump server") // cancelled lines are remembered as typed
	sh.send(keyCtrlU + "help dump volume\r")
	sh.waitText("Usage: abs dump volume <name> [flags]")
	sh.prompt()

	sh.send(keyCtrlD)
	if code := sh.exit(); code != 0 {
		t.Fatalf("Ctrl-D: exit %d, want 0\n%s", code, sh.screenText())
	}

	// The history was kept in $XDG_STATE_HOME/abs/shell_history, with the
	// answers to the prompts in the line of the command they completed.
	hist, err := os.ReadFile(filepath.Join(state, "abs", "shell_history"))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"status\n", "dump volume --detach user.alice --server=fs2 --partition=vicepb\n", "dump partition --detach vicepb --server=fs2\n", "dump server fs9\n", "help dump volume\n"} {
		if !strings.Contains(string(hist), want) {
			t.Errorf("history lacks %q:\n%s", want, hist)
		}
	}

	// A new shell with --history recalls it; Up runs the dump again
	// without asking anything.
	sh = startShell(t, realm.OperatorEnv(m), "--history", filepath.Join(state, "abs", "shell_history"))
	sh.prompt()
	sh.send("dump volume --de" + keyUp)
	sh.waitLine("abs> dump volume --detach user.alice --server=fs2 --partition=vicepb")
	sh.send("\r")
	sh.waitFor("a third job ID", func(rows []string, _, _ int) bool {
		found := jobIDLine.FindAllString(strings.Join(rows, "\n"), -1)
		return len(found) == 1 && found[0] != id && found[0] != second
	})
	sh.prompt()
	sh.send("exit\r")
	if code := sh.exit(); code != 0 {
		t.Fatalf("exit: exit %d, want 0\n%s", code, sh.screenText())
	}
}

func slicesContain(rows []string, re *regexp.Regexp) bool {
	for _, r := range rows {
		if re.MatchString(r) {
			return true
		}
	}
	return false
}

// TestShellNonInteractive pipes commands into `abs shell`: no prompts, the
// CLI's output and errors, and the status of the last failing command.
func TestShellNonInteractive(t *testing.T) {
	realm := NewRealm(t)
	m := realm.NewMaster(t, "green-acres")
	m.Start(t)
	defer m.Kill(t)
	env := realm.OperatorEnv(m)

	run := func(input string) Result {
		t.Helper()
		cmd := exec.Command(Binary(t), "shell")
		cmd.Env = append(os.Environ(), env...)
		cmd.Stdin = strings.NewReader(input)
		var out, errb bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &errb
		err := cmd.Run()
		code := 0
		if ee, ok := err.(*exec.ExitError); ok {
			code = ee.ExitCode()
		} else if err != nil {
			t.Fatal(err)
		}
		if strings.Contains(errb.String(), "WARNING: DATA RACE") {
			t.Errorf("the shell had a data race:\n%s", errb.String())
		}
		return Result{Code: code, Stdout: out.String(), Stderr: errb.String()}
	}

	res := run("status\n# a comment\n\n  abs dump volume user.alice --server fs1 --detach\njobs\n")
	if res.Code != 0 || !strings.Contains(res.Stdout, "master   green-acres") || !strings.Contains(res.Stdout, "fs1/*/user.alice") || res.Stderr != "" {
		t.Fatalf("a good script: exit %d\nstdout:\n%s\nstderr:\n%s", res.Code, res.Stdout, res.Stderr)
	}
	id := strings.Fields(strings.Split(res.Stdout, "\n")[5])[0] // the line after status's five

	// Failures go on; the status is the last failure's: 3 (refused) here,
	// after a usage error (2). Nothing is asked: a missing argument is the
	// CLI's usage error.
	res = run("dump volume\nabort nosuch-1\njobs --json\n")
	if res.Code != 3 || !strings.Contains(res.Stderr, `abs: expected "<name>"`) || !strings.Contains(res.Stdout, `"id": "`+id+`"`) {
		t.Fatalf("a failing script: exit %d (want 3)\nstdout:\n%s\nstderr:\n%s", res.Code, res.Stdout, res.Stderr)
	}
	res = run("abort " + id + "\nfrob\n")
	if res.Code != 2 || !strings.Contains(res.Stdout, "aborted "+id) || !strings.Contains(res.Stderr, "abs: unexpected argument frob") {
		t.Fatalf("a script ending with a usage error: exit %d (want 2)\nstdout:\n%s\nstderr:\n%s", res.Code, res.Stdout, res.Stderr)
	}

	// help is kong's; exit stops reading.
	res = run("help\nhelp restore volume\nexit\nfrob\n")
	if res.Code != 0 || !strings.Contains(res.Stdout, "dump volume") || !strings.Contains(res.Stdout, "Usage: abs restore volume --to=DIR <name>") || strings.Contains(res.Stdout, "master --config") {
		t.Fatalf("help: exit %d\nstdout:\n%s\nstderr:\n%s", res.Code, res.Stdout, res.Stderr)
	}
}

// TestCrippledMasterOffersShell: a crippled master started on a terminal
// with an operator certificate serves and offers the operator shell right
// there, logging to a file; Ctrl-C at the prompt does not stop it, and
// leaving the shell stops the master (exit 0, its journal lock released).
func TestCrippledMasterOffersShell(t *testing.T) {
	realm := NewRealm(t)
	m := realm.NewMaster(t, "spare")
	sh := startPty(t, realm.OperatorEnv(m), "master", "--config", m.Config, "--crippled")
	sh.waitText("serving on " + m.Addr)
	sh.waitText("the operator shell follows")
	sh.prompt()
	sh.send("\x03") // Ctrl-C at the prompt
	sh.prompt()
	sh.send("status\r")
	sh.waitText("crippled mode")
	sh.prompt()
	sh.send("\x04")
	if code := sh.exit(); code != 0 {
		t.Fatalf("leaving the shell: exit %d\n%s", code, sh.transcript())
	}
	if b, err := os.ReadFile(filepath.Join(m.Data, "master.log")); err != nil || !strings.Contains(string(b), "serving") {
		t.Fatalf("master.log: %v\n%s", err, b)
	}
	m.Args = []string{"--crippled"} // the journal is free: it starts again (as a daemon: no terminal)
	m.Start(t)
	m.Kill(t)
}

// TestMergeAsksForTapeNames: on a terminal, abs merge asks for the external
// name of each crippled label no slave named, and records the answer.
func TestMergeAsksForTapeNames(t *testing.T) {
	realm := NewRealm(t)
	m := realm.NewMaster(t, "green-acres")
	m.Start(t)
	m.Kill(t)
	crippled := filepath.Join(t.TempDir(), "crippled")
	labels := writeCrippledJournal(t, crippled, "athena", []string{"", "B2"})
	sh := startPty(t, nil, "merge", "--from", crippled, "--into", m.Data)
	sh.waitText("external name of the cartridge labeled " + labels[0])
	sh.send("A00042\r")
	sh.waitText("imported:")
	if code := sh.exit(); code != 0 {
		t.Fatalf("abs merge on a terminal: exit %d\n%s", code, sh.transcript())
	}
	if strings.Contains(sh.transcript(), labels[1]) {
		t.Fatalf("merge asked for %s, which the slave named:\n%s", labels[1], sh.transcript())
	}
	m.Start(t)
	defer m.Kill(t)
	tapes := mustRun(t, realm.OperatorEnv(m), "tapes").Stdout
	if !regexp.MustCompile(labels[0]+`\s+A00042`).MatchString(tapes) || !regexp.MustCompile(labels[1]+`\s+B2`).MatchString(tapes) {
		t.Fatalf("the merged tapes lack their names:\n%s", tapes)
	}
}
