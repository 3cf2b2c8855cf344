package statemachine

import (
	"bytes"
	"errors"
	"fmt"

	"github.com/vmihailenco/msgpack/v5"
)

// EventType tags an event in the journal. Values are part of the on-disk
// format: never reuse or renumber one.
type EventType uint16

const (
	EvMasterStarted     EventType = 1
	EvJobQueued         EventType = 2
	EvJobAbortRequested EventType = 3
	EvJobEnded          EventType = 4
	EvJobDispatched     EventType = 5
	EvJobProgress       EventType = 6
	EvSlaveRegistered   EventType = 7
	EvTapeLabeled       EventType = 8
	EvTapeStateChanged  EventType = 9
	EvDumpRecorded      EventType = 10
	EvJobAdopted        EventType = 11
	EvMerged            EventType = 12
)

// Event is a fact the master decided and journaled.
type Event interface {
	Type() EventType
}

// MasterStarted opens a master incarnation. Epoch is greater than every epoch
// before it in the journal's lineage; slaves obey the highest epoch they saw.
type MasterStarted struct {
	Master Master `msgpack:"m"`
}

// JobQueued accepts a job. Job.ID was assigned by Decide from the state's job
// sequence; Job.QueuedIndex is filled in by Apply with the record's index.
type JobQueued struct {
	Job Job `msgpack:"j"`
}

// JobAbortRequested records that an operator asked to abort a job that a
// slave is working on; the slave is told (effect SendAbort) and reports the end.
type JobAbortRequested struct {
	ID JobID  `msgpack:"id"`
	By string `msgpack:"by"`
	At int64  `msgpack:"at"`
}

// JobEnded ends a job: done, failed or aborted.
type JobEnded struct {
	ID    JobID    `msgpack:"id"`
	State JobState `msgpack:"st"`
	Why   string   `msgpack:"why,omitempty"`
	Slave string   `msgpack:"sl,omitempty"` // set when a slave reported the end
	Seq   uint64   `msgpack:"sq,omitempty"`
	At    int64    `msgpack:"at"`
}

// JobDispatched hands a queued job to a slave.
type JobDispatched struct {
	ID    JobID  `msgpack:"id"`
	Slave string `msgpack:"sl"`
	At    int64  `msgpack:"at"`
}

// JobProgress is a slave's report on a running job.
type JobProgress struct {
	ID      JobID  `msgpack:"id"`
	Slave   string `msgpack:"sl"`
	Seq     uint64 `msgpack:"sq,omitempty"`
	Volumes int    `msgpack:"nv"`
	Bytes   int64  `msgpack:"nb"`
	Note    string `msgpack:"nt,omitempty"` // what the job waits for now ("waiting for a blank tape"), if anything
	At      int64  `msgpack:"at"`
}

// SlaveRegistered records a slave's registration (first or again).
type SlaveRegistered struct {
	Slave Slave `msgpack:"s"`
}

// TapeLabeled records a label generated for a blank tape: the tape is
// RESERVED by Job until the job ends.
type TapeLabeled struct {
	Label string `msgpack:"l"`
	Name  string `msgpack:"n,omitempty"`
	Job   JobID  `msgpack:"j"`
	Slave string `msgpack:"sl"`
	Seq   uint64 `msgpack:"sq,omitempty"` // the label's sequence number in this journal
	At    int64  `msgpack:"at"`
}

// TapeStateChanged moves a tape to a new state (VALID when its job is done,
// EXPIRED by an explicit retention decision).
type TapeStateChanged struct {
	Label string    `msgpack:"l"`
	State TapeState `msgpack:"s"`
	At    int64     `msgpack:"at"`
}

// DumpRecorded records one volume written to tape (a DumpCheckpoint).
type DumpRecorded struct {
	Dump  Dump   `msgpack:"d"`
	Slave string `msgpack:"sl,omitempty"`
	Seq   uint64 `msgpack:"sq,omitempty"`
	At    int64  `msgpack:"at"`
}

// JobAdopted takes over a job that another master queued and a slave reports
// in progress (the slave was moved to this master, or this master was
// started in its place). The job arrives running on that slave; the tapes it
// holds are reserved by it here as they were there, with the dump files
// already on them, so its later checkpoints and its end are decided as if
// this master had dispatched it.
type JobAdopted struct {
	Job   Job        `msgpack:"j"`
	Tapes []HeldTape `msgpack:"t,omitempty"`
}

func (MasterStarted) Type() EventType     { return EvMasterStarted }
func (JobQueued) Type() EventType         { return EvJobQueued }
func (JobAbortRequested) Type() EventType { return EvJobAbortRequested }
func (JobEnded) Type() EventType          { return EvJobEnded }
func (JobDispatched) Type() EventType     { return EvJobDispatched }
func (JobProgress) Type() EventType       { return EvJobProgress }
func (SlaveRegistered) Type() EventType   { return EvSlaveRegistered }
func (TapeLabeled) Type() EventType       { return EvTapeLabeled }
func (TapeStateChanged) Type() EventType  { return EvTapeStateChanged }
func (DumpRecorded) Type() EventType      { return EvDumpRecorded }
func (JobAdopted) Type() EventType        { return EvJobAdopted }
func (Merged) Type() EventType            { return EvMerged }

