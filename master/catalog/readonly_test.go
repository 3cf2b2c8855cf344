package catalog

import (
	"bufio"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"testing"
	"time"

	"github.com/abs-backup/abs/statemachine"
)

// tree describes every entry under dir: name, mode, size, mtime and a hash
// of the content, so that any change on disk shows.
func tree(t *testing.T, dir string) map[string]string {
	t.Helper()
	out := map[string]string{}
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		desc := fmt.Sprintf("%v %d %s", fi.Mode(), fi.Size(), fi.ModTime().Format(time.RFC3339Nano))
		if fi.Mode().IsRegular() {
			b, err := os.ReadFile(path)
			if err != nil {
				return err
			}
			desc += fmt.Sprintf(" %x", sha256.Sum256(b))
		}
		out[path] = desc
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// fillOnDisk makes a closed catalog in dir: applied index 3, two jobs, a
// tape and a snapshot, flushed to an sstable by Close.
func fillOnDisk(t *testing.T, dir string) {
	t.Helper()
	c, err := Open(dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	commit(t, c, 2, job("x-1", 2), statemachine.Tape{Label: "L1", State: statemachine.TapeValid})
	b := c.NewBatch()
	b.Put(job("x-2", 3))
	b.SetApplied(testJournal, 3)
	b.SetSnapshot(3, []byte("snap3"))
	if err := b.Commit(); err != nil {
		t.Fatal(err)
	}
	if err := c.Close(); err != nil { // flushes: x-1, x-2 are in an sstable
		t.Fatal(err)
	}
}

func TestReadOnlyChangesNothing(t *testing.T) {
	dir := t.TempDir()
	fillOnDisk(t, dir)
	// Leave a WAL with unflushed commits, as a crashed master would: the
	// catalog is copied while its writer is still open.
	c, err := Open(dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	commit(t, c, 4, job("x-3", 4))
	if err := c.Sync(); err != nil { // in the WAL, not in an sstable
		t.Fatal(err)
	}
	crashed := filepath.Join(t.TempDir(), "crashed")
	copyDir(t, dir, crashed)
	c.Close()

	for _, d := range []string{dir, crashed} {
		before := tree(t, d)
		time.Sleep(20 * time.Millisecond) // so a rewrite would show in mtimes
		r, err := Open(d, Options{ReadOnly: true})
		if err != nil {
			t.Fatalf("%s: %v", d, err)
		}
		if m, err := r.Meta(); err != nil || m != (Meta{JournalID: testJournal, Applied: 4, SnapshotIndex: 3}) {
			t.Errorf("%s: meta %+v, %v", d, m, err)
		}
		jobs := collect(t, func(fn func(statemachine.Job) bool) error { return r.Jobs(0, fn) })
		if ids := jobIDs(jobs); !reflect.DeepEqual(ids, []string{"x-1", "x-2", "x-3"}) {
			t.Errorf("%s: jobs %v", d, ids)
		}
		b := r.NewBatch()
		if err := b.Put(job("x-9", 9)); !errors.Is(err, ErrReadOnly) {
			t.Errorf("Put on a read-only catalog: %v", err)
		}
		b.SetApplied(testJournal, 9)
		if err := b.Commit(); !errors.Is(err, ErrReadOnly) {
			t.Errorf("Commit on a read-only catalog: %v", err)
		}
		if err := r.Sync(); !errors.Is(err, ErrReadOnly) {
			t.Errorf("Sync on a read-only catalog: %v", err)
		}
		if err := r.Close(); err != nil {
			t.Fatal(err)
		}
		after := tree(t, d)
		for path, desc := range after {
			if before[path] != desc {
				t.Errorf("read-only open changed %s:\nbefore %q\nafter  %q", path, before[path], desc)
			}
		}
		for path := range before {
			if _, ok := after[path]; !ok {
				t.Errorf("read-only open removed %s", path)
			}
		}
	}
}

func copyDir(t testing.TB, from, to string) {
	t.Helper()
	if err := os.MkdirAll(to, 0o755); err != nil {
		t.Fatal(err)
	}
	ents, err := os.ReadDir(from)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ents {
		b, err := os.ReadFile(filepath.Join(from, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(to, e.Name()), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// TestHelperHoldCatalog is not a test: TestLockedByAnotherProcess runs the
// test binary with it to hold a catalog open in another process.
func TestHelperHoldCatalog(t *testing.T) {
	dir := os.Getenv("CATALOG_TEST_HOLD")
	if dir == "" {
		t.Skip("helper process only")
	}
	ro := os.Getenv("CATALOG_TEST_HOLD_RO") != ""
	c, err := Open(dir, Options{ReadOnly: ro})
	if err != nil {
		fmt.Println("error:", err)
		os.Exit(1)
	}
	fmt.Println("ready")
	io.Copy(io.Discard, os.Stdin) // hold until the parent closes stdin
	c.Close()
}

// hold opens dir in a child process and returns when it is open.
func hold(t *testing.T, dir string, readOnly bool) {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^TestHelperHoldCatalog$")
	cmd.Env = append(os.Environ(), "CATALOG_TEST_HOLD="+dir)
	if readOnly {
		cmd.Env = append(cmd.Env, "CATALOG_TEST_HOLD_RO=1")
	}
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
	line, _ := bufio.NewReader(stdout).ReadString('\n')
	if line != "ready\n" {
		stdin.Close()
		cmd.Wait()
		t.Fatalf("helper: %q", line)
	}
	t.Cleanup(func() {
		stdin.Close()
		cmd.Wait()
	})
}

// TestLockedByAnotherProcess: a read-only open fails while a master (another
// process) has the catalog open, and a master cannot open a catalog being
// verified; Remove refuses both.
func TestLockedByAnotherProcess(t *testing.T) {
	for _, holderRO := range []bool{false, true} {
		t.Run(fmt.Sprintf("holder-read-only=%v", holderRO), func(t *testing.T) {
			dir := t.TempDir()
			fillOnDisk(t, dir)
			hold(t, dir, holderRO)
			if c, err := Open(dir, Options{}); !errors.Is(err, ErrInUse) {
				if err == nil {
					c.Close()
				}
				t.Errorf("writer open: %v, want ErrInUse", err)
			}
			if err := Remove(dir); !errors.Is(err, ErrInUse) {
				t.Errorf("Remove: %v, want ErrInUse", err)
			}
			c, err := Open(dir, Options{ReadOnly: true})
			if holderRO {
				if err != nil {
					t.Fatalf("two readers: %v", err)
				}
				c.Close()
			} else if !errors.Is(err, ErrInUse) {
				if err == nil {
					c.Close()
				}
				t.Errorf("read-only open while a writer runs: %v, want ErrInUse", err)
			}
			if _, err := os.Stat(filepath.Join(dir, "LOCK")); err != nil {
				t.Errorf("catalog damaged: %v", err)
			}
		})
	}
}
