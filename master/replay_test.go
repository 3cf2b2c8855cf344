package master

import (
	"bytes"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/abs-backup/abs/journal"
	"github.com/abs-backup/abs/master/catalog"
	"github.com/abs-backup/abs/statemachine"
)

// appendJobs appends n more records (queue, and abort every other) to an
// existing journal, deciding against st.
func appendJobs(t testing.TB, dir string, st *statemachine.State, n int) {
	t.Helper()
	j, err := journal.Open(dir, journal.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer j.Close()
	now := time.Unix(1_700_000_000, 0)
	var last *journal.Future
	for i := 0; i < n; i++ {
		var cmd statemachine.Command = statemachine.QueueDump{Target: statemachine.Target{Scope: statemachine.ScopeServer, Server: fmt.Sprintf("fs%d", i)}, By: "t"}
		if i%2 == 1 {
			cmd = statemachine.AbortJob{ID: st.ActiveJobs()[0].ID}
		}
		evs, err := statemachine.Decide(st, cmd, now)
		if err != nil {
			t.Fatal(err)
		}
		p, _ := statemachine.EncodeEvents(evs)
		last = j.Submit(journal.Entry{Type: journal.TypeEvents, Epoch: 1, Time: now.UnixNano(), Payload: p})
		st.Apply(st.Applied+1, evs)
	}
	if _, err := last.Wait(); err != nil {
		t.Fatal(err)
	}
}

func fullReplay(t *testing.T, dir string) *statemachine.State {
	t.Helper()
	r, err := journal.OpenReader(dir)
	if err != nil {
		t.Fatal(err)
	}
	st := statemachine.NewState(journalInfo(r.Identity()))
	if err := scanDone(replay(r, st, 2, 0, nil)); err != nil {
		t.Fatal(err)
	}
	return st
}

// TestRecoverFromSnapshot: a rebuild leaves snapshots every SnapshotEvery
// records; recovery starts from the latest and replays only the tail; the
// recovered state equals a full replay byte for byte, and Verify finds the
// catalog equal to a fresh replay, snapshot included.
func TestRecoverFromSnapshot(t *testing.T) {
	data := t.TempDir()
	jdir := filepath.Join(data, JournalDir)
	st := writeJournal(t, jdir, 2*SnapshotEvery+500)
	if _, err := Rebuild(data); err != nil {
		t.Fatal(err)
	}
	appendJobs(t, jdir, st, 777) // a tail the catalog has not seen

	cat, err := catalog.Open(filepath.Join(data, CatalogDir), catalog.Options{})
	if err != nil {
		t.Fatal(err)
	}
	snapIdx, _, err := cat.LatestSnapshot()
	if err != nil {
		t.Fatal(err)
	}
	if snapIdx != 1+2*SnapshotEvery {
		t.Fatalf("latest snapshot at %d, want %d", snapIdx, 1+2*SnapshotEvery)
	}
	r, err := journal.OpenReader(jdir)
	if err != nil {
		t.Fatal(err)
	}
	recovered, err := recoverState(r, cat)
	if err != nil {
		t.Fatal(err)
	}
	meta, _ := cat.Meta()
	cat.Close()
	if meta.Applied != r.LastIndex() {
		t.Fatalf("catalog applied %d after recovery, journal ends at %d", meta.Applied, r.LastIndex())
	}
	want, _ := fullReplay(t, jdir).Snapshot()
	got, _ := recovered.Snapshot()
	live, _ := st.Snapshot()
	if !bytes.Equal(got, want) || !bytes.Equal(want, live) {
		t.Fatal("state recovered from snapshot + tail differs from a full replay")
	}
	rep, err := Verify(data)
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Differences) != 0 || !rep.SnapshotOK || rep.SnapshotAt != snapIdx || rep.Applied != rep.LastIndex {
		t.Fatalf("verify: %+v", rep)
	}
}

// TestVerifyFindsDifferences: a catalog changed behind the journal's back
// is reported, and recovery refuses a catalog of another journal.
func TestVerifyFindsDifferences(t *testing.T) {
	data := t.TempDir()
	jdir := filepath.Join(data, JournalDir)
	st := writeJournal(t, jdir, 20)
	id := st.Journal
	if _, err := Rebuild(data); err != nil {
		t.Fatal(err)
	}
	appendJobs(t, jdir, st, 1)
	// The catalog claims the new record applied, but holds a forged value
	// instead of what the record says.
	cat, err := catalog.Open(filepath.Join(data, CatalogDir), catalog.Options{})
	if err != nil {
		t.Fatal(err)
	}
	b := cat.NewBatch()
	forged := st.Recent[0]
	forged.State = statemachine.StateDone
	b.Put(forged)
	meta, _ := cat.Meta()
	b.SetApplied(id.ID, meta.Applied+1)
	if err := b.Commit(); err != nil {
		t.Fatal(err)
	}
	cat.Close()
	rep, err := Verify(data)
	if err != nil {
		t.Fatal(err)
	}
	joined := fmt.Sprint(rep.Differences)
	if !bytes.Contains([]byte(joined), []byte("job/"+string(forged.ID))) || !bytes.Contains([]byte(joined), []byte("job/"+string(st.ActiveJobs()[0].ID))) {
		t.Fatalf("verify did not name the forged and the missing job: %v", rep.Differences)
	}
	// A catalog ahead of its journal is refused by recovery.
	cat, _ = catalog.Open(filepath.Join(data, CatalogDir), catalog.Options{})
	b = cat.NewBatch()
	b.SetApplied(id.ID, meta.Applied+5)
	if err := b.Commit(); err != nil {
		t.Fatal(err)
	}
	cat.Close()
	r, _ := journal.OpenReader(jdir)
	cat, _ = catalog.Open(filepath.Join(data, CatalogDir), catalog.Options{})
	defer cat.Close()
	if _, err := recoverState(r, cat); err == nil {
		t.Fatal("recovery accepted a catalog ahead of its journal")
	}
}
