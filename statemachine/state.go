package statemachine

import (
	"bytes"
	"cmp"
	"fmt"
	"hash/fnv"
	"maps"
	"slices"
	"strconv"
	"strings"

	"github.com/vmihailenco/msgpack/v5"
)

// RecentJobs is how many ended jobs the state remembers at least (for `abs
// jobs --all` when there is no catalog, and for "already ended" messages); it
// keeps between RecentJobs and 2*RecentJobs of them. The catalog keeps every
// job.
const RecentJobs = 256

// State is what decisions need. It is changed only by Apply. Its zero value
// is not usable: start from NewState or RestoreSnapshot.
type State struct {
	Journal  JournalInfo         `msgpack:"journal"`
	Prefix   string              `msgpack:"prefix"`  // job ID prefix of this journal
	Applied  uint64              `msgpack:"applied"` // last journal index applied
	Master   Master              `msgpack:"master"`  // current incarnation
	NextJob  uint64              `msgpack:"next_job"`
	Jobs     map[JobID]*Job      `msgpack:"jobs"`   // jobs that have not ended
	Recent   []Job               `msgpack:"recent"` // ended jobs, oldest first, at most RecentJobs
	Slaves   map[string]*Slave   `msgpack:"slaves"`
	Tapes    map[string]*Tape    `msgpack:"tapes"`
	Volumes  map[string]*Volume  `msgpack:"volumes"`   // by VolumeKey
	Ended    map[JobState]uint64 `msgpack:"ended"`     // count of jobs ended, by final state
	Queued   uint64              `msgpack:"queued"`    // count of jobs ever queued
	NextTape uint64              `msgpack:"next_tape"` // sequence of the next tape label
	Merged   map[string]uint64   `msgpack:"merged"`    // last index merged of each crippled journal

	// active counts the jobs in Jobs by state. It is derived (rebuilt by
	// RestoreSnapshot), kept so that metrics need not walk every job.
	active [StateAborted + 1]uint64
	// schedulable is set by Apply when something happened that may let a
	// queued job be dispatched (a job queued or ended, a slave registered),
	// and cleared by NeedsSchedule. Derived, not part of a snapshot.
	schedulable bool
	// Tape indices, derived (setTape keeps them, RestoreSnapshot rebuilds
	// them), so that labeling and a job's end cost no walk of every tape:
	// the label a cartridge name was last given, and the labels each job
	// has reserved.
	byName   map[string]string
	reserved map[JobID]map[string]bool
}

// setTape stores t (a new value, not the pointer already stored) and keeps
// the tape indices.
func (s *State) setTape(t *Tape) {
	if old, ok := s.Tapes[t.Label]; ok && old.State == TapeReserved {
		delete(s.reserved[old.Job], t.Label)
		if len(s.reserved[old.Job]) == 0 {
			delete(s.reserved, old.Job)
		}
	}
	s.Tapes[t.Label] = t
	if t.State == TapeReserved {
		if s.reserved[t.Job] == nil {
			s.reserved[t.Job] = map[string]bool{}
		}
		s.reserved[t.Job][t.Label] = true
	}
	if t.Name != "" {
		s.byName[t.Name] = t.Label
	}
}

// setState moves a job to state st, keeping the counts.
func (s *State) setState(j *Job, st JobState) {
	if _, ok := s.Jobs[j.ID]; ok && j.State != 0 {
		s.active[j.State]--
	}
	j.State = st
	if !st.Ended() {
		s.active[st]++
	}
}

// NeedsSchedule reports whether a Schedule decision could dispatch something
// since it was last asked, and resets the flag. The commit loop asks it so
// that it decides Schedule only when it can matter.
func (s *State) NeedsSchedule() bool {
	n := s.schedulable && len(s.Slaves) > 0
	s.schedulable = false
	return n
}

