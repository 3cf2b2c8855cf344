package catalog

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"github.com/vmihailenco/msgpack/v5"

	"github.com/abs-backup/abs/statemachine"
)

// benchJob is a small job as the commit loop stores it.
func benchJob(seq uint64) statemachine.Job {
	return statemachine.Job{
		ID: statemachine.JobID(fmt.Sprintf("q7k2m-%d", seq)), Kind: statemachine.KindDump,
		Target: statemachine.Target{Scope: statemachine.ScopeVolume, Server: "fs1", Partition: "vicepa", Volume: fmt.Sprintf("user.%d", seq%5000)},
		State:  statemachine.StateQueued, By: "alice", Why: "waiting to be dispatched",
		QueuedAt: 1_700_000_000_000_000_000 + int64(seq), UpdatedAt: 1_700_000_000_000_000_000 + int64(seq), QueuedIndex: seq + 1,
	}
}

// fillJobs commits n jobs in batches of per, journal index = job's
// QueuedIndex, starting after *seq.
func fillJobs(tb testing.TB, c *Catalog, seq *uint64, n, per int) {
	for done := 0; done < n; done += per {
		bt := c.NewBatch()
		for range per {
			*seq++
			if err := bt.Put(benchJob(*seq)); err != nil {
				tb.Fatal(err)
			}
		}
		bt.SetApplied(testJournal, *seq+1)
		if err := bt.Commit(); err != nil {
			tb.Fatal(err)
		}
	}
}

// BenchmarkCommit: batches of new small jobs (each a job/ and a jobq/ key),
// on disk, unsynced, as the commit loop (1 record a batch) and a rebuild
// (1000) write them. records/s and ns/record time the catalog only, not the
// making of the records (Apply makes them in the master).
func BenchmarkCommit(b *testing.B) {
	for _, per := range []int{1, 1000} {
		b.Run(fmt.Sprintf("records=%d", per), func(b *testing.B) {
			c, err := Open(b.TempDir(), Options{})
			if err != nil {
				b.Fatal(err)
			}
			defer c.Close()
			recs := make([]statemachine.Job, per)
			var seq uint64
			var el time.Duration
			batches := 0
			for b.Loop() {
				for i := range recs {
					recs[i] = benchJob(seq + uint64(i) + 1)
				}
				seq += uint64(per)
				start := time.Now()
				bt := c.NewBatch()
				for _, r := range recs {
					if err := bt.Put(r); err != nil {
						b.Fatal(err)
					}
				}
				bt.SetApplied(testJournal, seq+1)
				if err := bt.Commit(); err != nil {
					b.Fatal(err)
				}
				el += time.Since(start)
				batches++
			}
			b.ReportMetric(float64(batches*per)/el.Seconds(), "records/s")
			b.ReportMetric(float64(el.Nanoseconds())/float64(batches*per), "ns/record")
			b.ReportMetric(0, "ns/op")
		})
	}
}

