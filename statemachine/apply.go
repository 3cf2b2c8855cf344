package statemachine

import (
	"fmt"
)

// Effect is something the master must do outside itself once the events that
// caused it are durable. Effects are idempotent: Pending re-derives the ones
// still owed after a restart, and the receiver (a slave) tolerates repeats.
type Effect interface {
	effect()
}

// DispatchJob tells a slave to run a job (Backup or Restore).
type DispatchJob struct {
	Job   Job
	Slave string
}

// SendAbort tells a slave to abort a job at its next opportunity.
type SendAbort struct {
	Job   JobID
	Slave string
}

func (DispatchJob) effect() {}
func (SendAbort) effect()   {}

// Record is a value the catalog stores: a Job, Dump, Tape, Slave, Volume or
// Master. Apply lists every record that its events changed, in full.
type Record interface {
	record()
}

// DumpRecord is a dump as the catalog keeps it: with the journal index that
// recorded it, so keys are unique even for two dumps in the same nanosecond.
type DumpRecord struct {
	Dump
	Index uint64 `msgpack:"i"`
}

func (Job) record()        {}
func (DumpRecord) record() {}
func (Tape) record()       {}
func (Slave) record()      {}
func (Volume) record()     {}
func (Master) record()     {}

// Output is what applying one record's events produced.
type Output struct {
	Effects []Effect
	Records []Record
}

// Apply applies the events of the journal record at index to the state.
// Indices must increase (a replay that applies an index twice is a bug and
// panics). Events are facts: Apply never refuses one.
func (s *State) Apply(index uint64, evs []Event) Output {
	if index <= s.Applied {
		panic(fmt.Sprintf("statemachine: apply index %d after %d", index, s.Applied))
	}
	s.Applied = index
	var out Output
	for _, ev := range evs {
		s.apply(index, ev, &out)
	}
	return out
}

