package statemachine

import (
	"bytes"
	"errors"
	"reflect"
	"testing"
	"time"
)

// allEvents has one event of every type with every field set, so a field
// that does not survive the codec fails the test.
func allEvents() []Event {
	tgt := Target{Scope: ScopeVolume, Server: "fs1", Partition: "vicepa", Volume: "user.alice"}
	return []Event{
		MasterStarted{Master: Master{Epoch: 3, Node: "green-acres", Addr: "127.0.0.1:7400", StartedAt: 11}},
		JobQueued{Job: Job{ID: "abcde-1", Kind: KindDump, Target: tgt, Level: LevelFull, State: StateQueued, By: "alice", Slave: "tape1",
			Why: "w", AbortRequested: true, QueuedAt: 1, UpdatedAt: 2, EndedAt: 3, QueuedIndex: 4, Volumes: 5, Bytes: 6}},
		JobAbortRequested{ID: "abcde-1", By: "bob", At: 7},
		JobEnded{ID: "abcde-1", State: StateFailed, Why: "disk full", Slave: "tape1", Seq: 9, At: 8},
		JobDispatched{ID: "abcde-1", Slave: "tape1", At: 9},
		JobProgress{ID: "abcde-1", Slave: "tape1", Seq: 4, Volumes: 2, Bytes: 1 << 40, Note: "waiting", At: 10},
		SlaveRegistered{Slave: Slave{Name: "tape1", Addr: "127.0.0.1:7401", Drives: 2, Reaches: []Target{tgt}, RegisteredAt: 12, LastSeq: 13}},
		TapeLabeled{Label: "abs-1", Name: "A00001", Job: "abcde-1", Slave: "tape1", Seq: 7, At: 14},
		TapeStateChanged{Label: "abs-1", State: TapeValid, At: 15},
		DumpRecorded{Dump: Dump{Volume: "user.alice", Server: "fs1", Partition: "vicepa", DumpDate: 16, IncrementDate: 17,
			Tapes: []string{"abs-1", "abs-2"}, File: 3, Bytes: 18, SHA256: "ff", Job: "abcde-1"}, Slave: "tape1", Seq: 19, At: 20},
		JobAdopted{Job: Job{ID: "fghij-2", Kind: KindRestore, Target: tgt, State: StateRunning, By: "adopted", Slave: "tape1", QueuedAt: 21,
			UpdatedAt: 22, Volumes: 1, Bytes: 23, Restore: &RestoreSpec{To: "/r", AsOf: 24, Slave: "tape1", Plan: []Dump{{Volume: "user.alice", Tapes: []string{"abs-1"}}}},
			Origin: "athena-crippled-x"}, Tapes: []HeldTape{{Label: "abs-3", Name: "A00003", Files: 2}}},
		Merged{Origin: "fedcba", Index: 25},
	}
}

func TestCodecRoundTrip(t *testing.T) {
	evs := allEvents()
	seen := map[EventType]bool{}
	for _, e := range evs {
		seen[e.Type()] = true
	}
	for typ := EventType(1); ; typ++ {
		if _, ok := newEvent(typ); !ok {
			break
		}
		if !seen[typ] {
			t.Errorf("event type %d has no example in allEvents", typ)
		}
	}
	b, err := EncodeEvents(evs)
	if err != nil {
		t.Fatal(err)
	}
	got, err := DecodeEvents(b)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, evs) {
		t.Fatalf("round trip differs:\n got %+v\nwant %+v", got, evs)
	}
	b2, _ := EncodeEvents(got)
	if !bytes.Equal(b, b2) {
		t.Fatal("encoding is not deterministic")
	}
}

func TestDecodeRefuses(t *testing.T) {
	good, _ := EncodeEvents([]Event{JobEnded{ID: "x-1", State: StateDone, At: 1}})
	cases := map[string][]byte{
		"empty":          {},
		"not an array":   {0xa1, 'x'},
		"unknown type":   {0x91, 0x92, 0xcd, 0x03, 0xe7, 0x80},
		"not a pair":     {0x91, 0x93, 0x01, 0x80, 0x80},
		"trailing bytes": append(append([]byte{}, good...), 0xc0),
		"truncated":      good[:len(good)-2],
		"unknown field":  {0x91, 0x92, 0x04, 0x81, 0xa3, 'z', 'z', 'z', 0x01},
		"huge count":     {0xdd, 0xff, 0xff, 0xff, 0xff},
	}
	for name, b := range cases {
		if _, err := DecodeEvents(b); !errors.Is(err, ErrBadEvents) {
			t.Errorf("%s: got %v, want ErrBadEvents", name, err)
		}
	}
}

func FuzzDecodeEvents(f *testing.F) {
	b, _ := EncodeEvents(allEvents())
	f.Add(b)
	f.Add([]byte{0x90})
	f.Fuzz(func(t *testing.T, data []byte) {
		evs, err := DecodeEvents(data)
		if err != nil {
			return
		}
		// Whatever decodes must re-encode and decode to the same events.
		b, err := EncodeEvents(evs)
		if err != nil {
			t.Fatal(err)
		}
		again, err := DecodeEvents(b)
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(evs, again) {
			t.Fatalf("unstable: %+v vs %+v", evs, again)
		}
	})
}

// TestBoundedMemory queues and ends many jobs: the state keeps only the
// RecentJobs ring, while the records (for the catalog) carry every job.
func TestBoundedMemory(t *testing.T) {
	s := NewState(scriptJournal)
	now := time.Unix(1_700_000_000, 0)
	var records int
	for i := 0; i < 5000; i++ {
		evs, err := Decide(s, QueueDump{Target: Target{Scope: ScopeServer, Server: "fs1"}, By: "t"}, now)
		if err != nil {
			t.Fatal(err)
		}
		records += len(s.Apply(s.Applied+1, evs).Records)
		id := evs[0].(JobQueued).Job.ID
		evs, err = Decide(s, AbortJob{ID: id}, now)
		if err != nil {
			t.Fatal(err)
		}
		records += len(s.Apply(s.Applied+1, evs).Records)
	}
	if len(s.Jobs) != 0 || len(s.Recent) < RecentJobs || len(s.Recent) >= 2*RecentJobs {
		t.Fatalf("state holds %d active and %d recent jobs; want 0 and [%d, %d)", len(s.Jobs), len(s.Recent), RecentJobs, 2*RecentJobs)
	}
	if records != 10000 {
		t.Fatalf("%d records emitted, want 10000", records)
	}
	if c := s.JobCounts(); c[StateAborted] != 5000 {
		t.Fatalf("aborted count %d", c[StateAborted])
	}
	snap, _ := s.Snapshot()
	if len(snap) > 64<<10 {
		t.Fatalf("snapshot is %d bytes after 5000 ended jobs: not bounded", len(snap))
	}
}