// BenchmarkCommitBaseline is the floor BenchmarkCommit/records=1000 is
// measured against, in the same run: the same keys and values (encoded
// beforehand) written straight into pebble batches with the catalog's
// options. The difference is the catalog's own cost (msgpack encoding, key
// building, meta).
func BenchmarkCommitBaseline(b *testing.B) {
	c, err := Open(b.TempDir(), Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	const per = 1000
	type kv struct{ k, v []byte }
	kvs := make([]kv, 0, 2*per)
	var seq uint64
	var el time.Duration
	batches := 0
	for b.Loop() {
		kvs = kvs[:0]
		for i := range per {
			j := benchJob(seq + uint64(i) + 1)
			v, err := msgpack.Marshal(&j)
			if err != nil {
				b.Fatal(err)
			}
			kvs = append(kvs, kv{jobQKey(nil, j.QueuedIndex, string(j.ID)), []byte(j.ID)}, kv{jobKey(nil, string(j.ID)), v})
		}
		seq += per
		start := time.Now()
		pb := c.db.NewBatch()
		for _, e := range kvs {
			pb.Set(e.k, e.v, nil)
		}
		if err := c.db.Apply(pb, pebble.NoSync); err != nil {
			b.Fatal(err)
		}
		pb.Close()
		el += time.Since(start)
		batches++
	}
	b.ReportMetric(float64(batches*per)/el.Seconds(), "records/s")
	b.ReportMetric(float64(el.Nanoseconds())/float64(batches*per), "ns/record")
	b.ReportMetric(0, "ns/op")
}

// build1M makes an on-disk catalog of one million jobs and returns it open.
func build1M(b *testing.B, dir string) *Catalog {
	b.Helper()
	c, err := Open(dir, Options{})
	if err != nil {
		b.Fatal(err)
	}
	var seq uint64
	start := time.Now()
	fillJobs(b, c, &seq, 1_000_000, 1000)
	b.Logf("built 1M jobs in %v", time.Since(start))
	return c
}

// BenchmarkOpen1M: Open (and Meta) of a cleanly closed catalog of one
// million jobs.
func BenchmarkOpen1M(b *testing.B) {
	dir := b.TempDir()
	if err := build1M(b, dir).Close(); err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		c, err := Open(dir, Options{})
		if err != nil {
			b.Fatal(err)
		}
		if m, err := c.Meta(); err != nil || m.Applied != 1_000_001 {
			b.Fatalf("meta %+v, %v", m, err)
		}
		b.StopTimer()
		c.Close()
		b.StartTimer()
	}
}

// BenchmarkOpen1MAfterCrash: Open of a catalog of one million jobs whose
// writer was killed (SIGKILL) right after writing them: pebble replays the
// WAL of the unflushed memtable (up to memTableSize) and flushes it before
// Open returns.
func BenchmarkOpen1MAfterCrash(b *testing.B) {
	img := filepath.Join(b.TempDir(), "image")
	cmd := exec.Command(os.Args[0], "-test.run=^TestHelperBuild1M$")
	cmd.Env = append(os.Environ(), "CATALOG_TEST_BUILD="+img)
	out, err := cmd.StdoutPipe()
	if err != nil {
		b.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	line, _ := bufio.NewReader(out).ReadString('\n')
	cmd.Process.Kill()
	cmd.Wait()
	if line != "ready\n" {
		b.Fatalf("builder: %q", line)
	}
	i := 0
	for b.Loop() {
		b.StopTimer()
		dir := filepath.Join(b.TempDir(), fmt.Sprint(i))
		copyDir(b, img, dir)
		i++
		b.StartTimer()
		c, err := Open(dir, Options{})
		if err != nil {
			b.Fatal(err)
		}
		if m, err := c.Meta(); err != nil || m.Applied != 1_000_001 {
			b.Fatalf("meta %+v, %v", m, err)
		}
		b.StopTimer()
		c.Close()
		os.RemoveAll(dir) // ~200 MB each
		b.StartTimer()
	}
}

// TestHelperBuild1M is not a test: BenchmarkOpen1MAfterCrash runs the test
// binary with it to build a catalog and be killed.
func TestHelperBuild1M(t *testing.T) {
	dir := os.Getenv("CATALOG_TEST_BUILD")
	if dir == "" {
		t.Skip("helper process only")
	}
	c, err := Open(dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	var seq uint64
	fillJobs(t, c, &seq, 1_000_000, 1000)
	if err := c.Sync(); err != nil { // the WAL reaches the kernel; the kill loses nothing
		t.Fatal(err)
	}
	fmt.Println("ready")
	select {} // wait for SIGKILL
}

// BenchmarkJobsReverse100: the 100 newest of one million jobs (`abs jobs
// --all --limit 100`).
func BenchmarkJobsReverse100(b *testing.B) {
	dir := b.TempDir()
	if err := build1M(b, dir).Close(); err != nil {
		b.Fatal(err)
	}
	c, err := Open(dir, Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	for b.Loop() {
		n := 0
		if err := c.JobsReverse(func(statemachine.Job) bool { n++; return n < 100 }); err != nil {
			b.Fatal(err)
		}
	}
}
