package journal

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"
)

func TestLockInProcess(t *testing.T) {
	dir := t.TempDir()
	j, err := Create(dir, testIdentity, testOptions(t, 0))
	if err != nil {
		t.Fatal(err)
	}
	for name, open := range map[string]func() (*Journal, error){
		"Open":   func() (*Journal, error) { return Open(dir, testOptions(t, 0)) },
		"Create": func() (*Journal, error) { return Create(dir, testIdentity, testOptions(t, 0)) },
	} {
		_, err := open()
		var le *LockedError
		if !errors.As(err, &le) {
			t.Fatalf("second %s: %v, want *LockedError", name, err)
		}
		if le.PID != os.Getpid() || le.Dir != dir {
			t.Fatalf("LockedError %+v, want pid %d", le, os.Getpid())
		}
		want := fmt.Sprintf("journal %s is locked by pid %d (another abs process is using it)", dir, os.Getpid())
		if le.Error() != want {
			t.Fatalf("message %q", le.Error())
		}
	}
	// Readers take no lock.
	if _, err := OpenReader(dir); err != nil {
		t.Fatal(err)
	}
	j.Close()
	j, err = Open(dir, testOptions(t, 0))
	if err != nil {
		t.Fatalf("Open after Close: %v", err)
	}
	j.Close()
}

func TestLockedErrorUnknownPID(t *testing.T) {
	e := &LockedError{Dir: "d"}
	if !strings.Contains(e.Error(), "unknown process") {
		t.Fatal(e.Error())
	}
	// A pid of a process that is gone is not reported.
	dir := t.TempDir()
	cmd := exec.Command("true")
	if err := cmd.Run(); err != nil {
		t.Skip("no true(1):", err)
	}
	mustWrite(t, dir+"/LOCK", fmt.Appendf(nil, "%d\n", cmd.Process.Pid))
	if pid := lockHolder(dir); pid != 0 {
		t.Fatalf("dead pid %d reported", pid)
	}
	mustWrite(t, dir+"/LOCK", []byte("garbage"))
	if pid := lockHolder(dir); pid != 0 {
		t.Fatalf("garbage pid %d reported", pid)
	}
}

const lockChildEnv = "ABS_JOURNAL_TEST_LOCK_DIR"

// TestLockHolderChild is the child process of TestLockSubprocess: it opens
// the journal, says so, and holds it until its stdin closes.
func TestLockHolderChild(t *testing.T) {
	dir := os.Getenv(lockChildEnv)
	if dir == "" {
		t.Skip("helper process for TestLockSubprocess")
	}
	j, err := Open(dir, Options{})
	if err != nil {
		fmt.Println("error:", err)
		os.Exit(1)
	}
	fmt.Println("locked")
	io.Copy(io.Discard, os.Stdin)
	j.Close()
	os.Exit(0)
}

func TestLockSubprocess(t *testing.T) {
	dir := t.TempDir()
	buildJournal(t, dir, 0, 3)
	cmd := exec.Command(os.Args[0], "-test.run=^TestLockHolderChild$")
	cmd.Env = append(os.Environ(), lockChildEnv+"="+dir)
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		stdin.Close()
		cmd.Process.Kill()
		cmd.Wait()
	}()
	line, err := bufio.NewReader(stdout).ReadString('\n')
	if err != nil || strings.TrimSpace(line) != "locked" {
		t.Fatalf("child said %q, %v", line, err)
	}
	start := time.Now()
	_, err = Open(dir, testOptions(t, 0))
	var le *LockedError
	if !errors.As(err, &le) || le.PID != cmd.Process.Pid {
		t.Fatalf("Open beside the child: %v (%+v), want *LockedError with pid %d", err, le, cmd.Process.Pid)
	}
	if d := time.Since(start); d > time.Second {
		t.Fatalf("Open took %v to fail: it must not wait for the lock", d)
	}
	// The kernel releases the lock when the holder dies.
	cmd.Process.Kill()
	cmd.Wait()
	j, err := Open(dir, testOptions(t, 0))
	if err != nil {
		t.Fatalf("Open after the holder died: %v", err)
	}
	j.Close()
}
