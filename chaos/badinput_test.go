package chaos

import (
	"bytes"
	"context"
	"crypto/sha256"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/status"

	"github.com/abs-backup/abs/api"
	"github.com/abs-backup/abs/cluster"
)

// lastIndex asks the master for its journal's last index.
func lastIndex(t *testing.T, c api.OperatorServiceClient) uint64 {
	t.Helper()
	st, err := c.Status(context.Background(), &api.StatusRequest{}, grpc.WaitForReady(true))
	if err != nil {
		t.Fatal(err)
	}
	return st.LastIndex
}

// TestBadInput: malformed commands, unknown job IDs, wrong or missing
// certificates — each a clear error with a meaningful exit status, and
// nothing written to the journal.
func TestBadInput(t *testing.T) {
	realm := NewRealm(t)
	m := realm.NewMaster(t, "green-acres")
	m.Start(t)
	defer m.Kill(t)
	c := realm.Operator(t, m.Addr)
	env := realm.OperatorEnv(m)
	queued := Run(t, env, "dump", "volume", "user.alice", "--server", "fs1", "--partition", "vicepa", "--detach")
	if queued.Code != 0 {
		t.Fatalf("dump: %d %s", queued.Code, queued.Stderr)
	}
	id := strings.TrimSpace(queued.Stdout)
	before := lastIndex(t, c)

	other := t.TempDir() // a CA of another realm, with an operator
	Run(t, nil, "certs", "init-ca", "--dir", filepath.Join(other, "ca"))
	Run(t, nil, "certs", "issue", "--ca", filepath.Join(other, "ca"), "--role", "operator", "--name", "mallory", "--dir", filepath.Join(other, "mallory"))
	slaveCerts := realm.Issue(t, "slave", "tape1")

	cases := []struct {
		name string
		env  []string
		args []string
		code int
		msg  string
	}{
		{"no subcommand", env, []string{"dump"}, 2, "expected one of"},
		{"missing volume name", env, []string{"dump", "volume"}, 2, "expected \"<name>\""},
		{"unknown flag", env, []string{"jobs", "--bogus"}, 2, "unknown flag --bogus"},
		{"bad level", env, []string{"dump", "server", "fs1", "--level", "weekly"}, 2, "--level must be one of"},
		{"bad volume name", env, []string{"dump", "volume", "a/b", "--detach"}, 3, "volume name \"a/b\" contains '/'"},
		{"partition without server", env, []string{"dump", "volume", "v", "--partition", "p", "--detach"}, 3, "partition p given without its server"},
		{"unknown job", env, []string{"abort", "zzzzz-404"}, 3, "no job zzzzz-404"},
		{"abort twice", env, []string{"abort", id}, 0, "aborted " + id},
		{"abort an ended job", env, []string{"abort", id}, 3, "already ended (aborted)"},
		{"no master given", []string{"ABS_MASTER=", "ABS_CERTS=" + realm.OpCerts}, []string{"jobs"}, 2, "give --master"},
		{"no certs given", []string{"ABS_MASTER=" + m.Addr, "ABS_CERTS="}, []string{"jobs"}, 2, "give --certs"},
		{"missing certs dir", []string{"ABS_MASTER=" + m.Addr, "ABS_CERTS=" + filepath.Join(other, "nothing")}, []string{"jobs"}, 4, "no certificate directory"},
		{"another realm's operator", []string{"ABS_MASTER=" + m.Addr, "ABS_CERTS=" + filepath.Join(other, "mallory")}, []string{"jobs"}, 4, "cannot reach the master"},
		{"slave certificate as operator", []string{"ABS_MASTER=" + m.Addr, "ABS_CERTS=" + slaveCerts}, []string{"jobs"}, 4, "needs an operator certificate"},
		{"nobody listening", []string{"ABS_MASTER=127.0.0.1:" + strconv.Itoa(FreePort(t)), "ABS_CERTS=" + realm.OpCerts}, []string{"status"}, 4, "is `abs master` running there?"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			res := Run(t, tc.env, tc.args...)
			if res.Code != tc.code {
				t.Fatalf("exit %d, want %d\nstdout: %s\nstderr: %s", res.Code, tc.code, res.Stdout, res.Stderr)
			}
			if !strings.Contains(res.Stdout+res.Stderr, tc.msg) {
				t.Fatalf("output lacks %q:\nstdout: %s\nstderr: %s", tc.msg, res.Stdout, res.Stderr)
			}
		})
	}
	// One record for the first abort; every other case wrote nothing.
	if after := lastIndex(t, c); after != before+1 {
		t.Fatalf("journal went from %d to %d records; the refused commands must write nothing", before, after)
	}

	// A slave certificate cannot call the operator API, even bypassing the
	// CLI's own check: the master refuses it.
	creds, err := cluster.LoadCredentials(slaveCerts)
	if err != nil {
		t.Fatal(err)
	}
	conn, err := grpc.NewClient(m.Addr, grpc.WithTransportCredentials(credentials.NewTLS(creds.ClientTLS(cluster.RoleMaster))))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_, err = api.NewOperatorServiceClient(conn).Dump(context.Background(), &api.DumpRequest{Target: &api.Target{Scope: "server", Server: "fs1"}})
	if status.Code(err) != codes.PermissionDenied || !strings.Contains(err.Error(), "tape1") {
		t.Fatalf("slave calling the operator API: %v, want PermissionDenied naming tape1", err)
	}
	if after := lastIndex(t, c); after != before+1 {
		t.Fatalf("a refused caller wrote to the journal (%d → %d)", before+1, after)
	}
}

