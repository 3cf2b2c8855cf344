package slave

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/abs-backup/abs/fixtures"
	"github.com/abs-backup/abs/slave/source"
	"github.com/abs-backup/abs/slave/tape"
	"github.com/abs-backup/abs/statemachine"
)

// fakeMaster answers the runner with the real protocol decisions: it keeps
// a statemachine.State and turns every call into Decide + Apply, as the
// master's commit loop does (without a journal).
type fakeMaster struct {
	t  *testing.T
	mu sync.Mutex
	st *statemachine.State

	seq     uint64
	dumps   []DumpRecord
	notes   []string
	cleared int // status reports with no note (no longer waiting)

	onCheckpoint func(DumpRecord) // called without mu held
	onNote       func(string)
}

const testSlave = "media1"

func newFakeMaster(t *testing.T) *fakeMaster {
	m := &fakeMaster{t: t, st: statemachine.NewState(statemachine.JournalInfo{
		ID: "0123456789abcdef0123456789abcdef", Realm: "athena", Mode: "normal"})}
	m.mustDecide(statemachine.StartMaster{Node: "m1", Addr: "127.0.0.1:1"})
	m.mustDecide(statemachine.RegisterSlave{Slave: statemachine.Slave{Name: testSlave, Addr: "127.0.0.1:2", Drives: 1,
		Reaches: []statemachine.Target{{Scope: statemachine.ScopeServer, Server: "fs1"}}}})
	return m
}

// decide decides cmd and applies its events; mu must be held.
func (m *fakeMaster) decide(cmd statemachine.Command) ([]statemachine.Event, error) {
	evs, err := statemachine.Decide(m.st, cmd, time.Now())
	if err != nil {
		return nil, err
	}
	if len(evs) > 0 {
		m.st.Apply(m.st.Applied+1, evs)
	}
	return evs, nil
}

func (m *fakeMaster) mustDecide(cmd statemachine.Command) []statemachine.Event {
	m.t.Helper()
	evs, err := m.decide(cmd)
	if err != nil {
		m.t.Fatalf("decide %T: %v", cmd, err)
	}
	return evs
}

// queue queues a dump of the target and dispatches it to the slave.
func (m *fakeMaster) queue(target statemachine.Target, level statemachine.Level) string {
	m.t.Helper()
	m.mu.Lock()
	defer m.mu.Unlock()
	evs := m.mustDecide(statemachine.QueueDump{Target: target, Level: level, By: "test"})
	id := evs[0].(statemachine.JobQueued).Job.ID
	m.mustDecide(statemachine.Schedule{})
	if j := m.st.Jobs[id]; j == nil || j.Slave != testSlave {
		m.t.Fatalf("job %s not dispatched to %s: %+v", id, testSlave, j)
	}
	return string(id)
}

// end ends the job as the slave's JobDone would.
func (m *fakeMaster) end(job string, state statemachine.JobState) {
	m.t.Helper()
	m.mu.Lock()
	defer m.mu.Unlock()
	m.seq++
	m.mustDecide(statemachine.Report{Slave: testSlave, Seq: m.seq, ID: statemachine.JobID(job), End: state, Why: "test"})
}

// since is what the master sends in BackupRequest.since: the last dump date
// of every volume it knows.
func (m *fakeMaster) since() map[string]time.Time {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := map[string]time.Time{}
	for k, v := range m.st.Volumes {
		out[k] = time.Unix(0, v.LastDump).UTC()
	}
	return out
}

func (m *fakeMaster) tapeState(label string) statemachine.TapeState {
	m.mu.Lock()
	defer m.mu.Unlock()
	if t := m.st.Tapes[label]; t != nil {
		return t.State
	}
	return 0
}

func (m *fakeMaster) records() []DumpRecord {
	m.mu.Lock()
	defer m.mu.Unlock()
	return slices.Clone(m.dumps)
}

func (m *fakeMaster) ValidateTape(ctx context.Context, job, label, cartridge string) (string, bool, string, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	v, why := m.st.ValidateTape(statemachine.JobID(job), label)
	verdict := map[statemachine.TapeVerdict]string{
		statemachine.TapeBlank: "blank", statemachine.TapeMine: "mine", statemachine.TapeHoldsValidDumps: "valid",
		statemachine.TapeReservedByOther: "reserved", statemachine.TapeUnknownMedia: "unknown", statemachine.TapeExpiredVerdict: "expired",
	}[v]
	return verdict, v.Writable(), why, nil
}

