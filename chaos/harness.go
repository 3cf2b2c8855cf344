// Package chaos is the chaos suite: process-level tests that build the real
// abs binary, run its daemons on loopback, kill them with SIGKILL at random
// moments, damage their files, feed them bad input, and check the invariants
// (nothing acknowledged is lost; the journal chain verifies; the catalog
// equals a fresh replay). This file is the harness the tests share; nothing
// outside the suite imports the package.
package chaos

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
	"google.golang.org/grpc/credentials"

	"github.com/abs-backup/abs/api"
	"github.com/abs-backup/abs/cluster"
)

var (
	buildOnce sync.Once
	binPath   string
	buildErr  error
)

// Binary builds bin/abs once per test process (into a temporary directory)
// and returns its path.
func Binary(t testing.TB) string {
	t.Helper()
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "abs-chaos-bin-")
		if err != nil {
			buildErr = err
			return
		}
		binPath = filepath.Join(dir, "abs")
		args := []string{"build", "-o", binPath}
		if raceEnabled {
			args = append(args, "-race")
		}
		out, err := exec.Command("go", append(args, "github.com/abs-backup/abs/cmd/abs")...).CombinedOutput()
		if err != nil {
			buildErr = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return binPath
}

// Result is what one run of the binary did.
type Result struct {
	Code           int
	Stdout, Stderr string
}

// Run runs the binary to completion with args (and extra environment).
func Run(t testing.TB, env []string, args ...string) Result {
	t.Helper()
	cmd := exec.Command(Binary(t), args...)
	cmd.Env = append(os.Environ(), env...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatalf("abs %s: %v", strings.Join(args, " "), err)
	}
	return Result{Code: code, Stdout: out.String(), Stderr: errb.String()}
}

// Realm is a CA with a master and an operator identity, in a temp dir.
type Realm struct {
	Dir     string
	CA      string
	OpCerts string // certs dir of operator "alice"
}

// NewRealm makes a realm CA and issues certificates with the real binary.
func NewRealm(t testing.TB) *Realm {
	t.Helper()
	dir := t.TempDir()
	r := &Realm{Dir: dir, CA: filepath.Join(dir, "ca"), OpCerts: filepath.Join(dir, "certs", "alice")}
	mustRun(t, nil, "certs", "init-ca", "--dir", r.CA, "--realm", "athena")
	mustRun(t, nil, "certs", "issue", "--ca", r.CA, "--role", "operator", "--name", "alice", "--dir", r.OpCerts)
	return r
}

// Issue makes another identity in the realm and returns its certs dir.
func (r *Realm) Issue(t testing.TB, role, name string) string {
	t.Helper()
	dir := filepath.Join(r.Dir, "certs", name)
	mustRun(t, nil, "certs", "issue", "--ca", r.CA, "--role", role, "--name", name, "--dir", dir)
	return dir
}

func mustRun(t testing.TB, env []string, args ...string) Result {
	t.Helper()
	res := Run(t, env, args...)
	if res.Code != 0 {
		t.Fatalf("abs %s: exit %d\n%s%s", strings.Join(args, " "), res.Code, res.Stdout, res.Stderr)
	}
	return res
}

// FreePort returns a loopback port that was free a moment ago.
func FreePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// Master is a master node's files and, while running, its process.
type Master struct {
	Name    string
	Config  string
	Data    string
	Addr    string // operator API (fixed across restarts)
	Metrics string
	Args    []string // extra flags of `abs master` (e.g. --crippled)
	cmd     *exec.Cmd
	stderr  *bytes.Buffer
	mu      sync.Mutex
}

