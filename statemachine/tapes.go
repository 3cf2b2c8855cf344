package statemachine

import (
	"fmt"
	"maps"
	"slices"
)

// The tape label protocol (ABS master and crippled-mode specifications):
//
//  1. A slave with a job to write offers a cartridge: ValidateTape with the
//     label it read from the medium ("" for a blank one). The master answers
//     from its view of the tape (TapeVerdict); only a blank tape, or one the
//     same job already reserved, may be written.
//  2. For a blank tape the slave asks GenLabel: the master decides a new
//     internal label (journaled, TapeLabeled: the tape is RESERVED by the
//     job) and the slave writes it on the medium.
//  3. The slave confirms with ValidateLabel before writing dumps.
//  4. Each volume written is a DumpCheckpoint (a Report with a Dump), and is
//     refused unless every tape it names is reserved by that job.
//  5. When the job ends, its reserved tapes become VALID if they hold a dump
//     (never to be overwritten) or EXPIRED (labeled, empty, reusable) if not.
//
// Labels are "<realm>-<journal prefix>-<6-digit sequence>", and
// "<realm>-c<journal prefix>-<sequence>" in a crippled journal: every
// journal has its own prefix, and crippled labels are one character longer,
// so they never collide with the normal master's. A label the master does not know — another realm's,
// another journal's — is UNKNOWN MEDIA: not the master's to overwrite.

// TapeVerdict is the master's answer to ValidateTape.
type TapeVerdict uint8

const (
	TapeBlank           TapeVerdict = 1 // no label: ask GenLabel, then write
	TapeMine            TapeVerdict = 2 // reserved by this very job: append to it
	TapeHoldsValidDumps TapeVerdict = 3 // VALID: never overwrite
	TapeReservedByOther TapeVerdict = 4 // another job is writing it
	TapeUnknownMedia    TapeVerdict = 5 // a label this master does not know: ask for another tape
	TapeExpiredVerdict  TapeVerdict = 6 // labeled, holds nothing needed: reusable only after an explicit erase
)

// Writable reports whether the slave may write to the offered tape.
func (v TapeVerdict) Writable() bool { return v == TapeBlank || v == TapeMine }

func (v TapeVerdict) String() string {
	switch v {
	case TapeBlank:
		return "blank"
	case TapeMine:
		return "reserved by this job"
	case TapeHoldsValidDumps:
		return "holds valid dumps"
	case TapeReservedByOther:
		return "reserved by another job"
	case TapeUnknownMedia:
		return "unknown media"
	case TapeExpiredVerdict:
		return "expired"
	}
	return fmt.Sprintf("verdict(%d)", uint8(v))
}

// ValidateTape is the master's view of a cartridge a slave offers for job:
// a query (it decides nothing, so it writes nothing).
func (s *State) ValidateTape(job JobID, label string) (TapeVerdict, string) {
	if label == "" {
		return TapeBlank, "blank tape: ask for a label"
	}
	t, ok := s.Tapes[label]
	if !ok {
		return TapeUnknownMedia, fmt.Sprintf("label %s is not one this master wrote: unknown media, use another tape", label)
	}
	switch t.State {
	case TapeValid:
		return TapeHoldsValidDumps, fmt.Sprintf("tape %s holds valid dumps: it is never overwritten", label)
	case TapeReserved:
		if t.Job == job {
			return TapeMine, fmt.Sprintf("tape %s is reserved by job %s: append", label, job)
		}
		return TapeReservedByOther, fmt.Sprintf("tape %s is reserved by job %s", label, t.Job)
	case TapeExpired:
		return TapeExpiredVerdict, fmt.Sprintf("tape %s is expired: erase it explicitly before reuse", label)
	}
	return TapeUnknownMedia, fmt.Sprintf("tape %s is in state %s", label, t.State)
}

// GenLabel asks for a new internal label for a blank tape that a slave will
// write for job; Name is the cartridge's external name, if the slave knows it.
type GenLabel struct {
	Slave string
	Job   JobID
	Name  string
}

// ValidateLabel is the slave's confirmation, before writing dumps, that the
// label it wrote is the one reserved for its job.
type ValidateLabel struct {
	Slave string
	Job   JobID
	Label string
}

func (GenLabel) command()      {}
func (ValidateLabel) command() {}

// tapeLabel is the label of the tape with sequence seq. A crippled
// journal's labels have a "c" before the prefix: one character longer than
// every normal label, so the two can never collide.
func (s *State) tapeLabel(seq uint64) string {
	if s.Journal.Crippled() {
		return fmt.Sprintf("%s-c%s-%06d", s.Journal.Realm, s.Prefix, seq)
	}
	return fmt.Sprintf("%s-%s-%06d", s.Journal.Realm, s.Prefix, seq)
}