// NewState returns the state of a journal that holds only its identity record.
func NewState(j JournalInfo) *State {
	return &State{
		Journal:  j,
		Prefix:   JobPrefix(j.ID),
		Applied:  1, // index 1 is the journal's identity record
		NextJob:  1,
		NextTape: 1,
		Jobs:     map[JobID]*Job{},
		Slaves:   map[string]*Slave{},
		Tapes:    map[string]*Tape{},
		Merged:   map[string]uint64{},
		Volumes:  map[string]*Volume{},
		Ended:    map[JobState]uint64{},
		byName:   map[string]string{},
		reserved: map[JobID]map[string]bool{},
	}
}

// crockford is Crockford's base32 alphabet in lower case: no i, l, o, u, so
// a job ID read aloud or copied from paper is unambiguous.
const crockford = "0123456789abcdefghjkmnpqrstvwxyz"

// JobPrefix derives the 5-character job ID prefix of a journal from its ID:
// 25 bits of a hash of the ID, in Crockford base32.
func JobPrefix(journalID string) string {
	h := fnv.New64a()
	h.Write([]byte(journalID))
	v := h.Sum64()
	var b [5]byte
	for i := range b {
		b[i] = crockford[v&31]
		v >>= 5
	}
	return string(b[:])
}

func (s *State) jobID(seq uint64) JobID {
	return JobID(s.Prefix + "-" + strconv.FormatUint(seq, 10))
}

// jobSeq returns the sequence number of an ID of this journal, or 0.
func (s *State) jobSeq(id JobID) uint64 {
	rest, ok := strings.CutPrefix(string(id), s.Prefix+"-")
	if !ok {
		return 0
	}
	n, err := strconv.ParseUint(rest, 10, 64)
	if err != nil {
		return 0
	}
	return n
}

// Job finds a job that has not ended, or one of the RecentJobs ended last.
func (s *State) Job(id JobID) (Job, bool) {
	if j, ok := s.Jobs[id]; ok {
		return *j, true
	}
	for i := len(s.Recent) - 1; i >= 0; i-- {
		if s.Recent[i].ID == id {
			return s.Recent[i], true
		}
	}
	return Job{}, false
}

// ActiveJobs returns the jobs that have not ended, in queueing order.
func (s *State) ActiveJobs() []Job {
	out := make([]Job, 0, len(s.Jobs))
	for _, j := range s.Jobs {
		out = append(out, *j)
	}
	slices.SortFunc(out, func(a, b Job) int { return cmpUint(a.QueuedIndex, b.QueuedIndex) })
	return out
}

// JobCounts returns how many jobs are in each state: live counts for the
// states of jobs not ended, totals for the ended ones.
func (s *State) JobCounts() map[JobState]uint64 {
	c := map[JobState]uint64{}
	for _, st := range JobStates {
		c[st] = s.Ended[st] + s.active[st]
	}
	return c
}

