package statemachine

import (
	"bytes"
	"fmt"
	"slices"

	"github.com/vmihailenco/msgpack/v5"
)

// Merging a crippled journal (abs merge): each record of the crippled
// journal is replayed into this journal as one record holding the events
// of it that still tell this journal something, and a Merged marker with
// the record's origin (crippled journal ID, index). Markers make a merge
// idempotent: a second merge of the same journal, or of a longer copy of
// it, starts after the last index merged, and a merge interrupted anywhere
// resumes where it stopped and writes what an uninterrupted one would.
//
// What is imported:
//   - jobs it queued or adopted that this journal does not know (with the
//     crippled journal as their origin); later events of a job only while
//     the job is not ended here (a job this master adopted back on the
//     slaves' return, or one of its own the crippled master adopted, ends
//     once);
//   - tape labels it wrote (with the external name the operator pairs them
//     with), and tape state changes of tapes this journal knows;
//   - dump records this journal does not hold yet (a checkpoint the slave
//     resent after moving back is recorded once);
//   - nothing of its master incarnations and slave registrations, which
//     describe the crippled master, not this one.

// Merged marks a merged record of a crippled journal.
type Merged struct {
	Origin string `msgpack:"o"` // the crippled journal's ID
	Index  uint64 `msgpack:"i"` // the crippled record's index
}

// MergeLookup answers what the state alone cannot: whether this journal
// knows a job or a dump (the catalog holds every one; the state only the
// active and recent ones).
type MergeLookup struct {
	KnowsJob  func(JobID) bool
	KnowsDump func(Dump) bool
}

// MergedUpTo is the last index of journal origin merged into s.
func (s *State) MergedUpTo(origin string) uint64 { return s.Merged[origin] }

// MergeRecord decides the events that import record index of crippled
// journal origin, whose events are evs; names gives the external name of
// crippled tape labels (a label without one keeps the name the slave gave).
// The result ends with the Merged marker; it is nil when the record was
// merged already. verbatim reports whether the events before the marker
// are evs themselves, unchanged: the record's payload can then be reused
// with the marker appended (AppendMerged) instead of encoding them again.
func MergeRecord(s *State, origin string, index uint64, evs []Event, names map[string]string, look MergeLookup) ([]Event, bool) {
	if index <= s.Merged[origin] {
		return nil, false
	}
	changed := false
	knows := func(id JobID) bool {
		if _, ok := s.Job(id); ok {
			return true
		}
		return look.KnowsJob != nil && look.KnowsJob(id)
	}
	var out []Event
	active := func(id JobID) bool {
		if _, ok := s.Jobs[id]; ok {
			return true
		}
		// queued by an event of this same record
		return slices.ContainsFunc(out, func(e Event) bool {
			switch e := e.(type) {
			case JobQueued:
				return e.Job.ID == id
			case JobAdopted:
				return e.Job.ID == id
			}
			return false
		})
	}
	tapeKnown := func(label string) bool {
		if _, ok := s.Tapes[label]; ok {
			return true
		}
		return slices.ContainsFunc(out, func(e Event) bool {
			switch e := e.(type) {
			case TapeLabeled:
				return e.Label == label
			case JobAdopted:
				return slices.ContainsFunc(e.Tapes, func(h HeldTape) bool { return h.Label == label })
			}
			return false
		})
	}
	for _, ev := range evs {
		switch e := ev.(type) {
		case JobQueued:
			if !knows(e.Job.ID) {
				if e.Job.Origin == "" {
					e.Job.Origin = origin
					changed = true
				}
				out = append(out, e)
			}
		case JobAdopted:
			if !knows(e.Job.ID) {
				var tapes []HeldTape
				for _, h := range e.Tapes {
					if !tapeKnown(h.Label) {
						if n := names[h.Label]; n != "" {
							h.Name = n
						}
						tapes = append(tapes, h)
					}
				}
				changed = changed || len(tapes) != len(e.Tapes) || !slices.Equal(tapes, e.Tapes)
				e.Tapes = tapes
				out = append(out, e)
			}
		case JobDispatched:
			if active(e.ID) {
				out = append(out, e)
			}
		case JobProgress:
			if active(e.ID) {
				out = append(out, e)
			}
		case JobAbortRequested:
			if active(e.ID) {
				out = append(out, e)
			}
		case JobEnded:
			if active(e.ID) {
				out = append(out, e)
			}
		case TapeLabeled:
			if !tapeKnown(e.Label) {
				if n := names[e.Label]; n != "" {
					e.Name = n
				}
				e.Seq = 0 // a sequence of the crippled journal's, not this one's
				changed = true
				out = append(out, e)
			}
		case TapeStateChanged:
			if tapeKnown(e.Label) {
				out = append(out, e)
			}
		case DumpRecorded:
			if look.KnowsDump == nil || !look.KnowsDump(e.Dump) {
				out = append(out, e)
			}
		case MasterStarted, SlaveRegistered, Merged:
			// the crippled master's own incarnations and registrations
		}
	}
	verbatim := !changed && len(out) == len(evs)
	return append(out, Merged{Origin: origin, Index: index}), verbatim
}

// AppendMerged returns payload (an EncodeEvents payload of N events) with
// the Merged marker m appended as event N+1: the bytes EncodeEvents would
// give for the N events and m.
func AppendMerged(payload []byte, m Merged) ([]byte, error) {
	dec := msgpack.NewDecoder(bytes.NewReader(payload))
	n, err := dec.DecodeArrayLen()
	if err != nil || n < 0 || n >= maxEvents {
		return nil, fmt.Errorf("%w: not an events payload", ErrBadEvents)
	}
	body := payload[arrayHeaderLen(n):]
	var buf bytes.Buffer
	buf.Grow(len(payload) + 64)
	enc := msgpack.NewEncoder(&buf)
	enc.UseCompactInts(true)
	if err := enc.EncodeArrayLen(n + 1); err != nil {
		return nil, err
	}
	buf.Write(body)
	if err := enc.EncodeArrayLen(2); err != nil {
		return nil, err
	}
	if err := enc.EncodeUint(uint64(m.Type())); err != nil {
		return nil, err
	}
	if err := enc.Encode(m); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// arrayHeaderLen is the size of msgpack's header of an n-element array.
func arrayHeaderLen(n int) int {
	switch {
	case n < 16:
		return 1
	case n < 1<<16:
		return 3
	}
	return 5
}

// SameDump reports whether two dump records name the same tape file.
func SameDump(a, b Dump) bool {
	return a.Server == b.Server && a.Partition == b.Partition && a.Volume == b.Volume && a.DumpDate == b.DumpDate &&
		a.File == b.File && slices.Equal(a.Tapes, b.Tapes)
}
