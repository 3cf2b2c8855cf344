package catalog

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/abs-backup/abs/statemachine"
)

const testJournal = "0123456789abcdef0123456789abcdef"

func openMem(t testing.TB) *Catalog {
	t.Helper()
	c, err := Open("", Options{InMemory: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// commit puts records and commits them as journal index idx.
func commit(t testing.TB, c *Catalog, idx uint64, recs ...statemachine.Record) {
	t.Helper()
	b := c.NewBatch()
	for _, r := range recs {
		if err := b.Put(r); err != nil {
			t.Fatal(err)
		}
	}
	if b.Len() != len(recs) {
		t.Fatalf("Len %d after %d puts", b.Len(), len(recs))
	}
	b.SetApplied(testJournal, idx)
	if err := b.Commit(); err != nil {
		t.Fatal(err)
	}
}

func job(id string, qi uint64) statemachine.Job {
	return statemachine.Job{
		ID: statemachine.JobID(id), Kind: statemachine.KindDump,
		Target: statemachine.Target{Scope: statemachine.ScopeVolume, Server: "fs1", Partition: "vicepa", Volume: "user.alice"},
		Level:  statemachine.LevelFull, State: statemachine.StateQueued, By: "alice", Why: "waiting",
		QueuedAt: int64(qi) * 1000, UpdatedAt: int64(qi) * 1000, QueuedIndex: qi,
	}
}

func dump(server, partition, volume string, date int64, idx uint64) statemachine.DumpRecord {
	return statemachine.DumpRecord{Dump: statemachine.Dump{
		Volume: volume, Server: server, Partition: partition, DumpDate: date, IncrementDate: date / 2,
		Tapes: []string{"L1", "L2"}, File: 3, Bytes: 4096, SHA256: "ab12", Job: "x-1",
	}, Index: idx}
}

// collect gathers what an accessor passes to fn.
func collect[T any](t *testing.T, f func(func(T) bool) error) []T {
	t.Helper()
	var out []T
	if err := f(func(v T) bool { out = append(out, v); return true }); err != nil {
		t.Fatal(err)
	}
	return out
}

func jobIDs(js []statemachine.Job) []string {
	var out []string
	for _, j := range js {
		out = append(out, string(j.ID))
	}
	return out
}

func TestPutAndRead(t *testing.T) {
	c := openMem(t)
	if m, err := c.Meta(); err != nil || m != (Meta{}) {
		t.Fatalf("new catalog meta %+v, %v; want zero", m, err)
	}
	// x-9 is queued before x-10: queueing order differs from ID order.
	j9, j10, j2 := job("x-9", 3), job("x-10", 4), job("x-2", 6)
	tape := statemachine.Tape{Label: "L1", Name: "A00001", State: statemachine.TapeReserved, Job: "x-9", Slave: "tape1", Files: 2, UpdatedAt: 5}
	slave := statemachine.Slave{Name: "tape1", Addr: "127.0.0.1:7401", Drives: 2,
		Reaches: []statemachine.Target{{Scope: statemachine.ScopeServer, Server: "fs1"}}, RegisteredAt: 9, LastSeq: 4}
	vol := statemachine.Volume{Server: "fs1", Partition: "vicepa", Name: "user.alice", LastFull: 10, LastDump: 20, Dumps: 2, LastDumpJob: "x-9", LastDumpTape: "L1"}
	master := statemachine.Master{Epoch: 2, Node: "green", Addr: "127.0.0.1:7400", StartedAt: 1}
	d1 := dump("fs1", "vicepa", "user.alice", 100, 5)
	d2 := dump("fs1", "vicepa", "user.alice", 100, 4) // same date, earlier index
	d3 := dump("fs1", "vicepb", "user.bob", 50, 5)
	d4 := dump("fs10", "vicepa", "user.alice", 1, 5) // must not match server fs1
	d5 := dump("fs2", "vicepa", "user.carol", 7, 7)

	commit(t, c, 2, master, slave)
	commit(t, c, 3, j9, d2)
	commit(t, c, 5, j10, tape, d1, d3, d4, vol)
	// Update x-9 (a new version under the same keys) and add x-2.
	j9.State, j9.Slave, j9.UpdatedAt = statemachine.StateRunning, "tape1", 99
	commit(t, c, 7, j9, j2, d5)

	if m, _ := c.Meta(); m != (Meta{JournalID: testJournal, Applied: 7}) {
		t.Fatalf("meta %+v", m)
	}
	got, ok, err := c.Job("x-9")
	if err != nil || !ok || !reflect.DeepEqual(got, j9) {
		t.Fatalf("Job(x-9) = %+v, %v, %v; want %+v", got, ok, err, j9)
	}
	if _, ok, err := c.Job("x-404"); ok || err != nil {
		t.Fatalf("Job(x-404) found=%v err=%v", ok, err)
	}

	all := collect(t, func(fn func(statemachine.Job) bool) error { return c.Jobs(0, fn) })
	if want := []statemachine.Job{j9, j10, j2}; !reflect.DeepEqual(all, want) {
		t.Fatalf("Jobs = %v, want x-9 x-10 x-2 with current values", jobIDs(all))
	}
	after := collect(t, func(fn func(statemachine.Job) bool) error { return c.Jobs(3, fn) })
	if ids := jobIDs(after); !reflect.DeepEqual(ids, []string{"x-10", "x-2"}) {
		t.Fatalf("Jobs(after 3) = %v", ids)
	}
	if n := len(collect(t, func(fn func(statemachine.Job) bool) error { return c.Jobs(^uint64(0), fn) })); n != 0 {
		t.Fatalf("Jobs(after max) listed %d", n)
	}
	rev := collect(t, c.JobsReverse)
	if ids := jobIDs(rev); !reflect.DeepEqual(ids, []string{"x-2", "x-10", "x-9"}) {
		t.Fatalf("JobsReverse = %v", ids)
	}
	var first []string
	c.JobsReverse(func(j statemachine.Job) bool { first = append(first, string(j.ID)); return false })
	if !reflect.DeepEqual(first, []string{"x-2"}) {
		t.Fatalf("JobsReverse did not stop: %v", first)
	}

	dumps := func(s, p, v string) []statemachine.DumpRecord {
		return collect(t, func(fn func(statemachine.DumpRecord) bool) error { return c.Dumps(s, p, v, fn) })
	}
	for _, tc := range []struct {
		s, p, v string
		want    []statemachine.DumpRecord
	}{
		{"", "", "", []statemachine.DumpRecord{d2, d1, d3, d4, d5}},
		{"fs1", "", "", []statemachine.DumpRecord{d2, d1, d3}},
		{"fs1", "vicepa", "", []statemachine.DumpRecord{d2, d1}},
		{"fs1", "vicepa", "user.alice", []statemachine.DumpRecord{d2, d1}},
		{"fs1", "vicepa", "user.bob", nil},
		{"", "vicepa", "", []statemachine.DumpRecord{d2, d1, d4, d5}},
		{"", "", "user.alice", []statemachine.DumpRecord{d2, d1, d4}},
		{"fs1", "", "user.bob", []statemachine.DumpRecord{d3}},
		{"fs3", "", "", nil},
	} {
		if got := dumps(tc.s, tc.p, tc.v); !reflect.DeepEqual(got, tc.want) {
			t.Errorf("Dumps(%q, %q, %q) = %+v\nwant %+v", tc.s, tc.p, tc.v, got, tc.want)
		}
	}

	if got := collect(t, c.Tapes); !reflect.DeepEqual(got, []statemachine.Tape{tape}) {
		t.Errorf("Tapes = %+v", got)
	}
	if got := collect(t, c.Slaves); !reflect.DeepEqual(got, []statemachine.Slave{slave}) {
		t.Errorf("Slaves = %+v", got)
	}
	if got := collect(t, c.Volumes); !reflect.DeepEqual(got, []statemachine.Volume{vol}) {
		t.Errorf("Volumes = %+v", got)
	}
	if got := collect(t, c.Masters); !reflect.DeepEqual(got, []statemachine.Master{master}) {
		t.Errorf("Masters = %+v", got)
	}
	n, err := c.Counts()
	if err != nil {
		t.Fatal(err)
	}
	if want := (Counts{Jobs: 3, Dumps: 5, Tapes: 1, Slaves: 1, Volumes: 1, Masters: 1}); n != want {
		t.Errorf("Counts = %+v, want %+v", n, want)
	}
}

// TestEscapedNames: a name holding '/' cannot alias another key, and the
// record reads back with its name intact.
func TestEscapedNames(t *testing.T) {
	c := openMem(t)
	weird := dump("a/b", "c", "d%2F", 1, 2)
	plain := dump("a", "b/c", "d/", 1, 2)
	commit(t, c, 2, weird, plain, statemachine.Tape{Label: "L/1"}, statemachine.Tape{Label: "L%2F1"})
	for _, tc := range []struct {
		s    string
		want statemachine.DumpRecord
	}{{"a/b", weird}, {"a", plain}} {
		got := collect(t, func(fn func(statemachine.DumpRecord) bool) error { return c.Dumps(tc.s, "", "", fn) })
		if !reflect.DeepEqual(got, []statemachine.DumpRecord{tc.want}) {
			t.Errorf("Dumps(%q) = %+v", tc.s, got)
		}
	}
	if n, _ := c.Counts(); n.Tapes != 2 || n.Dumps != 2 {
		t.Fatalf("escaped names collided: %+v", n)
	}
}

func TestCommitRefusals(t *testing.T) {
	c := openMem(t)
	commit(t, c, 5, job("x-1", 5))
	before, _ := c.Counts()

	refused := func(name string, b *Batch, check func(error) bool) {
		t.Helper()
		err := b.Commit()
		if err == nil || !check(err) {
			t.Errorf("%s: Commit = %v", name, err)
		}
		if m, _ := c.Meta(); m.Applied != 5 || m.JournalID != testJournal {
			t.Errorf("%s: meta changed to %+v", name, m)
		}
		if n, _ := c.Counts(); n != before {
			t.Errorf("%s: counts changed to %+v", name, n)
		}
		if err := b.Commit(); !errors.Is(err, ErrBatchDone) {
			t.Errorf("%s: second Commit = %v, want ErrBatchDone", name, err)
		}
		if err := b.Put(job("x-3", 9)); !errors.Is(err, ErrBatchDone) {
			t.Errorf("%s: Put after Commit = %v, want ErrBatchDone", name, err)
		}
	}

	b := c.NewBatch()
	b.Put(job("x-2", 6))
	refused("no applied", b, func(err error) bool { return errors.Is(err, ErrNoApplied) })

	for _, idx := range []uint64{4, 5} {
		b = c.NewBatch()
		b.Put(job("x-2", 6))
		b.SetApplied(testJournal, idx)
		refused(fmt.Sprintf("index %d", idx), b, func(err error) bool { return errors.Is(err, ErrOutOfOrder) })
	}

	b = c.NewBatch()
	b.Put(job("x-2", 6))
	b.SetApplied("other-journal", 6)
	refused("mismatch", b, func(err error) bool {
		var m *MismatchError
		return errors.As(err, &m) && m.Have == testJournal && m.Want == "other-journal" &&
			err.Error() == "catalog belongs to journal "+testJournal+", not other-journal: run `abs journal rebuild`"
	})

	b = c.NewBatch()
	b.SetApplied(testJournal, 6)
	b.SetSnapshot(7, []byte("s"))
	refused("snapshot after applied", b, func(err error) bool { return errors.Is(err, ErrOutOfOrder) })

	b = c.NewBatch()
	b.SetApplied(testJournal, 6)
	b.SetSnapshot(0, []byte("s"))
	refused("snapshot at 0", b, func(err error) bool { return errors.Is(err, ErrOutOfOrder) })

	if err := c.NewBatch().Put(nil); err == nil {
		t.Error("Put(nil) succeeded")
	}

	// The catalog still accepts the next index after refusals.
	commit(t, c, 6, job("x-2", 6))
}

func TestSnapshots(t *testing.T) {
	dir := t.TempDir()
	c, err := Open(dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if i, s, err := c.LatestSnapshot(); i != 0 || s != nil || err != nil {
		t.Fatalf("LatestSnapshot of new catalog = %d, %q, %v", i, s, err)
	}
	for idx := uint64(2); idx <= 12; idx++ {
		b := c.NewBatch()
		b.Put(job(fmt.Sprintf("x-%d", idx), idx))
		b.SetApplied(testJournal, idx)
		if idx%3 == 0 {
			b.SetSnapshot(idx-1, []byte(fmt.Sprintf("state@%d", idx-1)))
		}
		if err := b.Commit(); err != nil {
			t.Fatal(err)
		}
	}
	check := func(c *Catalog) {
		t.Helper()
		i, s, err := c.LatestSnapshot()
		if err != nil || i != 11 || string(s) != "state@11" {
			t.Fatalf("LatestSnapshot = %d, %q, %v; want 11", i, s, err)
		}
		idx, err := c.snapshotIndices()
		if err != nil || !reflect.DeepEqual(idx, []uint64{8, 11}) {
			t.Fatalf("stored snapshots %v, %v; want [8 11]", idx, err)
		}
		if m, _ := c.Meta(); m != (Meta{JournalID: testJournal, Applied: 12, SnapshotIndex: 11}) {
			t.Fatalf("meta %+v", m)
		}
	}
	check(c)

	b := c.NewBatch()
	b.SetApplied(testJournal, 13)
	b.SetSnapshot(11, []byte("again"))
	if err := b.Commit(); !errors.Is(err, ErrOutOfOrder) {
		t.Fatalf("snapshot at the latest index: %v, want ErrOutOfOrder", err)
	}
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	if err := c.Close(); !errors.Is(err, ErrClosed) {
		t.Fatalf("second Close = %v", err)
	}
	if _, err := c.Meta(); !errors.Is(err, ErrClosed) {
		t.Fatalf("Meta after Close = %v", err)
	}
	c, err = Open(dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	check(c)
}

func TestOpenErrors(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "file")
	if err := os.WriteFile(file, []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, dir string
		opts      Options
		want      string
	}{
		{"a file", file, Options{}, "not a directory"},
		{"a file, read-only", file, Options{ReadOnly: true}, "not a directory"},
		{"under a file", filepath.Join(file, "cat"), Options{}, "not a directory"},
		{"in memory, read-only", "", Options{InMemory: true, ReadOnly: true}, "cannot be read-only"},
	} {
		c, err := Open(tc.dir, tc.opts)
		if err == nil {
			c.Close()
			t.Errorf("%s: Open succeeded", tc.name)
			continue
		}
		if !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want it to say %q", tc.name, err, tc.want)
		}
	}

	missing := filepath.Join(dir, "missing")
	_, err := Open(missing, Options{ReadOnly: true})
	if !errors.Is(err, fs.ErrNotExist) || !strings.Contains(err.Error(), "no catalog in "+missing) {
		t.Errorf("read-only open of a missing dir: %v", err)
	}
	empty := filepath.Join(dir, "empty")
	os.Mkdir(empty, 0o755)
	_, err = Open(empty, Options{ReadOnly: true})
	if !errors.Is(err, fs.ErrNotExist) || !strings.Contains(err.Error(), "no catalog in "+empty) {
		t.Errorf("read-only open of an empty dir: %v", err)
	}
	if ents, _ := os.ReadDir(empty); len(ents) != 0 {
		t.Errorf("read-only open of an empty dir created %v", ents)
	}
	if _, err := os.Stat(missing); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("read-only open created %s", missing)
	}

	t.Run("unreadable", func(t *testing.T) {
		if os.Geteuid() == 0 {
			t.Skip("root reads any directory")
		}
		d := filepath.Join(dir, "locked")
		c, err := Open(d, Options{})
		if err != nil {
			t.Fatal(err)
		}
		c.Close()
		os.Chmod(d, 0)
		defer os.Chmod(d, 0o755)
		for _, ro := range []bool{false, true} {
			if c, err := Open(d, Options{ReadOnly: ro}); err == nil {
				c.Close()
				t.Errorf("read-only=%v: opened an unreadable catalog", ro)
			} else if !strings.Contains(err.Error(), "permission denied") || !strings.Contains(err.Error(), d) {
				t.Errorf("read-only=%v: %v", ro, err)
			}
		}
	})
}

func TestOpenTwice(t *testing.T) {
	dir := t.TempDir()
	c, err := Open(dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	commit(t, c, 2, job("x-1", 2))
	for _, ro := range []bool{false, true} {
		if c2, err := Open(dir, Options{ReadOnly: ro}); !errors.Is(err, ErrInUse) {
			if err == nil {
				c2.Close()
			}
			t.Errorf("second open (read-only=%v) while a writer is open: %v, want ErrInUse", ro, err)
		}
	}
	// The writer still works: the refused opens did not disturb its lock.
	commit(t, c, 3, job("x-2", 3))
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}

	r1, err := Open(dir, Options{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	r2, err := Open(dir, Options{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	if c, err := Open(dir, Options{}); !errors.Is(err, ErrInUse) {
		if err == nil {
			c.Close()
		}
		t.Errorf("writer open while readers are open: %v, want ErrInUse", err)
	}
	r1.Close()
	if m, err := r2.Meta(); err != nil || m.Applied != 3 {
		t.Errorf("reader meta %+v, %v", m, err)
	}
	r2.Close()
	c, err = Open(dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	c.Close()
}

// TestStaleQueueEntry: a job ID stored again with another QueuedIndex
// (statemachine never does it) is listed once, at its current position.
func TestStaleQueueEntry(t *testing.T) {
	c := openMem(t)
	commit(t, c, 2, job("x-1", 2), job("x-2", 3))
	commit(t, c, 4, job("x-1", 4))
	for _, list := range []func(func(statemachine.Job) bool) error{
		func(fn func(statemachine.Job) bool) error { return c.Jobs(0, fn) },
		c.JobsReverse,
	} {
		js := collect(t, list)
		if len(js) != 2 {
			t.Fatalf("listed %v", jobIDs(js))
		}
	}
	if ids := jobIDs(collect(t, func(fn func(statemachine.Job) bool) error { return c.Jobs(0, fn) })); !reflect.DeepEqual(ids, []string{"x-2", "x-1"}) {
		t.Fatalf("Jobs = %v", ids)
	}
}

// TestLogging: pebble's chatter goes to the Logger at debug level only.
func TestLogging(t *testing.T) {
	for _, level := range []slog.Level{slog.LevelInfo, slog.LevelDebug} {
		var buf bytes.Buffer
		log := slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: level}))
		c, err := Open(t.TempDir(), Options{Logger: log})
		if err != nil {
			t.Fatal(err)
		}
		commit(t, c, 2, job("x-1", 2))
		if err := c.Close(); err != nil {
			t.Fatal(err)
		}
		switch {
		case level == slog.LevelInfo && buf.Len() != 0:
			t.Errorf("pebble logged at info level or above:\n%s", buf.String())
		case level == slog.LevelDebug && !strings.Contains(buf.String(), "component=pebble"):
			t.Errorf("pebble's messages did not reach the debug log: %q", buf.String())
		}
	}
}

// TestConcurrentReads: readers run while commits happen (run with -race)
// and always see whole commits.
func TestConcurrentReads(t *testing.T) {
	c := openMem(t)
	done := make(chan struct{})
	errs := make(chan error, 1)
	go func() {
		defer close(errs)
		for {
			select {
			case <-done:
				return
			default:
			}
			n := 0
			if err := c.Jobs(0, func(statemachine.Job) bool { n++; return true }); err != nil {
				errs <- err
				return
			}
			if n%2 != 0 { // every commit adds two jobs
				errs <- fmt.Errorf("saw %d jobs: half a commit", n)
				return
			}
			c.Meta()
		}
	}()
	for i := uint64(1); i <= 200; i++ {
		commit(t, c, i+1, job(fmt.Sprint("a-", i), 2*i), job(fmt.Sprint("b-", i), 2*i+1))
	}
	close(done)
	if err := <-errs; err != nil {
		t.Fatal(err)
	}
}

func TestClosed(t *testing.T) {
	c, err := Open("", Options{InMemory: true})
	if err != nil {
		t.Fatal(err)
	}
	b := c.NewBatch()
	b.Put(job("x-1", 2))
	b.SetApplied(testJournal, 2)
	c.Close()
	for name, err := range map[string]error{
		"Commit":         b.Commit(),
		"NewBatch().Put": c.NewBatch().Put(job("x-1", 2)),
		"Sync":           c.Sync(),
		"Jobs":           c.Jobs(0, func(statemachine.Job) bool { return true }),
		"Tapes":          c.Tapes(func(statemachine.Tape) bool { return true }),
	} {
		if !errors.Is(err, ErrClosed) {
			t.Errorf("%s after Close: %v, want ErrClosed", name, err)
		}
	}
	if _, _, err := c.Job("x-1"); !errors.Is(err, ErrClosed) {
		t.Errorf("Job after Close: %v", err)
	}
	if _, err := c.Counts(); !errors.Is(err, ErrClosed) {
		t.Errorf("Counts after Close: %v", err)
	}
	if _, _, err := c.LatestSnapshot(); !errors.Is(err, ErrClosed) {
		t.Errorf("LatestSnapshot after Close: %v", err)
	}
}