func cmpUint(a, b uint64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// snapshot is the encoded form of State: every map as a slice sorted by
// key, because msgpack encodes Go maps in iteration order.
type snapshot struct {
	Journal  JournalInfo `msgpack:"journal"`
	Prefix   string      `msgpack:"prefix"`
	Applied  uint64      `msgpack:"applied"`
	Master   Master      `msgpack:"master"`
	NextJob  uint64      `msgpack:"next_job"`
	Jobs     []Job       `msgpack:"jobs"`
	Recent   []Job       `msgpack:"recent"`
	Slaves   []Slave     `msgpack:"slaves"`
	Tapes    []Tape      `msgpack:"tapes"`
	Volumes  []Volume    `msgpack:"volumes"`
	Ended    []uint64    `msgpack:"ended"` // indexed by JobState
	Queued   uint64      `msgpack:"queued"`
	NextTape uint64      `msgpack:"next_tape"`
	Merged   []Merged    `msgpack:"merged,omitempty"` // by origin
}

func sortedValues[K cmp.Ordered, V any](m map[K]*V) []V {
	keys := slices.Sorted(maps.Keys(m))
	out := make([]V, len(keys))
	for i, k := range keys {
		out[i] = *m[k]
	}
	return out
}

// Snapshot encodes the state deterministically: two states are equal
// exactly when their snapshots are equal bytes.
func (s *State) Snapshot() ([]byte, error) {
	snap := snapshot{
		Journal: s.Journal, Prefix: s.Prefix, Applied: s.Applied, Master: s.Master,
		NextJob: s.NextJob, Recent: s.Recent, Queued: s.Queued, NextTape: s.NextTape,
		Jobs:    sortedValues(s.Jobs),
		Slaves:  sortedValues(s.Slaves),
		Tapes:   sortedValues(s.Tapes),
		Volumes: sortedValues(s.Volumes),
	}
	for _, o := range slices.Sorted(maps.Keys(s.Merged)) {
		snap.Merged = append(snap.Merged, Merged{Origin: o, Index: s.Merged[o]})
	}
	for st, n := range s.Ended {
		for int(st) >= len(snap.Ended) {
			snap.Ended = append(snap.Ended, 0)
		}
		snap.Ended[st] = n
	}
	var buf bytes.Buffer
	enc := msgpack.NewEncoder(&buf)
	enc.UseCompactInts(true)
	if err := enc.Encode(&snap); err != nil {
		return nil, fmt.Errorf("statemachine: snapshot: %w", err)
	}
	return buf.Bytes(), nil
}

// RestoreSnapshot decodes a Snapshot.
func RestoreSnapshot(b []byte) (*State, error) {
	var snap snapshot
	dec := msgpack.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields(true)
	if err := dec.Decode(&snap); err != nil {
		return nil, fmt.Errorf("statemachine: restore snapshot: %w", err)
	}
	if snap.Prefix != JobPrefix(snap.Journal.ID) {
		return nil, fmt.Errorf("statemachine: restore snapshot: job prefix %q does not belong to journal %s", snap.Prefix, snap.Journal.ID)
	}
	s := NewState(snap.Journal)
	s.Applied, s.Master, s.NextJob, s.Recent, s.Queued, s.NextTape = snap.Applied, snap.Master, snap.NextJob, snap.Recent, snap.Queued, snap.NextTape
	for i := range snap.Jobs {
		j := &snap.Jobs[i]
		s.Jobs[j.ID] = j
		s.active[j.State]++
	}
	s.schedulable = true
	for i := range snap.Slaves {
		s.Slaves[snap.Slaves[i].Name] = &snap.Slaves[i]
	}
	for i := range snap.Tapes {
		s.setTape(&snap.Tapes[i])
	}
	for i := range snap.Volumes {
		v := &snap.Volumes[i]
		s.Volumes[VolumeKey(v.Server, v.Partition, v.Name)] = v
	}
	for _, m := range snap.Merged {
		s.Merged[m.Origin] = m.Index
	}
	for st, n := range snap.Ended {
		if n != 0 {
			s.Ended[JobState(st)] = n
		}
	}
	return s, nil
}

// Estimate is what a job will have done when it ends, for the time left of
// a running one: a restore's from its plan (exact); a dump's from the
// previous dumps of the volumes under its target (the last full dump's size
// for a full dump or a volume without one, else the last incremental's).
// Zero means unknown.
func (s *State) Estimate(j Job) (volumes int, bytes int64) {
	if j.Restore != nil {
		for _, d := range j.Restore.Plan {
			bytes += d.Bytes
		}
		return 1, bytes
	}
	for _, v := range s.Volumes {
		if !j.Target.Covers(v.Server, v.Partition, v.Name) {
			continue
		}
		volumes++
		if j.Level == LevelFull || v.LastFull == 0 {
			bytes += v.LastFullBytes
		} else {
			bytes += v.LastIncrBytes
		}
	}
	return volumes, bytes
}