func (m *fakeMaster) GenLabel(ctx context.Context, job, cartridge string) (string, string, string, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	evs, err := m.decide(statemachine.GenLabel{Slave: testSlave, Job: statemachine.JobID(job), Name: cartridge})
	if err != nil {
		return "", "", "", err
	}
	return evs[0].(statemachine.TapeLabeled).Label, m.st.Journal.Realm, m.st.Journal.ID, nil
}

func (m *fakeMaster) ValidateLabel(ctx context.Context, job, label string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	_, err := m.decide(statemachine.ValidateLabel{Slave: testSlave, Job: statemachine.JobID(job), Label: label})
	return err
}

func unixNano(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixNano()
}

func (m *fakeMaster) DumpCheckpoint(ctx context.Context, job string, d DumpRecord, volumes int, n int64) error {
	m.mu.Lock()
	m.seq++
	_, err := m.decide(statemachine.Report{Slave: testSlave, Seq: m.seq, ID: statemachine.JobID(job), Volumes: volumes, Bytes: n,
		Dump: &statemachine.Dump{Volume: d.Volume, Server: d.Server, Partition: d.Partition,
			DumpDate: unixNano(d.DumpDate), IncrementDate: unixNano(d.IncrementDate),
			Tapes: d.Tapes, File: d.File, Bytes: d.Bytes, SHA256: d.SHA256}})
	if err == nil {
		m.dumps = append(m.dumps, d)
	}
	hook := m.onCheckpoint
	m.mu.Unlock()
	if err == nil && hook != nil {
		hook(d)
	}
	return err
}

func (m *fakeMaster) JobStatus(ctx context.Context, job string, volumes int, n int64, note string) error {
	m.mu.Lock()
	m.seq++
	_, err := m.decide(statemachine.Report{Slave: testSlave, Seq: m.seq, ID: statemachine.JobID(job), Volumes: volumes, Bytes: n})
	if note != "" {
		m.notes = append(m.notes, note)
	} else {
		m.cleared++
	}
	hook := m.onNote
	m.mu.Unlock()
	if note != "" && hook != nil {
		hook(note)
	}
	return err
}

// env is a slave with a file library and one directory partition fs1/vicepa.
type env struct {
	t    *testing.T
	lib  *tape.FileLibrary
	part string // the partition directory
	vols []string
	cfg  *Config
	m    *fakeMaster
}

func newEnv(t *testing.T, capacity int64, cartridges, volumes int, o fixtures.TreeOptions) *env {
	t.Helper()
	root := t.TempDir()
	libDir := filepath.Join(root, "tapes")
	if err := os.Mkdir(libDir, 0o755); err != nil {
		t.Fatal(err)
	}
	lib, err := tape.OpenLibrary(libDir, 2, capacity)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tape.NewCartridges(libDir, cartridges, "A"); err != nil {
		t.Fatal(err)
	}
	part := filepath.Join(root, "vicepa")
	vols, err := fixtures.GenerateVolumes(part, volumes, o)
	if err != nil {
		t.Fatal(err)
	}
	cfg := &Config{Servers: []Server{{Name: "fs1", Partitions: []Partition{{Name: "vicepa", Path: part}}}}}
	return &env{t: t, lib: lib, part: part, vols: vols, cfg: cfg, m: newFakeMaster(t)}
}

func (e *env) runner() *Runner {
	return &Runner{Library: e.lib, Drive: 0, Config: e.cfg, Master: e.m, Poll: 10 * time.Millisecond, LibraryName: "lib1"}
}

func smallTrees(seed uint64) fixtures.TreeOptions {
	return fixtures.TreeOptions{Seed: seed, Files: 25, Dirs: 5, Large: -1, SmallMax: 8 << 10, Symlinks: 3}
}

// cartridges maps every labeled cartridge's label to its path.
func (e *env) cartridges() map[string]string {
	e.t.Helper()
	names, err := e.lib.Cartridges()
	if err != nil {
		e.t.Fatal(err)
	}
	out := map[string]string{}
	for _, n := range names {
		l, err := readLabelFile(e.lib.Path(n))
		if errors.Is(err, tape.ErrBlank) {
			continue
		}
		if err != nil {
			e.t.Fatalf("label of %s: %v", n, err)
		}
		out[l.Label] = e.lib.Path(n)
	}
	return out
}