func (s *State) apply(index uint64, ev Event, out *Output) {
	switch e := ev.(type) {
	case MasterStarted:
		if e.Master.Epoch > s.Master.Epoch {
			s.Master = e.Master
		}
		out.Records = append(out.Records, e.Master)

	case JobQueued:
		if seq := s.jobSeq(e.Job.ID); seq >= s.NextJob {
			s.NextJob = seq + 1
		}
		s.schedulable = true
		out.Records = append(out.Records, *s.addJob(e.Job, index))

	case JobAbortRequested:
		j, ok := s.Jobs[e.ID]
		if !ok {
			return
		}
		j.AbortRequested = true
		j.UpdatedAt = e.At
		out.Records = append(out.Records, *j)
		if j.Slave != "" {
			out.Effects = append(out.Effects, SendAbort{Job: j.ID, Slave: j.Slave})
		}

	case JobDispatched:
		j, ok := s.Jobs[e.ID]
		if !ok {
			return
		}
		s.setState(j, StateDispatched)
		j.Slave = e.Slave
		j.Why = ""
		j.UpdatedAt = e.At
		out.Records = append(out.Records, *j)
		out.Effects = append(out.Effects, DispatchJob{Job: *j, Slave: e.Slave})

	case JobProgress:
		s.sawSeq(e.Slave, e.Seq)
		j, ok := s.Jobs[e.ID]
		if !ok {
			return
		}
		s.setState(j, StateRunning)
		j.Volumes = e.Volumes
		j.Bytes = e.Bytes
		j.Why = e.Note
		j.UpdatedAt = e.At
		out.Records = append(out.Records, *j)

	case JobEnded:
		s.sawSeq(e.Slave, e.Seq)
		j, ok := s.Jobs[e.ID]
		if !ok {
			return
		}
		s.setState(j, e.State)
		j.Why = e.Why
		j.UpdatedAt = e.At
		j.EndedAt = e.At
		delete(s.Jobs, e.ID)
		s.schedulable = true
		s.Ended[e.State]++
		s.Recent = append(s.Recent, *j)
		if len(s.Recent) >= 2*RecentJobs {
			// Trim in one move per RecentJobs endings, not one per ending.
			s.Recent = append(s.Recent[:0], s.Recent[len(s.Recent)-RecentJobs:]...)
		}
		out.Records = append(out.Records, *j)

	case SlaveRegistered:
		sl := e.Slave
		if old, ok := s.Slaves[sl.Name]; ok && old.LastSeq > sl.LastSeq {
			sl.LastSeq = old.LastSeq
		}
		s.Slaves[sl.Name] = &sl
		s.schedulable = true
		out.Records = append(out.Records, sl)

	case TapeLabeled:
		if e.Seq >= s.NextTape {
			s.NextTape = e.Seq + 1
		}
		t := &Tape{Label: e.Label, Name: e.Name, State: TapeReserved, Job: e.Job, Slave: e.Slave, UpdatedAt: e.At}
		s.setTape(t)
		out.Records = append(out.Records, *t)

	case TapeStateChanged:
		t := &Tape{Label: e.Label}
		if old, ok := s.Tapes[e.Label]; ok {
			*t = *old
		}
		t.State = e.State
		if e.State != TapeReserved {
			t.Job = ""
		}
		t.UpdatedAt = e.At
		s.setTape(t)
		out.Records = append(out.Records, *t)

	case DumpRecorded:
		d := e.Dump
		s.sawSeq(e.Slave, e.Seq)
		key := VolumeKey(d.Server, d.Partition, d.Volume)
		v, ok := s.Volumes[key]
		if !ok {
			v = &Volume{Server: d.Server, Partition: d.Partition, Name: d.Volume}
			s.Volumes[key] = v
		}
		if d.DumpDate >= v.LastDump {
			v.LastDump = d.DumpDate
			v.LastDumpJob = d.Job
			if len(d.Tapes) > 0 {
				v.LastDumpTape = d.Tapes[0]
			}
		}
		if d.IncrementDate == 0 && d.DumpDate > v.LastFull {
			v.LastFull = d.DumpDate
			v.LastFullBytes = d.Bytes
		}
		if d.IncrementDate != 0 && d.DumpDate >= v.LastDump {
			v.LastIncrBytes = d.Bytes
		}
		v.Dumps++
		for _, label := range d.Tapes {
			if t, ok := s.Tapes[label]; ok {
				t.Files++
				t.UpdatedAt = e.At
				out.Records = append(out.Records, *t)
			}
		}
		out.Records = append(out.Records, DumpRecord{Dump: d, Index: index}, *v)

	case JobAdopted:
		j := s.addJob(e.Job, index)
		out.Records = append(out.Records, *j)
		for _, h := range e.Tapes {
			t := &Tape{Label: h.Label, Name: h.Name, State: TapeReserved, Job: j.ID, Slave: j.Slave, Files: h.Files, UpdatedAt: j.UpdatedAt}
			s.setTape(t)
			out.Records = append(out.Records, *t)
		}

	case Merged:
		if e.Index > s.Merged[e.Origin] {
			s.Merged[e.Origin] = e.Index
		}

	default:
		panic(fmt.Sprintf("statemachine: apply: unknown event %T", ev))
	}
}

// addJob adds a job queued or adopted by the record at index.
func (s *State) addJob(j Job, index uint64) *Job {
	j.QueuedIndex = index
	if old, ok := s.Jobs[j.ID]; ok { // a repeated ID replaces the job
		s.active[old.State]--
	}
	s.Queued++
	st := j.State
	j.State = 0
	s.Jobs[j.ID] = &j
	s.setState(&j, st)
	return &j
}

// sawSeq records the highest report sequence number applied for a slave.
func (s *State) sawSeq(slave string, seq uint64) {
	if sl, ok := s.Slaves[slave]; ok && seq > sl.LastSeq {
		sl.LastSeq = seq
	}
}

// Pending re-derives the effects still owed in this state: after a restart
// the master runs them again (they are idempotent). Dispatched jobs are
// re-sent to their slave; aborts requested are re-sent.
func Pending(s *State) []Effect {
	var out []Effect
	for _, j := range s.ActiveJobs() {
		switch {
		case j.AbortRequested && j.Slave != "":
			out = append(out, SendAbort{Job: j.ID, Slave: j.Slave})
		case j.State == StateDispatched:
			out = append(out, DispatchJob{Job: j, Slave: j.Slave})
		}
	}
	return out
}