// newEvent returns a pointer to a zero event of type t, for decoding.
func newEvent(t EventType) (Event, bool) {
	switch t {
	case EvMasterStarted:
		return &MasterStarted{}, true
	case EvJobQueued:
		return &JobQueued{}, true
	case EvJobAbortRequested:
		return &JobAbortRequested{}, true
	case EvJobEnded:
		return &JobEnded{}, true
	case EvJobDispatched:
		return &JobDispatched{}, true
	case EvJobProgress:
		return &JobProgress{}, true
	case EvSlaveRegistered:
		return &SlaveRegistered{}, true
	case EvTapeLabeled:
		return &TapeLabeled{}, true
	case EvTapeStateChanged:
		return &TapeStateChanged{}, true
	case EvDumpRecorded:
		return &DumpRecorded{}, true
	case EvJobAdopted:
		return &JobAdopted{}, true
	case EvMerged:
		return &Merged{}, true
	}
	return nil, false
}

// deref turns the pointer newEvent made back into the value form that Decide
// produces, so decoded and decided events compare equal.
func deref(e Event) Event {
	switch v := e.(type) {
	case *MasterStarted:
		return *v
	case *JobQueued:
		return *v
	case *JobAbortRequested:
		return *v
	case *JobEnded:
		return *v
	case *JobDispatched:
		return *v
	case *JobProgress:
		return *v
	case *SlaveRegistered:
		return *v
	case *TapeLabeled:
		return *v
	case *TapeStateChanged:
		return *v
	case *DumpRecorded:
		return *v
	case *JobAdopted:
		return *v
	case *Merged:
		return *v
	}
	return e
}

// ErrBadEvents is wrapped by every DecodeEvents error.
var ErrBadEvents = errors.New("bad events payload")

// maxEvents bounds one record's event count, so a damaged length cannot make
// the decoder loop or allocate without end.
const maxEvents = 1 << 16

// EncodeEvents encodes events as the payload of one journal record:
//
//	msgpack array of N entries, each a 2-array [type (uint), event (map)]
//
// Event structs encode as maps keyed by their short msgpack tags, in field
// order, so the encoding is deterministic.
func EncodeEvents(evs []Event) ([]byte, error) {
	var buf bytes.Buffer
	enc := msgpack.NewEncoder(&buf)
	enc.UseCompactInts(true)
	if err := enc.EncodeArrayLen(len(evs)); err != nil {
		return nil, err
	}
	for _, ev := range evs {
		if err := enc.EncodeArrayLen(2); err != nil {
			return nil, err
		}
		if err := enc.EncodeUint(uint64(ev.Type())); err != nil {
			return nil, err
		}
		if err := enc.Encode(ev); err != nil {
			return nil, fmt.Errorf("statemachine: encode %T: %w", ev, err)
		}
	}
	return buf.Bytes(), nil
}

// DecodeEvents is the inverse of EncodeEvents. It refuses unknown event
// types and unknown fields (a journal written by a newer abs must not be
// half-understood) and trailing bytes.
func DecodeEvents(b []byte) ([]Event, error) {
	r := bytes.NewReader(b)
	dec := msgpack.NewDecoder(r)
	dec.DisallowUnknownFields(true)
	n, err := dec.DecodeArrayLen()
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrBadEvents, err)
	}
	if n < 0 || n > maxEvents {
		return nil, fmt.Errorf("%w: %d events in one record", ErrBadEvents, n)
	}
	evs := make([]Event, 0, min(n, 16))
	for i := range n {
		m, err := dec.DecodeArrayLen()
		if err != nil || m != 2 {
			return nil, fmt.Errorf("%w: event %d is not a [type, body] pair", ErrBadEvents, i)
		}
		t, err := dec.DecodeUint16()
		if err != nil {
			return nil, fmt.Errorf("%w: event %d type: %v", ErrBadEvents, i, err)
		}
		ev, ok := newEvent(EventType(t))
		if !ok {
			return nil, fmt.Errorf("%w: event %d has unknown type %d (written by a newer abs?)", ErrBadEvents, i, t)
		}
		if err := dec.Decode(ev); err != nil {
			return nil, fmt.Errorf("%w: event %d (%T): %v", ErrBadEvents, i, ev, err)
		}
		evs = append(evs, deref(ev))
	}
	if r.Len() != 0 {
		return nil, fmt.Errorf("%w: %d trailing bytes", ErrBadEvents, r.Len())
	}
	return evs, nil
}