// stream reads a dump record's stream back from the cartridges, with
// nothing but the tape package's reader: part 1 is file rec.File on
// rec.Tapes[0], part k the file continuing part k-1 on rec.Tapes[k-1].
func (e *env) stream(rec DumpRecord) []byte {
	e.t.Helper()
	paths := e.cartridges()
	var buf bytes.Buffer
	prev := ""
	for i, label := range rec.Tapes {
		path, ok := paths[label]
		if !ok {
			e.t.Fatalf("no cartridge labeled %s", label)
		}
		_, files, err := tape.List(path)
		if err != nil && !errors.Is(err, tape.ErrCorrupt) {
			e.t.Fatalf("list %s: %v", path, err)
		}
		n := 0
		for _, f := range files {
			if f.Complete && f.Volume == rec.Volume && f.Part == i+1 && f.PrevLabel == prev &&
				(i > 0 || f.Number == rec.File) && f.DumpDate.Equal(rec.DumpDate) {
				n = f.Number
				if last := i == len(rec.Tapes)-1; f.Continues == last {
					e.t.Fatalf("%s file %d: continues=%v, part %d of %d", label, n, f.Continues, i+1, len(rec.Tapes))
				}
			}
		}
		if n == 0 {
			e.t.Fatalf("no part %d of %s on %s: %+v", i+1, rec.Volume, label, files)
		}
		_, rc, err := tape.OpenFile(path, n)
		if err != nil {
			e.t.Fatal(err)
		}
		if _, err := io.Copy(&buf, rc); err != nil {
			e.t.Fatal(err)
		}
		if err := rc.Close(); err != nil {
			e.t.Fatal(err)
		}
		prev = label
	}
	sum := sha256.Sum256(buf.Bytes())
	if got := hex.EncodeToString(sum[:]); got != rec.SHA256 || int64(buf.Len()) != rec.Bytes {
		e.t.Fatalf("%s: stream read back is %d bytes %s, record says %d bytes %s", rec.Volume, buf.Len(), got, rec.Bytes, rec.SHA256)
	}
	return buf.Bytes()
}

// restoreEquals restores the chain of records into a new directory and
// compares it with the volume directory dir.
func (e *env) restoreEquals(dir string, chain ...DumpRecord) {
	e.t.Helper()
	var streams []io.Reader
	for _, rec := range chain {
		streams = append(streams, bytes.NewReader(e.stream(rec)))
	}
	target := filepath.Join(e.t.TempDir(), "restore")
	if err := source.RestoreChain(context.Background(), source.DirRestorer{}, target, streams...); err != nil {
		e.t.Fatalf("restore %s: %v", dir, err)
	}
	want, err := fixtures.Scan(dir)
	if err != nil {
		e.t.Fatal(err)
	}
	got, err := fixtures.Scan(target)
	if err != nil {
		e.t.Fatal(err)
	}
	if d := want.Diff(got, fixtures.DiffOptions{MTimePrecision: time.Second}); len(d) > 0 {
		e.t.Fatalf("restore of %s differs:\n%s", filepath.Base(dir), strings.Join(d, "\n"))
	}
}