// writingJob returns the job a slave may write tapes for.
func writingJob(s *State, slave string, id JobID) (*Job, error) {
	if _, ok := s.Slaves[slave]; !ok {
		return nil, refuse(Unregistered, "slave %s has not registered with this master", slave)
	}
	j, ok := s.Jobs[id]
	if !ok {
		return nil, refuse(NotFound, "no job %s in progress", id)
	}
	if j.Slave != slave {
		return nil, refuse(FailedPrecondition, "job %s belongs to slave %q, not %s", id, j.Slave, slave)
	}
	if j.Kind != KindDump {
		return nil, refuse(FailedPrecondition, "job %s is a %s: it writes no tape", id, j.Kind)
	}
	if j.AbortRequested {
		return nil, refuse(FailedPrecondition, "job %s is being aborted", id)
	}
	return j, nil
}

func decideGenLabel(s *State, c GenLabel, at int64) ([]Event, error) {
	if _, err := writingJob(s, c.Slave, c.Job); err != nil {
		return nil, err
	}
	if c.Name != "" {
		// Only the last label a name was given can be live: a name is
		// labeled again only once its tape expired, and tapes never leave
		// expired.
		if label, ok := s.byName[c.Name]; ok {
			if t := s.Tapes[label]; t.State != TapeExpired {
				return nil, refuse(FailedPrecondition, "cartridge %s already carries label %s (%s): it is not blank", c.Name, t.Label, t.State)
			}
		}
	}
	return []Event{TapeLabeled{Label: s.tapeLabel(s.NextTape), Name: c.Name, Job: c.Job, Slave: c.Slave, Seq: s.NextTape, At: at}}, nil
}

func decideValidateLabel(s *State, c ValidateLabel) ([]Event, error) {
	if _, err := writingJob(s, c.Slave, c.Job); err != nil {
		return nil, err
	}
	if v, why := s.ValidateTape(c.Job, c.Label); v != TapeMine {
		return nil, refuse(FailedPrecondition, "%s", why)
	}
	return nil, nil
}

// checkDumpTapes refuses a dump record naming a tape its job has not
// reserved: nothing is recorded on a tape the master did not hand out.
func checkDumpTapes(s *State, job JobID, d Dump) error {
	if len(d.Tapes) == 0 {
		return refuse(InvalidArgument, "dump of %s names no tape", d.Volume)
	}
	for _, label := range d.Tapes {
		if v, why := s.ValidateTape(job, label); v != TapeMine {
			return refuse(FailedPrecondition, "dump of %s on tape %s refused: %s", d.Volume, label, why)
		}
	}
	return nil
}

// releaseTapes ends a job's reservations: tapes holding a dump become
// VALID, empty ones EXPIRED (labeled, reusable after an explicit erase).
// The order is by label, so the decision is deterministic.
func releaseTapes(s *State, job JobID, at int64) []Event {
	labels := slices.Sorted(maps.Keys(s.reserved[job]))
	var evs []Event
	for _, label := range labels {
		st := TapeExpired
		if s.Tapes[label].Files > 0 {
			st = TapeValid
		}
		evs = append(evs, TapeStateChanged{Label: label, State: st, At: at})
	}
	return evs
}

// PlanRestore chooses, from a volume's dumps, the chain that restores it as
// of asOf (unix ns; 0 means now): the latest full dump at or before asOf,
// then, in dump-date order, every incremental up to asOf whose increment
// date is not after the dump before it (so the chain has no gap).
func PlanRestore(dumps []Dump, asOf int64) ([]Dump, error) {
	sorted := slices.Clone(dumps)
	slices.SortFunc(sorted, func(a, b Dump) int { return cmpInt(a.DumpDate, b.DumpDate) })
	if asOf != 0 {
		i, _ := slices.BinarySearchFunc(sorted, asOf+1, func(d Dump, t int64) int { return cmpInt(d.DumpDate, t) })
		sorted = sorted[:i]
	}
	full := -1
	for i, d := range sorted {
		if d.IncrementDate == 0 {
			full = i
		}
	}
	if full < 0 {
		if len(dumps) == 0 {
			return nil, refuse(NotFound, "the volume has no dump")
		}
		return nil, refuse(NotFound, "the volume has no full dump at or before that time")
	}
	plan := []Dump{sorted[full]}
	for _, d := range sorted[full+1:] {
		last := plan[len(plan)-1]
		if d.DumpDate > last.DumpDate && d.IncrementDate <= last.DumpDate {
			plan = append(plan, d)
		}
	}
	return plan, nil
}

func cmpInt(a, b int64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}
