package statemachine

import (
	"bytes"
	"fmt"
	"testing"
	"time"
)

// commandsFrom turns fuzz bytes into a command sequence that exercises every
// command, valid and invalid, against a small universe of names.
func commandsFrom(data []byte) []Command {
	names := []string{"fs1", "fs2", "vicepa", "vicepb", "user.alice", "", "bad/x"}
	slaves := []string{"tape1", "tape2", "ghost"}
	var cmds []Command
	for len(data) >= 4 {
		op, a, b, c := data[0], data[1], data[2], data[3]
		data = data[4:]
		n := func(x byte) string { return names[int(x)%len(names)] }
		id := JobID(fmt.Sprintf("%s-%d", JobPrefix(scriptJournal.ID), int(b)%12))
		switch op % 9 {
		case 0:
			cmds = append(cmds, QueueDump{Target: Target{Scope: Scope(a%4 + 1), Server: n(a), Partition: n(b), Volume: n(c)}, Level: Level(c % 3), By: "fuzz"})
		case 1:
			cmds = append(cmds, AbortJob{ID: id, By: "fuzz"})
		case 2:
			reg := RegisterSlave{Slave: Slave{Name: slaves[int(a)%3], Addr: "127.0.0.1:1", Reaches: []Target{{Scope: ScopeServer, Server: n(b)}, {Scope: ScopePartition, Server: n(c), Partition: n(a)}}}}
			if c%2 == 1 { // with a job another master queued, or one of ours
				foreign := JobID(fmt.Sprintf("zzzzz-%d", int(b)%12))
				if c%4 == 3 {
					foreign = id
				}
				reg.Jobs = append(reg.Jobs, SlaveJob{ID: foreign, Kind: KindDump, Target: Target{Scope: ScopeServer, Server: n(a)}, Origin: "other",
					Tapes: []HeldTape{{Label: fmt.Sprintf("athena-zzzzz-%06d", int(c)%5), Files: int(a % 2)}}})
			}
			cmds = append(cmds, reg)
		case 3:
			cmds = append(cmds, Schedule{})
		case 4:
			var end JobState
			if c%3 == 0 {
				end = JobState(c%6 + 1)
			}
			var d *Dump
			if c%2 == 1 {
				d = &Dump{Server: n(a), Partition: n(b), Volume: n(c), DumpDate: int64(a) * 1000, IncrementDate: int64(c%2) * 500, Tapes: []string{"L" + n(b)}, Bytes: int64(c)}
			}
			cmds = append(cmds, Report{Slave: slaves[int(a)%3], Seq: uint64(c), ID: id, Volumes: int(a), Bytes: int64(b), Dump: d, End: end})
		case 5:
			cmds = append(cmds, StartMaster{Node: n(a), Addr: "127.0.0.1:7400"})
		case 6:
			cmds = append(cmds, Report{Slave: slaves[int(a)%3], ID: id, End: StateDone})
		case 7:
			cmds = append(cmds, GenLabel{Slave: slaves[int(a)%3], Job: id, Name: fmt.Sprintf("A%05d", c%4)})
		case 8:
			label := fmt.Sprintf("athena-%s-%06d", JobPrefix(scriptJournal.ID), int(c)%5)
			cmds = append(cmds, Report{Slave: slaves[int(a)%3], Seq: uint64(c), ID: id,
				Dump: &Dump{Server: n(a), Partition: n(b), Volume: "v", DumpDate: int64(c), Tapes: []string{label}}, End: JobState(b%2) * StateDone})
		}
	}
	return cmds
}

// run decides and applies cmds, returning the journal (encoded payloads).
func run(t *testing.T, s *State, cmds []Command) [][]byte {
	var journal [][]byte
	now := time.Unix(1_700_000_000, 0)
	for _, cmd := range cmds {
		now = now.Add(time.Second)
		evs, err := Decide(s, cmd, now)
		if err != nil || len(evs) == 0 {
			continue
		}
		p, err := EncodeEvents(evs)
		if err != nil {
			t.Fatal(err)
		}
		journal = append(journal, p)
		s.Apply(s.Applied+1, evs)
	}
	return journal
}

func replay(t *testing.T, journal [][]byte) *State {
	s := NewState(scriptJournal)
	for _, p := range journal {
		evs, err := DecodeEvents(p)
		if err != nil {
			t.Fatal(err)
		}
		s.Apply(s.Applied+1, evs)
	}
	return s
}

func snap(t *testing.T, s *State) []byte {
	b, err := s.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// FuzzReplay: the same journal always yields the identical state (twice,
// and equal to the state that decided it), and a snapshot taken midway and
// restored continues to the same state.
func FuzzReplay(f *testing.F) {
	f.Add([]byte("\x05\x00\x00\x00\x00\x00\x01\x02\x02\x00\x00\x00\x03\x00\x00\x00\x04\x00\x01\x03\x01\x00\x01\x00"))
	f.Add(bytes.Repeat([]byte{0, 1, 2, 3, 2, 0, 0, 0, 3, 1, 1, 1, 4, 0, 1, 5, 1, 0, 2, 0}, 8))
	f.Fuzz(func(t *testing.T, data []byte) {
		cmds := commandsFrom(data)
		live := NewState(scriptJournal)
		journal := run(t, live, cmds)
		a, b := replay(t, journal), replay(t, journal)
		if !bytes.Equal(snap(t, a), snap(t, b)) {
			t.Fatal("two replays of one journal differ")
		}
		if !bytes.Equal(snap(t, a), snap(t, live)) {
			t.Fatal("replay differs from the live state")
		}
		// The incremental job counts equal a count of the jobs.
		counted := map[JobState]uint64{}
		for _, st := range JobStates {
			counted[st] = live.Ended[st]
		}
		for _, j := range live.Jobs {
			counted[j.State]++
		}
		for st, n := range live.JobCounts() {
			if counted[st] != n {
				t.Fatalf("JobCounts()[%s] = %d, counted %d", st, n, counted[st])
			}
		}
		half := replay(t, journal[:len(journal)/2])
		restored, err := RestoreSnapshot(snap(t, half))
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(snap(t, restored), snap(t, half)) {
			t.Fatal("snapshot does not round-trip")
		}
		for _, p := range journal[len(journal)/2:] {
			evs, _ := DecodeEvents(p)
			restored.Apply(restored.Applied+1, evs)
		}
		if !bytes.Equal(snap(t, restored), snap(t, a)) {
			t.Fatal("snapshot + tail differs from full replay")
		}
	})
}
