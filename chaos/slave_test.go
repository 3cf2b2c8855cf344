package chaos

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// slaveProc is a running `abs slave` whose stdout lines are collected.
type slaveProc struct {
	cmd   *exec.Cmd
	lines chan string
	log   string
}

func startSlave(t *testing.T, config string) *slaveProc {
	t.Helper()
	cmd := exec.Command(Binary(t), "slave", "--config", config, "--log-level", "debug")
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	logf, err := os.Create(config + ".log")
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = logf
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p := &slaveProc{cmd: cmd, lines: make(chan string, 100), log: config + ".log"}
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			p.lines <- sc.Text()
		}
		close(p.lines)
	}()
	t.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGKILL)
		cmd.Wait()
		logf.Close()
		if b, _ := os.ReadFile(config + ".log"); strings.Contains(string(b), "WARNING: DATA RACE") {
			t.Errorf("slave had a data race:\n%s", b)
		}
	})
	return p
}

// waitLine waits for a stdout line containing want.
func (p *slaveProc) waitLine(t *testing.T, want string) string {
	t.Helper()
	timeout := time.After(30 * time.Second)
	for {
		select {
		case line, ok := <-p.lines:
			if !ok {
				b, _ := os.ReadFile(p.log)
				t.Fatalf("slave exited before printing %q:\n%s", want, b)
			}
			if strings.Contains(line, want) {
				return line
			}
		case <-timeout:
			t.Fatalf("slave did not print %q within 30s", want)
		}
	}
}

func slaveConfig(master, name, dir, certs, partition string) string {
	return fmt.Sprintf(`cluster:
  realm: athena
  master: %s
  slaves: [tape1]
node:
  name: %s
  data: %s/data
  listen: 127.0.0.1:0
  certs: %s
library:
  path: %s/tapes
  drives: 2
  capacity: 64MiB
servers:
  fs1:
    vicepa: %s
    db:
      dump: "pg_dump -Fc {volume}"
      restore: "pg_restore -d {volume}"
      volumes: [app, billing]
`, master, name, dir, certs, dir, partition)
}

// masterFor writes a master whose cluster section matches the slave's for
// that master (same realm, master address and slave list), so hashes agree.
func masterFor(t *testing.T, realm *Realm, name string) *Master {
	m := realm.NewMaster(t, name)
	cfg, _ := os.ReadFile(m.Config)
	os.WriteFile(m.Config, []byte(strings.Replace(string(cfg), "cluster:\n", "cluster:\n  slaves: [tape1]\n", 1)), 0o644)
	return m
}

// TestSlaveRegistersAndSwitchesMaster: a slave registers with the master of
// its config, telling it what it reaches; after its config names another
// master and it gets SIGHUP, it registers there; a config that does not load
// on SIGHUP changes nothing; bad configs at start are refused with lines.
func TestSlaveRegistersAndSwitchesMaster(t *testing.T) {
	realm := NewRealm(t)
	a, b := masterFor(t, realm, "alpha"), masterFor(t, realm, "beta")
	a.Start(t)
	defer a.Kill(t)
	b.Start(t)
	defer b.Kill(t)

	dir := t.TempDir()
	partition := filepath.Join(dir, "vicepa")
	for _, v := range []string{"user.alice", "user.bob"} {
		os.MkdirAll(filepath.Join(partition, v), 0o755)
	}
	certs := realm.Issue(t, "slave", "tape1")
	config := filepath.Join(dir, "tape1.yaml")
	os.WriteFile(config, []byte(slaveConfig(a.Addr, "tape1", dir, certs, partition)), 0o644)

	s := startSlave(t, config)
	s.waitLine(t, "serving on 127.0.0.1:")
	s.waitLine(t, "registered with "+a.Addr+" (epoch 1)")
	var slaves []map[string]any
	out := mustRun(t, realm.OperatorEnv(a), "slaves", "--json").Stdout
	if err := json.Unmarshal([]byte(out), &slaves); err != nil || len(slaves) != 1 {
		t.Fatalf("alpha's slaves: %v\n%s", err, out)
	}
	for _, want := range []string{"partition fs1/vicepa", "volume fs1/vicepa/user.alice", "volume fs1/vicepa/user.bob", "volume fs1/db/billing"} {
		if !strings.Contains(out, want) {
			t.Errorf("alpha's slaves lack %q:\n%s", want, out)
		}
	}
	if out := mustRun(t, realm.OperatorEnv(b), "slaves").Stdout; !strings.Contains(out, "no slave has registered") {
		t.Fatalf("beta knows a slave before the switch:\n%s", out)
	}

	// A broken config on SIGHUP is refused and changes nothing.
	os.WriteFile(config, []byte(slaveConfig(b.Addr, "tape1", dir, certs, partition)+"bogus: 1\n"), 0o644)
	s.cmd.Process.Signal(syscall.SIGHUP)
	time.Sleep(500 * time.Millisecond)
	if log, _ := os.ReadFile(config + ".log"); !strings.Contains(string(log), "reload refused") {
		t.Fatalf("a broken config was not refused on SIGHUP:\n%s", log)
	}
	// The fixed config names beta: SIGHUP switches the slave there.
	os.WriteFile(config, []byte(slaveConfig(b.Addr, "tape1", dir, certs, partition)), 0o644)
	s.cmd.Process.Signal(syscall.SIGHUP)
	s.waitLine(t, "registered with "+b.Addr+" (epoch 1)")
	if out := mustRun(t, realm.OperatorEnv(b), "slaves").Stdout; !strings.Contains(out, "tape1") {
		t.Fatalf("beta does not list tape1 after the switch:\n%s", out)
	}
}

// TestSlaveBadConfig: configs a slave must refuse at start, with lines.
func TestSlaveBadConfig(t *testing.T) {
	realm := NewRealm(t)
	dir := t.TempDir()
	certs := realm.Issue(t, "slave", "tape1")
	good := slaveConfig("127.0.0.1:1", "tape1", dir, certs, dir)
	cases := []struct {
		name, config string
		code         int
		want         string
	}{
		{"unknown library key", strings.Replace(good, "  drives: 2", "  drivs: 2", 1), 78, `tape1.yaml:12: unknown key "drivs" in library`},
		{"bad capacity", strings.Replace(good, "64MiB", "lots", 1), 78, "library.capacity"},
		{"command pair without restore", strings.Replace(good, `      restore: "pg_restore -d {volume}"`+"\n", "", 1), 78, "needs both dump: and restore:"},
		{"unknown command key", strings.Replace(good, "      volumes: [app, billing]", "      volumes: [app, billing]\n      user: postgres", 1), 78, `unknown key "user"`},
		{"no library", good[:strings.Index(good, "library:")], 78, "a slave needs a library: section"},
		{"certificate of another name", strings.Replace(good, "name: tape1", "name: tape2", 1), 1, "certificate in"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(dir, "tape1.yaml")
			os.WriteFile(path, []byte(tc.config), 0o644)
			res := Run(t, nil, "slave", "--config", path)
			if res.Code != tc.code || !strings.Contains(res.Stderr, tc.want) {
				t.Fatalf("exit %d (want %d), stderr lacks %q:\n%s", res.Code, tc.code, tc.want, res.Stderr)
			}
		})
	}
}
