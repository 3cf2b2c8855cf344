package statemachine

import (
	"bytes"
	"testing"
	"time"
)

// journalOf decides and applies cmds on s, returning each record's events
// (what a journal of s would hold after its identity record).
func journalOf(t *testing.T, s *State, now time.Time, cmds ...Command) [][]Event {
	t.Helper()
	var recs [][]Event
	for _, c := range cmds {
		evs, err := Decide(s, c, now)
		if err != nil {
			t.Fatalf("%T: %v", c, err)
		}
		if len(evs) == 0 {
			continue
		}
		s.Apply(s.Applied+1, evs)
		recs = append(recs, evs)
	}
	return recs
}

// merge replays crippled records from index first (2 is the first after
// the identity record) into s as abs merge does, returning what it wrote.
func merge(s *State, origin string, recs [][]Event, names map[string]string, look MergeLookup) [][]Event {
	var wrote [][]Event
	for i, evs := range recs {
		out, _ := MergeRecord(s, origin, uint64(i+2), evs, names, look)
		if out == nil {
			continue
		}
		s.Apply(s.Applied+1, out)
		wrote = append(wrote, out)
	}
	return wrote
}

func TestMergeCrippledJournal(t *testing.T) {
	now := time.Date(2026, 11, 22, 12, 0, 0, 0, time.UTC)
	reach := []Target{{Scope: ScopeServer, Server: "fs1"}}
	tape1 := Slave{Name: "tape1", Addr: "127.0.0.1:7401", Drives: 2, Reaches: reach}
	vol := func(v string) Target {
		return Target{Scope: ScopeVolume, Server: "fs1", Partition: "vicepa", Volume: v}
	}

	// The normal master: job 1 dumps v1 on its tape, then the master dies.
	normal := func() *State {
		n := NewState(scriptJournal)
		journalOf(t, n, now, StartMaster{Node: "green"}, RegisterSlave{Slave: tape1}, QueueDump{Target: vol("v1"), Level: LevelFull}, Schedule{},
			GenLabel{Slave: "tape1", Job: n.jobID(1), Name: "A1"},
			Report{Slave: "tape1", Seq: 1, ID: n.jobID(1), Dump: &Dump{Volume: "v1", Server: "fs1", Partition: "vicepa", DumpDate: 100, Tapes: []string{"athena-" + n.Prefix + "-000001"}, File: 1}})
		return n
	}
	n := normal()
	n1 := n.jobID(1)
	epoch := n.Master.Epoch

	// The crippled master adopts job 1 (its tape with the file on it), which
	// ends there after a dump on a tape it labels; its own job 1 dumps v2.
	c := NewState(JournalInfo{ID: "fedcba9876543210fedcba9876543210", Realm: "athena", Mode: "crippled"})
	cl := func(seq uint64) string { return "athena-c" + c.Prefix + "-00000" + string(rune('0'+seq)) }
	recs := journalOf(t, c, now.Add(time.Hour), StartMaster{Node: "spare", Disaster: true},
		RegisterSlave{Slave: tape1, Jobs: []SlaveJob{{ID: n1, Kind: KindDump, Target: vol("v1"), Level: LevelFull, Origin: scriptJournal.ID,
			Tapes: []HeldTape{{Label: "athena-" + n.Prefix + "-000001", Name: "A1", Files: 1}}}}},
		GenLabel{Slave: "tape1", Job: n1, Name: ""},
		Report{Slave: "tape1", Seq: 2, ID: n1, Dump: &Dump{Volume: "v1b", Server: "fs1", Partition: "vicepa", DumpDate: 200, Tapes: []string{cl(1)}, File: 1}},
		Report{Slave: "tape1", Seq: 3, ID: n1, End: StateDone},
		QueueDump{Target: vol("v2"), Level: LevelFull}, Schedule{},
		GenLabel{Slave: "tape1", Job: c.jobID(1), Name: "A7"},
		Report{Slave: "tape1", Seq: 4, ID: c.jobID(1), Dump: &Dump{Volume: "v2", Server: "fs1", Partition: "vicepa", DumpDate: 300, Tapes: []string{cl(2)}, File: 1}},
		Report{Slave: "tape1", Seq: 5, ID: c.jobID(1), End: StateDone})
	origin := c.Journal.ID
	names := map[string]string{cl(1): "B1"}

	merge(n, origin, recs, names, MergeLookup{})
	if n.Master.Epoch != epoch || n.Slaves["tape1"].LastSeq != 5 {
		t.Fatalf("after the merge: epoch %d (want %d, the crippled incarnations are not imported), tape1's last seq %d (want 5)", n.Master.Epoch, epoch, n.Slaves["tape1"].LastSeq)
	}
	if j, ok := n.Job(n1); !ok || j.State != StateDone {
		t.Fatalf("job %s adopted and ended by the crippled master: %+v", n1, j)
	}
	if j, ok := n.Job(c.jobID(1)); !ok || j.State != StateDone || j.Origin != origin {
		t.Fatalf("the crippled master's own job: %+v (known %v)", j, ok)
	}
	for label, want := range map[string]Tape{cl(1): {Name: "B1", State: TapeValid}, cl(2): {Name: "A7", State: TapeValid}} {
		if got := n.Tapes[label]; got == nil || got.Name != want.Name || got.State != want.State {
			t.Fatalf("tape %s after the merge: %+v, want name %s, %s", label, got, want.Name, want.State)
		}
	}
	if n.Volumes[VolumeKey("fs1", "vicepa", "v2")] == nil || n.Volumes[VolumeKey("fs1", "vicepa", "v1b")] == nil || n.MergedUpTo(origin) != uint64(len(recs)+1) {
		t.Fatalf("volumes %v, merged up to %d (want %d)", n.Volumes, n.MergedUpTo(origin), len(recs)+1)
	}
	merged, _ := n.Snapshot()

	// A second merge, of the same journal, writes nothing.
	if again := merge(n, origin, recs, names, MergeLookup{}); len(again) != 0 {
		t.Fatalf("a second merge wrote %d records", len(again))
	}
	// Interrupted after any record and run again: the same state as one run.
	for cut := 1; cut < len(recs); cut++ {
		m := normal()
		first := merge(m, origin, recs[:cut], names, MergeLookup{})
		rest := merge(m, origin, recs, names, MergeLookup{})
		if snap, _ := m.Snapshot(); !bytes.Equal(snap, merged) {
			t.Fatalf("merge cut after record %d (%d + %d records written) differs from an uninterrupted one", cut, len(first), len(rest))
		}
	}
	// A dump this journal holds already (a checkpoint the slave resent to
	// both masters) is not recorded twice.
	m := normal()
	merge(m, origin, recs, names, MergeLookup{KnowsDump: func(d Dump) bool { return d.Volume == "v2" }})
	if v := m.Volumes[VolumeKey("fs1", "vicepa", "v2")]; v != nil {
		t.Fatalf("a dump the catalog knows was imported again: %+v", v)
	}
}

// TestAppendMerged: a payload with the marker appended is exactly what
// EncodeEvents gives for the events and the marker, for every header size.
func TestAppendMerged(t *testing.T) {
	m := Merged{Origin: "fedcba", Index: 1 << 40}
	for _, n := range []int{0, 1, 15, 16, 17, 300} {
		evs := make([]Event, n)
		for i := range evs {
			evs[i] = JobProgress{ID: "abcde-1", Slave: "tape1", Seq: uint64(i), At: int64(i)}
		}
		p, err := EncodeEvents(evs)
		if err != nil {
			t.Fatal(err)
		}
		got, err := AppendMerged(p, m)
		if err != nil {
			t.Fatal(err)
		}
		want, _ := EncodeEvents(append(evs, m))
		if !bytes.Equal(got, want) {
			t.Fatalf("%d events: AppendMerged differs from EncodeEvents", n)
		}
	}
	if _, err := AppendMerged([]byte{0xc1}, m); err == nil {
		t.Fatal("AppendMerged accepted a payload that is not an events array")
	}
}