func fileBytes(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

var partitionTarget = statemachine.Target{Scope: statemachine.ScopePartition, Server: "fs1", Partition: "vicepa"}

func TestDumpPartitionThenIncremental(t *testing.T) {
	e := newEnv(t, 64<<20, 2, 3, smallTrees(1))
	ctx := context.Background()
	job := e.m.queue(partitionTarget, statemachine.LevelFull)
	res, err := e.runner().Dump(ctx, DumpOrder{Job: job, Scope: "partition", Server: "fs1", Partition: "vicepa", Level: "full"})
	if err != nil {
		t.Fatal(err)
	}
	recs := e.m.records()
	if res.Volumes != 3 || len(recs) != 3 || len(res.Tapes) != 1 {
		t.Fatalf("result %+v, %d records: want 3 volumes on one tape", res, len(recs))
	}
	var total int64
	for i, rec := range recs {
		if want := fixtures.VolumeName(i + 1); rec.Volume != want || rec.Server != "fs1" || rec.Partition != "vicepa" {
			t.Errorf("record %d is %s/%s/%s, want fs1/vicepa/%s", i, rec.Server, rec.Partition, rec.Volume, want)
		}
		if !slices.Equal(rec.Tapes, res.Tapes) || rec.File != i+1 || !rec.IncrementDate.IsZero() {
			t.Errorf("record %d: tapes %v file %d since %v; want %v file %d, full", i, rec.Tapes, rec.File, rec.IncrementDate, res.Tapes, i+1)
		}
		total += rec.Bytes
	}
	if res.Bytes != total {
		t.Errorf("result says %d bytes, records %d", res.Bytes, total)
	}
	full := e.cartridges()
	if len(full) != 1 {
		t.Fatalf("labeled cartridges: %v, want one", full)
	}
	path := full[res.Tapes[0]]
	lab, files, err := tape.List(path)
	if err != nil || lab.Label != res.Tapes[0] || lab.Realm != "athena" || len(files) != 3 {
		t.Fatalf("tape.List(%s) = %+v, %d files, %v", filepath.Base(path), lab, len(files), err)
	}
	for i, f := range files {
		if f.Job != job || f.Volume != recs[i].Volume || f.Part != 1 || f.Continues || f.TotalSHA256 != recs[i].SHA256 {
			t.Errorf("file %d: %+v does not match record %+v", i+1, f.FileHeader, recs[i])
		}
	}
	if st := e.m.tapeState(res.Tapes[0]); st != statemachine.TapeReserved {
		t.Errorf("tape %s is %s during the job, want reserved", res.Tapes[0], st)
	}
	e.m.end(job, statemachine.StateDone)
	if st := e.m.tapeState(res.Tapes[0]); st != statemachine.TapeValid {
		t.Fatalf("tape %s is %s after the job, want valid", res.Tapes[0], st)
	}
	for i, rec := range recs {
		e.restoreEquals(e.vols[i], rec)
	}

	// An incremental: the VALID cartridge is never written again; the
	// next blank one is labeled.
	validBytes := fileBytes(t, path)
	if _, err := fixtures.Mutate(e.vols[0], 7, 12, time.Now().Add(time.Second).Truncate(time.Second)); err != nil {
		t.Fatal(err)
	}
	job2 := e.m.queue(partitionTarget, statemachine.LevelIncremental)
	r2 := e.runner()
	// No timestamp slack: the volumes were generated less than a second
	// before the full dump, and the size check below wants only changes.
	r2.Source = func(server string, p Partition) source.Partition {
		return &source.DirPartition{ServerName: server, PartitionName: p.Name, Path: p.Path, TimestampSlack: -1}
	}
	res2, err := r2.Dump(ctx, DumpOrder{Job: job2, Scope: "partition", Server: "fs1", Partition: "vicepa",
		Level: "incremental", Since: e.m.since()})
	if err != nil {
		t.Fatal(err)
	}
	recs2 := e.m.records()[3:]
	if res2.Volumes != 3 || len(recs2) != 3 || len(res2.Tapes) != 1 || res2.Tapes[0] == res.Tapes[0] {
		t.Fatalf("incremental: %+v, %d records; want 3 volumes on a new tape", res2, len(recs2))
	}
	for i, rec := range recs2 {
		if !rec.IncrementDate.Equal(recs[i].DumpDate) {
			t.Errorf("%s: incremental since %v, want the full dump's date %v", rec.Volume, rec.IncrementDate, recs[i].DumpDate)
		}
	}
	if recs2[0].Bytes >= recs[0].Bytes || recs2[2].Bytes >= recs[2].Bytes/2 {
		t.Errorf("incrementals of %d and %d bytes after fulls of %d and %d: not incremental",
			recs2[0].Bytes, recs2[2].Bytes, recs[0].Bytes, recs[2].Bytes)
	}
	if !bytes.Equal(fileBytes(t, path), validBytes) {
		t.Fatal("the VALID cartridge was written by the second job")
	}
	e.m.end(job2, statemachine.StateDone)
	for i := range recs2 {
		e.restoreEquals(e.vols[i], recs[i], recs2[i])
	}
}

func TestDumpSpansCartridges(t *testing.T) {
	o := fixtures.TreeOptions{Seed: 3, Files: 8, Dirs: 2, SmallMax: 4 << 10, Large: 1, LargeSize: 1 << 20, Symlinks: 1}
	e := newEnv(t, 256<<10, 8, 1, o)
	job := e.m.queue(statemachine.Target{Scope: statemachine.ScopeVolume, Server: "fs1", Volume: fixtures.VolumeName(1)}, statemachine.LevelAuto)
	res, err := e.runner().Dump(context.Background(), DumpOrder{Job: job, Scope: "volume", Volume: fixtures.VolumeName(1), Since: e.m.since()})
	if err != nil {
		t.Fatal(err)
	}
	recs := e.m.records()
	if len(recs) != 1 {
		t.Fatalf("%d records, want 1", len(recs))
	}
	rec := recs[0]
	if len(rec.Tapes) < 4 || !slices.Equal(rec.Tapes, res.Tapes) || rec.Bytes < 1<<20 || rec.File != 1 {
		t.Fatalf("record %+v (result tapes %v): want one dump over at least 4 cartridges", rec, res.Tapes)
	}
	e.m.end(job, statemachine.StateDone)
	for _, l := range rec.Tapes {
		if st := e.m.tapeState(l); st != statemachine.TapeValid {
			t.Errorf("tape %s is %s, want valid", l, st)
		}
	}
	e.restoreEquals(e.vols[0], rec)
}

func TestDumpSkipsForeignCartridgesAndWaitsForBlank(t *testing.T) {
	e := newEnv(t, 64<<20, 0, 1, smallTrees(5))
	dir := e.lib.Dir()
	names, err := tape.NewCartridges(dir, 2, "A")
	if err != nil {
		t.Fatal(err)
	}
	foreign := []tape.Label{
		{Label: "zeus-ABCDE-000001", Realm: "zeus", Origin: "another realm", Created: time.Now()},
		{Label: "athena-QQQQQ-000001", Realm: "athena", Origin: "another journal", Created: time.Now()},
	}
	before := map[string][]byte{}
	for i, n := range names {
		d, err := e.lib.Load(1, n)
		if err != nil {
			t.Fatal(err)
		}
		if err := d.WriteLabel(foreign[i]); err != nil {
			t.Fatal(err)
		}
		if err := d.Unload(); err != nil {
			t.Fatal(err)
		}
		before[n] = fileBytes(t, e.lib.Path(n))
	}
	added := make(chan []string, 1)
	e.m.onNote = func(note string) {
		if strings.Contains(note, "waiting for a blank tape") {
			go func() {
				n, err := tape.NewCartridges(dir, 1, "B")
				if err != nil {
					t.Error(err)
				}
				added <- n
			}()
		}
	}
	job := e.m.queue(statemachine.Target{Scope: statemachine.ScopeVolume, Server: "fs1", Volume: fixtures.VolumeName(1)}, statemachine.LevelAuto)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	res, err := e.runner().Dump(ctx, DumpOrder{Job: job, Scope: "volume", Server: "fs1", Volume: fixtures.VolumeName(1)})
	if err != nil {
		t.Fatal(err)
	}
	var b []string
	select {
	case b = <-added:
	default:
		t.Fatal("the runner never said it was waiting for a blank tape")
	}
	e.m.mu.Lock()
	notes, cleared := slices.Clone(e.m.notes), e.m.cleared
	e.m.mu.Unlock()
	if !slices.Equal(notes, []string{"waiting for a blank tape in lib1"}) || cleared != 1 {
		t.Errorf("notes %q and %d clearing status reports, want one waiting note, cleared once when the tape came", notes, cleared)
	}
	if lab, err := readLabelFile(e.lib.Path(b[0])); err != nil || len(res.Tapes) != 1 || lab.Label != res.Tapes[0] {
		t.Fatalf("dump went to %v; the new cartridge %s has label %+v (%v)", res.Tapes, b[0], lab, err)
	}
	for n, was := range before {
		if !bytes.Equal(fileBytes(t, e.lib.Path(n)), was) {
			t.Errorf("cartridge %s, labeled by someone else, was written", n)
		}
	}
	e.m.end(job, statemachine.StateDone)
	e.restoreEquals(e.vols[0], e.m.records()[0])
}

// cancelPartition cancels the dump once it has written after bytes of volume.
type cancelPartition struct {
	source.Partition
	volume string
	after  int64
	cancel context.CancelFunc
}

type cancelWriter struct {
	w      io.Writer
	n      int64
	after  int64
	cancel context.CancelFunc
}

func (c *cancelWriter) Write(p []byte) (int, error) {
	if c.n += int64(len(p)); c.n > c.after {
		c.cancel()
	}
	return c.w.Write(p)
}

func (c *cancelPartition) Dump(ctx context.Context, volume string, since time.Time, w io.Writer, p source.Progress) (source.DumpStats, error) {
	if volume == c.volume {
		w = &cancelWriter{w: w, after: c.after, cancel: c.cancel}
	}
	return c.Partition.Dump(ctx, volume, since, w, p)
}

func TestDumpAbort(t *testing.T) {
	for _, mid := range []bool{false, true} {
		t.Run(fmt.Sprintf("midwrite=%v", mid), func(t *testing.T) {
			e := newEnv(t, 64<<20, 1, 3, smallTrees(9))
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			r := e.runner()
			if mid {
				r.Source = func(server string, p Partition) source.Partition {
					return &cancelPartition{Partition: NewSource(server, p), volume: fixtures.VolumeName(2), after: 4 << 10, cancel: cancel}
				}
			} else {
				e.m.onCheckpoint = func(DumpRecord) { cancel() }
			}
			job := e.m.queue(partitionTarget, statemachine.LevelFull)
			res, err := r.Dump(ctx, DumpOrder{Job: job, Scope: "partition", Server: "fs1", Partition: "vicepa", Level: "full"})
			if !errors.Is(err, ErrAborted) {
				t.Fatalf("Dump = %v, want ErrAborted", err)
			}
			recs := e.m.records()
			if res.Volumes != 1 || len(recs) != 1 || recs[0].Volume != fixtures.VolumeName(1) {
				t.Fatalf("result %+v, records %+v: want volume 1 only", res, recs)
			}
			_, files, lerr := tape.List(e.cartridges()[recs[0].Tapes[0]])
			if mid {
				if len(files) != 2 || !files[0].Complete || files[1].Complete || !errors.Is(lerr, tape.ErrCorrupt) {
					t.Errorf("after an abort mid-write: %d files (%v), want one complete and one torn", len(files), lerr)
				}
			} else if len(files) != 1 || lerr != nil {
				t.Errorf("after an abort between volumes: %d files (%v), want one", len(files), lerr)
			}
			e.m.end(job, statemachine.StateAborted)
			if st := e.m.tapeState(recs[0].Tapes[0]); st != statemachine.TapeValid {
				t.Errorf("tape is %s after the aborted job, want valid (it holds a checkpointed dump)", st)
			}
			e.restoreEquals(e.vols[0], recs[0])
		})
	}
}

func TestExpand(t *testing.T) {
	root := t.TempDir()
	for _, d := range []string{"a/user.b", "a/user.a", "b/user.c", "c/user.a"} {
		if err := os.MkdirAll(filepath.Join(root, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	cfg := &Config{Servers: []Server{
		{Name: "fs1", Partitions: []Partition{
			{Name: "a", Path: filepath.Join(root, "a")},
			{Name: "b", Path: filepath.Join(root, "b")},
			{Name: "db", Dump: "cat {volume}", Restore: "true", Volumes: []string{"z", "m"}},
		}},
		{Name: "fs2", Partitions: []Partition{{Name: "c", Path: filepath.Join(root, "c")}}},
	}}
	r := &Runner{Config: cfg}
	for _, tc := range []struct {
		o    DumpOrder
		want string // volume keys, or "error: substring"
	}{
		{DumpOrder{Scope: "server", Server: "fs1"}, "fs1/a/user.a fs1/a/user.b fs1/b/user.c fs1/db/m fs1/db/z"},
		{DumpOrder{Scope: "partition", Server: "fs1", Partition: "db"}, "fs1/db/m fs1/db/z"},
		{DumpOrder{Scope: "volume", Volume: "user.a"}, "fs1/a/user.a fs2/c/user.a"},
		{DumpOrder{Scope: "volume", Server: "fs2", Volume: "user.a"}, "fs2/c/user.a"},
		{DumpOrder{Scope: "volume", Server: "fs1", Partition: "db", Volume: "z"}, "fs1/db/z"},
		{DumpOrder{Scope: "volume", Server: "fs1", Volume: "user.x"}, "error: searched fs1/a, fs1/b, fs1/db"},
		{DumpOrder{Scope: "partition", Server: "fs1", Partition: "x"}, "error: no partition \"x\""},
		{DumpOrder{Scope: "server", Server: "fs9"}, "error: server \"fs9\""},
		{DumpOrder{Scope: "cell"}, "error: unknown scope"},
	} {
		vols, err := r.expand(context.Background(), tc.o)
		var got string
		if err != nil {
			got = "error: " + err.Error()
		} else {
			var keys []string
			for _, v := range vols {
				keys = append(keys, v.key())
			}
			got = strings.Join(keys, " ")
		}
		if (err != nil) != strings.HasPrefix(tc.want, "error: ") || !strings.Contains(got, strings.TrimPrefix(tc.want, "error: ")) ||
			(err == nil && got != tc.want) {
			t.Errorf("expand(%+v) = %q, want %q", tc.o, got, tc.want)
		}
	}
}

func readLabelFile(path string) (tape.Label, error) {
	f, err := os.Open(path)
	if err != nil {
		return tape.Label{}, err
	}
	defer f.Close()
	return tape.ReadLabel(f)
}
