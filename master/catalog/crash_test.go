package catalog

import (
	"fmt"
	"math/rand/v2"
	"reflect"
	"testing"

	"github.com/cockroachdb/pebble/v2/vfs"

	"github.com/abs-backup/abs/statemachine"
)

// The crash test's journal: record k (index k+1, k = 1..crashBatches) puts
// job c-k, crashDumps dump records (so a batch spans several 32 KiB WAL
// blocks and can be torn), and a new version of tape T whose Files is k;
// every 4th record also stores a snapshot.
const (
	crashBatches = 16
	crashDumps   = 150
)

func crashBatch(k int) (recs []statemachine.Record, snap []byte) {
	idx := uint64(k + 1)
	recs = append(recs, job(fmt.Sprintf("c-%d", k), idx), statemachine.Tape{Label: "T", State: statemachine.TapeReserved, Files: k})
	for i := range crashDumps {
		recs = append(recs, dump(fmt.Sprintf("fs%d", i%7), "vicepa", fmt.Sprintf("vol.%d", i), int64(k), idx))
	}
	if k%4 == 0 {
		snap = []byte(fmt.Sprintf("state after %d", idx))
	}
	return recs, snap
}

func applyCrashBatch(t *testing.T, c *Catalog, k int) {
	t.Helper()
	recs, snap := crashBatch(k)
	b := c.NewBatch()
	for _, r := range recs {
		if err := b.Put(r); err != nil {
			t.Fatal(err)
		}
	}
	b.SetApplied(testJournal, uint64(k+1))
	if snap != nil {
		b.SetSnapshot(uint64(k+1), snap)
	}
	if err := b.Commit(); err != nil {
		t.Fatal(err)
	}
}

// checkPrefix reads which batches c's meta says are applied (1..n, n = 0
// for none), asserts that c holds exactly their records (never part of a
// batch, never data without its applied index) and returns n.
func checkPrefix(t *testing.T, c *Catalog) (n int) {
	t.Helper()
	m, err := c.Meta()
	if err != nil {
		t.Fatal(err)
	}
	if m.Applied != 0 {
		n = int(m.Applied) - 1
		if m.JournalID != testJournal {
			t.Fatalf("journal %q", m.JournalID)
		}
	}
	counts, err := c.Counts()
	if err != nil {
		t.Fatal(err)
	}
	want := Counts{Jobs: n, Dumps: n * crashDumps}
	if n > 0 {
		want.Tapes = 1
	}
	if counts != want {
		t.Fatalf("meta says batches 1..%d are applied, but counts are %+v, want %+v", n, counts, want)
	}
	if n == 0 {
		return 0
	}
	var tapes []statemachine.Tape
	c.Tapes(func(tp statemachine.Tape) bool { tapes = append(tapes, tp); return true })
	if tapes[0].Files != n {
		t.Fatalf("applied batch %d but tape T is from batch %d", n, tapes[0].Files)
	}
	jobs := collect(t, func(fn func(statemachine.Job) bool) error { return c.Jobs(0, fn) })
	for i, j := range jobs {
		if want := fmt.Sprintf("c-%d", i+1); string(j.ID) != want {
			t.Fatalf("job %d is %s, want %s", i, j.ID, want)
		}
	}
	idx, snap, err := c.LatestSnapshot()
	if err != nil {
		t.Fatal(err)
	}
	if wantK := n / 4 * 4; wantK == 0 {
		if snap != nil {
			t.Fatalf("snapshot %d before any was committed", idx)
		}
	} else if idx != uint64(wantK+1) || string(snap) != fmt.Sprintf("state after %d", wantK+1) {
		t.Fatalf("applied batch %d: latest snapshot %d %q", n, idx, snap)
	}
	return n
}

// TestCrashConsistency commits batches without syncing and, after each,
// takes crash images of the file system: what was synced plus a random
// part of what was not (whole 4 KiB blocks, so a WAL record can be torn or
// have holes). Each image must open to a catalog holding exactly the
// batches up to its applied index, and replaying the journal from
// applied+1 must converge to the same records as a replay from scratch.
func TestCrashConsistency(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	mem := vfs.NewCrashableMem()
	c, err := Open("cat", Options{fs: mem})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()

	// The reference: every batch, in memory.
	ref := openMem(t)
	for k := 1; k <= crashBatches; k++ {
		applyCrashBatch(t, ref, k)
	}

	seen := map[int]int{} // recovered batch count → images
	lost := 0             // images that lost some but not all batches
	for k := 1; k <= crashBatches; k++ {
		applyCrashBatch(t, c, k)
		for _, pct := range []int{0, 50, 100} {
			img := mem.CrashClone(vfs.CrashCloneCfg{UnsyncedDataPercent: pct, RNG: rng})
			r, err := Open("cat", Options{fs: img})
			if err != nil {
				t.Fatalf("batch %d, image %d%%: %v", k, pct, err)
			}
			n := checkPrefix(t, r)
			if n > k {
				t.Fatalf("image after batch %d claims batch %d", k, n)
			}
			seen[n]++
			if 0 < n && n < k {
				lost++
			}

			// Resume: apply the rest; the result equals the reference.
			for j := n + 1; j <= crashBatches; j++ {
				applyCrashBatch(t, r, j)
			}
			if d, err := r.Diff(ref, 5); err != nil || len(d) != 0 {
				t.Fatalf("resumed catalog differs from the reference: %v %v", d, err)
			}
			if m, _ := r.Meta(); m.Applied != crashBatches+1 || m.SnapshotIndex != crashBatches+1 {
				t.Fatalf("resumed meta %+v", m)
			}
			r.Close()
		}
	}
	t.Logf("recovered batch count → images: %v", seen)
	// The images must include crashes that lost the latest batches but not
	// all of them, not just "nothing" and "everything": otherwise this test
	// proves little.
	if lost < 3 {
		t.Fatalf("only %d crash images lost part of the batches: %v", lost, seen)
	}

	// After Sync, a crash loses nothing.
	if err := c.Sync(); err != nil {
		t.Fatal(err)
	}
	r, err := Open("cat", Options{fs: mem.CrashClone(vfs.CrashCloneCfg{})})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	if n := checkPrefix(t, r); n != crashBatches {
		t.Fatalf("after Sync and a crash: batches 1..%d, want 1..%d", n, crashBatches)
	}
	want, _ := c.Meta()
	if got, _ := r.Meta(); !reflect.DeepEqual(got, want) {
		t.Fatalf("after Sync and a crash: meta %+v, want %+v", got, want)
	}
}