// TestBadConfig: a config with unknown keys is reported with line numbers
// (exit 78) and nothing is created.
func TestBadConfig(t *testing.T) {
	realm := NewRealm(t)
	m := realm.NewMaster(t, "green-acres")
	cfg, err := os.ReadFile(m.Config)
	if err != nil {
		t.Fatal(err)
	}
	bad := strings.Replace(string(cfg), "  listen:", "  listn: 127.0.0.1:1\n  listen:", 1) + "extra: 1\n"
	if err := os.WriteFile(m.Config, []byte(bad), 0o644); err != nil {
		t.Fatal(err)
	}
	res := Run(t, nil, "master", "--config", m.Config)
	if res.Code != 78 {
		t.Fatalf("exit %d, want 78\n%s", res.Code, res.Stderr)
	}
	for _, want := range []string{`green-acres.yaml:7: unknown key "listn" in node`, `green-acres.yaml:11: unknown key "extra"`} {
		if !strings.Contains(res.Stderr, want) {
			t.Errorf("stderr lacks %q:\n%s", want, res.Stderr)
		}
	}
	if _, err := os.Stat(m.Data); !os.IsNotExist(err) {
		t.Fatalf("the data directory was created by a refused config: %v", err)
	}
}

// TestLockAndSignals: a second master on the same data fails at once,
// naming the holder's pid (exit 75); SIGTERM stops a master at once.
func TestLockAndSignals(t *testing.T) {
	realm := NewRealm(t)
	m := realm.NewMaster(t, "green-acres")
	m.Start(t)
	pid := m.cmd.Process.Pid
	// Same data, another port.
	secondConfig := filepath.Join(realm.Dir, "second.yaml")
	cfg, _ := os.ReadFile(m.Config)
	other := fmt.Sprintf("127.0.0.1:%d", FreePort(t))
	os.WriteFile(secondConfig, bytes.ReplaceAll(bytes.ReplaceAll(cfg, []byte(m.Addr), []byte(other)), []byte(m.Metrics), []byte("")), 0o644)
	start := time.Now()
	res := Run(t, nil, "master", "--config", secondConfig)
	if res.Code != 75 || !strings.Contains(res.Stderr, "locked by pid "+strconv.Itoa(pid)) {
		t.Fatalf("second master: exit %d, want 75 naming pid %d:\n%s", res.Code, pid, res.Stderr)
	}
	if d := time.Since(start); d > 20*time.Second {
		t.Fatalf("second master took %s to fail: it must fail at once", d)
	}
	// Offline tools that need the lock fail the same way.
	if res := Run(t, nil, "journal", "rebuild", "--data", m.Data); res.Code != 75 {
		t.Fatalf("rebuild beside a running master: exit %d, want 75\n%s", res.Code, res.Stderr)
	}
	// verify is read-only and works beside it.
	if res := Run(t, nil, "journal", "verify", "--data", m.Data); res.Code != 0 || !strings.Contains(res.Stdout, "checked the journal only") {
		t.Fatalf("verify beside a running master: exit %d\n%s%s", res.Code, res.Stdout, res.Stderr)
	}
	m.cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan struct{})
	go func() {
		for m.cmd.Process.Signal(syscall.Signal(0)) == nil {
			time.Sleep(5 * time.Millisecond)
		}
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("SIGTERM did not stop the master")
	}
	m.cmd = nil
	m.Start(t) // and it starts again at once
	m.Kill(t)
}

// TestDamagedJournal: a flipped byte in an older record is refused with
// file, offset and index (exit 65), and the journal is left untouched.
func TestDamagedJournal(t *testing.T) {
	realm := NewRealm(t)
	m := realm.NewMaster(t, "green-acres")
	m.Start(t)
	env := realm.OperatorEnv(m)
	for i := 0; i < 20; i++ {
		if res := Run(t, env, "dump", "server", fmt.Sprintf("fs%d", i), "--detach"); res.Code != 0 {
			t.Fatal(res.Stderr)
		}
	}
	m.Kill(t)
	seg := LastSegment(t, m.Data)
	b, err := os.ReadFile(seg)
	if err != nil {
		t.Fatal(err)
	}
	b[len(b)/2] ^= 0x40
	if err := os.WriteFile(seg, b, 0o644); err != nil {
		t.Fatal(err)
	}
	sum := dirSum(t, filepath.Join(m.Data, "journal"))
	err = m.TryStart(t)
	if err == nil {
		m.Kill(t)
		t.Fatal("the master started on a journal with a damaged record in the middle")
	}
	msg := err.Error()
	for _, want := range []string{filepath.Base(seg), "offset", "index"} {
		if !strings.Contains(msg, want) {
			t.Errorf("refusal lacks %q:\n%s", want, msg)
		}
	}
	if !strings.Contains(msg, "exit status 65") {
		t.Errorf("want exit status 65:\n%s", msg)
	}
	if res := Run(t, nil, "journal", "verify", "--data", m.Data); res.Code != 65 {
		t.Errorf("verify of a damaged journal: exit %d, want 65\n%s", res.Code, res.Stderr)
	}
	if dirSum(t, filepath.Join(m.Data, "journal")) != sum {
		t.Fatal("a refused start changed the journal directory")
	}
}

// dirSum hashes every file's name and content under dir.
func dirSum(t *testing.T, dir string) string {
	t.Helper()
	h := sha256.New()
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.Name() == "LOCK" || d.IsDir() {
			return nil
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		fmt.Fprintf(h, "%s %d\n", p, len(b))
		h.Write(b)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return fmt.Sprintf("%x", h.Sum(nil))
}