// NewMaster writes a config for a master on a fixed loopback port.
func (r *Realm) NewMaster(t testing.TB, name string) *Master {
	t.Helper()
	certs := r.Issue(t, "master", name)
	m := &Master{
		Name:    name,
		Data:    filepath.Join(r.Dir, name, "data"),
		Addr:    fmt.Sprintf("127.0.0.1:%d", FreePort(t)),
		Metrics: fmt.Sprintf("127.0.0.1:%d", FreePort(t)),
		Config:  filepath.Join(r.Dir, name+".yaml"),
	}
	cfg := fmt.Sprintf("cluster:\n  realm: athena\n  master: %s\nnode:\n  name: %s\n  data: %s\n  listen: %s\n  metrics: %s\n  certs: %s\n",
		m.Addr, name, m.Data, m.Addr, m.Metrics, certs)
	if err := os.WriteFile(m.Config, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	return m
}

// Start starts the master and waits until it serves.
func (m *Master) Start(t testing.TB) {
	t.Helper()
	if err := m.TryStart(t); err != nil {
		t.Fatal(err)
	}
}

// TryStart is Start returning the failure (with the master's stderr).
func (m *Master) TryStart(t testing.TB) error {
	t.Helper()
	cmd := exec.Command(Binary(t), append([]string{"master", "--config", m.Config, "--log-level", "warn"}, m.Args...)...)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return err
	}
	m.mu.Lock()
	m.stderr = &bytes.Buffer{}
	cmd.Stderr = &lockedWriter{w: m.stderr, mu: &m.mu}
	m.mu.Unlock()
	if err := cmd.Start(); err != nil {
		return err
	}
	ready := make(chan struct{})
	go func() {
		sc := bufio.NewScanner(stdout)
		once := false
		for sc.Scan() {
			if !once && strings.Contains(sc.Text(), " serving on ") {
				once = true
				close(ready)
			}
		}
	}()
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	// A test that fails midway must not leave its daemon running (killing
	// an already-dead process is harmless: os.Process uses a pidfd).
	t.Cleanup(func() { cmd.Process.Kill() })
	select {
	case <-ready:
		m.cmd = cmd
		go func() { <-exited }()
		return nil
	case err := <-exited:
		return fmt.Errorf("master %s exited before serving (%v):\n%s", m.Name, err, m.Stderr())
	case <-time.After(60 * time.Second):
		cmd.Process.Kill()
		return fmt.Errorf("master %s did not serve within 60s:\n%s", m.Name, m.Stderr())
	}
}

type lockedWriter struct {
	w  io.Writer
	mu *sync.Mutex
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

// Stderr is what the last started process wrote to stderr so far.
func (m *Master) Stderr() string {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.stderr == nil {
		return ""
	}
	return m.stderr.String()
}

// Kill stops the master with SIGKILL and waits until it is gone.
func (m *Master) Kill(t testing.TB) {
	t.Helper()
	if m.cmd == nil {
		return
	}
	m.cmd.Process.Signal(syscall.SIGKILL)
	// Wait for the process to be reaped (the port and the journal's lock are
	// free only then).
	for i := 0; i < 500; i++ {
		if err := m.cmd.Process.Signal(syscall.Signal(0)); err != nil {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	m.cmd = nil
	if strings.Contains(m.Stderr(), "WARNING: DATA RACE") {
		t.Errorf("master %s had a data race:\n%s", m.Name, m.Stderr())
	}
}

// Operator is a gRPC client with the realm's operator identity.
func (r *Realm) Operator(t testing.TB, addr string) api.OperatorServiceClient {
	t.Helper()
	creds, err := cluster.LoadCredentials(r.OperatorDir())
	if err != nil {
		t.Fatal(err)
	}
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(credentials.NewTLS(creds.ClientTLS(cluster.RoleMaster))),
		// Reconnect quickly after the master restarts.
		grpc.WithConnectParams(grpc.ConnectParams{
			Backoff:           backoff.Config{BaseDelay: 20 * time.Millisecond, Multiplier: 1.5, MaxDelay: 200 * time.Millisecond},
			MinConnectTimeout: time.Second,
		}))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return api.NewOperatorServiceClient(conn)
}

// OperatorDir is the operator's certs dir.
func (r *Realm) OperatorDir() string { return r.OpCerts }

// OperatorEnv is the environment that points the CLI at master m.
func (r *Realm) OperatorEnv(m *Master) []string {
	return []string{"ABS_MASTER=" + m.Addr, "ABS_CERTS=" + r.OpCerts}
}

// AllJobs lists every job the master knows (from its catalog).
func AllJobs(ctx context.Context, c api.OperatorServiceClient) (map[string]*api.Job, error) {
	out := map[string]*api.Job{}
	req := &api.ListJobsRequest{All: true}
	for {
		resp, err := c.ListJobs(ctx, req, grpc.WaitForReady(true))
		if err != nil {
			return nil, err
		}
		for _, j := range resp.Jobs {
			out[j.Id] = j
		}
		if resp.NextAfterIndex == 0 {
			return out, nil
		}
		req.AfterIndex = resp.NextAfterIndex
	}
}

// LastSegment returns the path of the journal's last segment file.
func LastSegment(t testing.TB, data string) string {
	t.Helper()
	ents, err := os.ReadDir(filepath.Join(data, "journal"))
	if err != nil {
		t.Fatal(err)
	}
	last := ""
	for _, e := range ents {
		if len(e.Name()) == 20 && !e.IsDir() {
			last = e.Name()
		}
	}
	if last == "" {
		t.Fatal("no journal segment")
	}
	return filepath.Join(data, "journal", last)
}

// AppendTo appends bytes to a file (a torn, zeroed or garbage tail).
func AppendTo(t testing.TB, path string, b []byte) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.Write(b); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
}
