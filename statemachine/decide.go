package statemachine

import (
	"fmt"
	"slices"
	"strings"
	"time"
)

// Command is an input to Decide: an operator call, a slave report or a timer.
type Command interface {
	command()
}

// StartMaster opens a new master incarnation (the first thing a master
// journals after opening its journal).
type StartMaster struct {
	Node     string
	Addr     string
	Disaster bool // only for a crippled journal
}

// QueueDump queues a dump job.
type QueueDump struct {
	Target Target
	Level  Level
	By     string
}

// QueueRestore queues a restore of one volume, from a plan the caller made
// with PlanRestore from the catalog's dump records.
type QueueRestore struct {
	Target Target // a volume, with its server and partition
	To     string
	AsOf   int64
	Slave  string // optional: the slave to use
	Plan   []Dump
	// Named: the operator named the dumps by tape and file (a crippled
	// master has no history to plan from): they are applied in the order
	// given, and those the master has no record of carry no dates.
	Named bool
	By    string
}

// AbortJob aborts a job: at once if no slave has it yet, else by telling the
// slave, which reports the end.
type AbortJob struct {
	ID JobID
	By string
}

// RegisterSlave records a slave's registration. Jobs are the jobs the slave
// has in progress or still owes reports for: those another master queued
// are adopted (JobAdopted), so that a slave moved to this master mid-job
// finishes the job here.
type RegisterSlave struct {
	Slave Slave
	Jobs  []SlaveJob
}

// SlaveJob is a job as the slave running it describes it: enough for a
// master that did not queue it to adopt it.
type SlaveJob struct {
	ID      JobID
	Kind    JobKind
	Target  Target
	Level   Level
	Restore *RestoreSpec // for a restore: where to and the plan
	Origin  string       // the journal ID of the master that ordered it ("" if unknown)
	Tapes   []HeldTape   // the tapes the job holds (dump jobs)
	Volumes int
	Bytes   int64
}

// HeldTape is a tape a running dump job holds: labeled for it, and written
// with Files dump files so far.
type HeldTape struct {
	Label string `msgpack:"l"`
	Name  string `msgpack:"n,omitempty"`
	Files int    `msgpack:"f,omitempty"`
}

// Report is a slave's report on a job: progress, a volume written, or the
// end. Seq is the slave's report sequence number: a report whose Seq is not
// above the highest one applied for that slave is a duplicate or arrived out
// of order, and changes nothing.
type Report struct {
	Slave   string
	Seq     uint64
	ID      JobID
	Volumes int      // progress so far
	Bytes   int64    // progress so far
	Dump    *Dump    // a volume written (DumpCheckpoint)
	End     JobState // StateDone, StateFailed or StateAborted to end the job; 0 otherwise
	Why     string   // why it ended; or, for progress, what it waits for now
}

// Schedule dispatches queued jobs to slaves that can run them. The master
// decides it after every change that could make a job dispatchable.
type Schedule struct{}

func (StartMaster) command()   {}
func (QueueDump) command()     {}
func (QueueRestore) command()  {}
func (AbortJob) command()      {}
func (RegisterSlave) command() {}
func (Schedule) command()      {}
func (Report) command()        {}

// Decide turns a command into the events that record the decision, or
// refuses it. It reads s and never changes it; the caller journals the events
// and then applies them.
func Decide(s *State, cmd Command, now time.Time) ([]Event, error) {
	at := now.UnixNano()
	switch c := cmd.(type) {
	case StartMaster:
		if c.Node == "" {
			return nil, refuse(InvalidArgument, "master node name is empty")
		}
		if c.Disaster && !s.Journal.Crippled() {
			return nil, refuse(InvalidArgument, "disaster mode is a crippled master's (abs master --crippled)")
		}
		return []Event{MasterStarted{Master: Master{Epoch: s.Master.Epoch + 1, Node: c.Node, Addr: c.Addr, StartedAt: at, Disaster: c.Disaster}}}, nil

	case QueueDump:
		return decideQueueDump(s, c, at)

	case QueueRestore:
		return decideQueueRestore(s, c, at)

	case AbortJob:
		return decideAbort(s, c, at)

	case RegisterSlave:
		return decideRegister(s, c, at)

	case Schedule:
		return decideSchedule(s, at), nil

	case Report:
		return decideReport(s, c, at)

	case GenLabel:
		return decideGenLabel(s, c, at)

	case ValidateLabel:
		return decideValidateLabel(s, c)
	}
	return nil, refuse(InvalidArgument, "unknown command %T", cmd)
}

func validTarget(t Target) error {
	switch t.Scope {
	case ScopeVolume:
		if err := validName("volume", t.Volume); err != nil {
			return err
		}
		if t.Server != "" {
			if err := validName("server", t.Server); err != nil {
				return err
			}
		}
		if t.Partition != "" {
			if t.Server == "" {
				return refuse(InvalidArgument, "partition %s given without its server", t.Partition)
			}
			return validName("partition", t.Partition)
		}
		return nil
	case ScopePartition:
		if t.Volume != "" {
			return refuse(InvalidArgument, "a partition dump names no volume (got %q)", t.Volume)
		}
		if err := validName("server", t.Server); err != nil {
			return refuse(InvalidArgument, "a partition dump needs its server: %v", err)
		}
		return validName("partition", t.Partition)
	case ScopeServer:
		if t.Volume != "" || t.Partition != "" {
			return refuse(InvalidArgument, "a server dump names only the server (got partition %q, volume %q)", t.Partition, t.Volume)
		}
		return validName("server", t.Server)
	}
	return refuse(InvalidArgument, "unknown dump scope %d (want volume, partition or server)", t.Scope)
}

func decideQueueDump(s *State, c QueueDump, at int64) ([]Event, error) {
	if err := validTarget(c.Target); err != nil {
		return nil, err
	}
	switch c.Level {
	case LevelAuto, LevelFull, LevelIncremental:
	default:
		return nil, refuse(InvalidArgument, "unknown dump level %d (want full or incremental)", c.Level)
	}
	j := Job{
		ID:        s.jobID(s.NextJob),
		Kind:      KindDump,
		Target:    c.Target,
		Level:     c.Level,
		State:     StateQueued,
		By:        c.By,
		QueuedAt:  at,
		UpdatedAt: at,
	}
	return []Event{JobQueued{Job: j}}, nil
}

func decideQueueRestore(s *State, c QueueRestore, at int64) ([]Event, error) {
	t := c.Target
	if t.Scope != ScopeVolume || t.Server == "" || t.Partition == "" {
		return nil, refuse(InvalidArgument, "a restore names one volume with its server and partition")
	}
	if err := validTarget(t); err != nil {
		return nil, err
	}
	if c.To == "" || c.To[0] != '/' {
		return nil, refuse(InvalidArgument, "the restore target %q must be an absolute directory on the slave", c.To)
	}
	if len(c.Plan) == 0 || (!c.Named && c.Plan[0].IncrementDate != 0) {
		return nil, refuse(InvalidArgument, "a restore plan starts with a full dump")
	}
	for i, d := range c.Plan {
		if d.Volume != t.Volume || d.Server != t.Server || d.Partition != t.Partition || len(d.Tapes) == 0 || (c.Named && d.File < 1) {
			return nil, refuse(InvalidArgument, "plan step %d is not a dump of %s", i+1, t)
		}
		if !c.Named && i > 0 && (d.DumpDate <= c.Plan[i-1].DumpDate || d.IncrementDate > c.Plan[i-1].DumpDate) {
			return nil, refuse(InvalidArgument, "plan step %d does not chain after step %d", i+1, i)
		}
	}
	if c.Slave != "" {
		if _, ok := s.Slaves[c.Slave]; !ok {
			return nil, refuse(NotFound, "no slave %s has registered (abs slaves lists them)", c.Slave)
		}
	}
	j := Job{
		ID: s.jobID(s.NextJob), Kind: KindRestore, Target: t, State: StateQueued, By: c.By, QueuedAt: at, UpdatedAt: at,
		Restore: &RestoreSpec{To: c.To, AsOf: c.AsOf, Slave: c.Slave, Plan: c.Plan},
	}
	return []Event{JobQueued{Job: j}}, nil
}

// Waiting says why a queued job is not running now, in words an operator
// can act on (the reason stored in the job is the one at queueing time).
func (s *State) Waiting(j Job) string {
	if j.State != StateQueued {
		return j.Why
	}
	return waitReason(s, j.Target)
}

func waitReason(s *State, t Target) string {
	if len(s.Slaves) == 0 {
		return "waiting for a slave: none has registered with this master"
	}
	if pickSlave(s, t, nil) == "" { // whether any slave reaches it: load does not matter
		return fmt.Sprintf("waiting for a slave that reaches %s", t)
	}
	return "waiting to be dispatched"
}

func decideAbort(s *State, c AbortJob, at int64) ([]Event, error) {
	if c.ID == "" {
		return nil, refuse(InvalidArgument, "no job ID given")
	}
	j, ok := s.Jobs[c.ID]
	if !ok {
		if old, ok := s.Job(c.ID); ok {
			return nil, refuse(FailedPrecondition, "job %s already ended (%s)", c.ID, old.State)
		}
		return nil, refuse(NotFound, "no job %s (`abs jobs --all` lists jobs)", c.ID)
	}
	by := c.By
	if j.Slave == "" {
		why := "aborted before it started"
		if by != "" {
			why = "aborted by " + by + " before it started"
		}
		return []Event{JobEnded{ID: j.ID, State: StateAborted, Why: why, At: at}}, nil
	}
	if j.AbortRequested {
		return nil, nil // already asked; the slave will report the end
	}
	return []Event{JobAbortRequested{ID: j.ID, By: by, At: at}}, nil
}

// reaches reports whether a slave's declared reach covers target t.
func reaches(sl *Slave, t Target) bool {
	for _, r := range sl.Reaches {
		if t.Server != "" && r.Server != t.Server {
			continue
		}
		switch r.Scope {
		case ScopeServer:
			if t.Server != "" {
				return true
			}
		case ScopePartition:
			if t.Scope != ScopeServer && t.Partition == r.Partition && t.Server != "" {
				return true
			}
		case ScopeVolume:
			if t.Scope == ScopeVolume && r.Volume == t.Volume &&
				(t.Partition == "" || t.Partition == r.Partition) {
				return true
			}
		}
	}
	return false
}

// slaveLoad counts the jobs each slave has.
func slaveLoad(s *State) map[string]int {
	load := map[string]int{}
	for _, j := range s.Jobs {
		if j.Slave != "" {
			load[j.Slave]++
		}
	}
	return load
}

// pickSlave chooses the slave for a target: among those that reach it, the
// one with the fewest jobs (load), ties broken by name (deterministic).
func pickSlave(s *State, t Target, load map[string]int) string {
	names := make([]string, 0, len(s.Slaves))
	for name := range s.Slaves {
		names = append(names, name)
	}
	slices.Sort(names)
	best := ""
	for _, name := range names {
		if !reaches(s.Slaves[name], t) {
			continue
		}
		if best == "" || load[name] < load[best] {
			best = name
		}
	}
	return best
}

func decideSchedule(s *State, at int64) []Event {
	if len(s.Slaves) == 0 {
		return nil
	}
	var evs []Event
	load := slaveLoad(s)
	for _, j := range s.ActiveJobs() {
		if j.State != StateQueued || j.AbortRequested {
			continue
		}
		name := pickSlave(s, j.Target, load)
		if j.Restore != nil && j.Restore.Slave != "" {
			name = ""
			if _, ok := s.Slaves[j.Restore.Slave]; ok {
				name = j.Restore.Slave
			}
		}
		if name == "" {
			continue
		}
		load[name]++
		evs = append(evs, JobDispatched{ID: j.ID, Slave: name, At: at})
	}
	return evs
}

func decideReport(s *State, c Report, at int64) ([]Event, error) {
	sl, ok := s.Slaves[c.Slave]
	if !ok {
		return nil, refuse(Unregistered, "slave %s has not registered with this master", c.Slave)
	}
	if c.Seq != 0 && c.Seq <= sl.LastSeq {
		return nil, nil // duplicate or reordered: already applied
	}
	j, ok := s.Jobs[c.ID]
	if !ok {
		if old, ok := s.Job(c.ID); ok && old.State.Ended() {
			return nil, nil // a late report for a job that has ended
		}
		if s.Master.Disaster {
			return adoptReported(s, c, at)
		}
		return nil, refuse(NotFound, "no job %s", c.ID)
	}
	if j.Slave != c.Slave {
		return nil, refuse(FailedPrecondition, "job %s belongs to slave %q, not %s", c.ID, j.Slave, c.Slave)
	}
	var evs []Event
	if c.Dump != nil {
		d := *c.Dump
		d.Job = c.ID
		if err := checkDumpTapes(s, c.ID, d); err != nil {
			return nil, err
		}
		evs = append(evs, DumpRecorded{Dump: d, Slave: c.Slave, Seq: c.Seq, At: at})
	}
	switch c.End {
	case 0:
		evs = append(evs, JobProgress{ID: c.ID, Slave: c.Slave, Seq: c.Seq, Volumes: c.Volumes, Bytes: c.Bytes, Note: c.Why, At: at})
	case StateDone, StateFailed, StateAborted:
		evs = append(evs, JobEnded{ID: c.ID, State: c.End, Why: c.Why, Slave: c.Slave, Seq: c.Seq, At: at})
		// The job's reservations end with it. A dump recorded by this same
		// report counts as a file on its tapes.
		for _, e := range releaseTapes(s, c.ID, at) {
			tc := e.(TapeStateChanged)
			if c.Dump != nil && slices.Contains(c.Dump.Tapes, tc.Label) {
				tc.State = TapeValid
			}
			evs = append(evs, tc)
		}
	default:
		return nil, refuse(InvalidArgument, "a job cannot end in state %s", c.End)
	}
	return evs, nil
}

func decideRegister(s *State, c RegisterSlave, at int64) ([]Event, error) {
	sl := c.Slave
	if err := validName("slave", sl.Name); err != nil {
		return nil, err
	}
	if sl.Addr == "" {
		return nil, refuse(InvalidArgument, "slave %s registered without an address", sl.Name)
	}
	for _, t := range sl.Reaches {
		if err := validTarget(t); err != nil {
			return nil, refuse(InvalidArgument, "slave %s reaches a bad target: %v", sl.Name, err)
		}
	}
	var evs []Event
	if old, ok := s.Slaves[sl.Name]; !ok || !sameRegistration(*old, sl) {
		sl.RegisteredAt = at
		evs = append(evs, SlaveRegistered{Slave: sl})
	}
	seen := map[JobID]bool{}
	for _, sj := range c.Jobs {
		if seen[sj.ID] {
			return nil, refuse(InvalidArgument, "slave %s lists job %s twice", sl.Name, sj.ID)
		}
		seen[sj.ID] = true
		ev, err := adoption(s, sl.Name, sj, at)
		if err != nil {
			return nil, err
		}
		if ev != nil {
			evs = append(evs, *ev)
		}
	}
	return evs, nil
}

// adoption decides whether a job a registering slave lists is adopted: only
// a job this master does not know and did not queue itself. A job it knows
// goes on as it is (or, ended here, its late reports are acknowledged and
// change nothing); an ID of this journal it does not know is not invented.
func adoption(s *State, slave string, sj SlaveJob, at int64) (*JobAdopted, error) {
	bad := func(format string, args ...any) error {
		return refuse(InvalidArgument, "slave %s lists job %s: %s", slave, sj.ID, fmt.Sprintf(format, args...))
	}
	if sj.ID == "" || len(sj.ID) > 64 {
		return nil, refuse(InvalidArgument, "slave %s lists a job with an empty or overlong ID", slave)
	}
	if _, ok := s.Job(sj.ID); ok {
		return nil, nil
	}
	if strings.HasPrefix(string(sj.ID), s.Prefix+"-") {
		return nil, nil // this journal's, long ended (or not an ID it makes)
	}
	if err := validTarget(sj.Target); err != nil {
		return nil, bad("%v", err)
	}
	j := Job{ID: sj.ID, Kind: sj.Kind, Target: sj.Target, Level: sj.Level, State: StateRunning, Slave: slave,
		By: "adopted from slave " + slave, QueuedAt: at, UpdatedAt: at, Volumes: sj.Volumes, Bytes: sj.Bytes, Origin: sj.Origin}
	switch sj.Kind {
	case KindDump:
		if sj.Restore != nil {
			return nil, bad("a dump with a restore plan")
		}
		switch sj.Level {
		case LevelAuto, LevelFull, LevelIncremental:
		default:
			return nil, bad("unknown dump level %d", sj.Level)
		}
	case KindRestore:
		if sj.Restore == nil || sj.Target.Scope != ScopeVolume || len(sj.Tapes) != 0 {
			return nil, bad("a restore names one volume, a plan, and holds no tape")
		}
		r := *sj.Restore
		j.Restore = &r
	default:
		return nil, bad("unknown job kind %d", sj.Kind)
	}
	var tapes []HeldTape
	for _, t := range sj.Tapes {
		if t.Label == "" || t.Files < 0 {
			return nil, bad("a held tape without a label")
		}
		if _, known := s.Tapes[t.Label]; known {
			continue // this master's view of its own tapes stands
		}
		tapes = append(tapes, t)
	}
	return &JobAdopted{Job: j, Tapes: tapes}, nil
}

// adoptReported is disaster mode's answer to a report on a job the master
// does not know: never "no such job". A checkpoint adopts the job (a dump of
// the volume it names, its tapes reserved by it) and records the dump; a
// progress report adopts nothing it could describe and an end ends nothing
// here, so both are acknowledged and change nothing.
func adoptReported(s *State, c Report, at int64) ([]Event, error) {
	if c.Dump == nil || strings.HasPrefix(string(c.ID), s.Prefix+"-") {
		return nil, nil
	}
	d := *c.Dump
	d.Job = c.ID
	sj := SlaveJob{ID: c.ID, Kind: KindDump, Target: Target{Scope: ScopeVolume, Server: d.Server, Partition: d.Partition, Volume: d.Volume},
		Volumes: c.Volumes, Bytes: c.Bytes}
	if len(d.Tapes) == 0 {
		return nil, refuse(InvalidArgument, "dump of %s names no tape", d.Volume)
	}
	for _, label := range d.Tapes {
		if _, known := s.Tapes[label]; known {
			// Only a tape this master never saw can come with a job it never saw.
			_, why := s.ValidateTape(c.ID, label)
			return nil, refuse(FailedPrecondition, "dump of %s on tape %s refused: %s", d.Volume, label, why)
		}
		sj.Tapes = append(sj.Tapes, HeldTape{Label: label})
	}
	adopted, err := adoption(s, c.Slave, sj, at)
	if err != nil || adopted == nil {
		return nil, err
	}
	adopted.Job.By = "adopted from slave " + c.Slave + " (reported)"
	return []Event{*adopted, DumpRecorded{Dump: d, Slave: c.Slave, Seq: c.Seq, At: at},
		JobProgress{ID: c.ID, Slave: c.Slave, Seq: c.Seq, Volumes: c.Volumes, Bytes: c.Bytes, At: at}}, nil
}

// sameRegistration reports whether registering sl again would change
// nothing that decisions use.
func sameRegistration(old, sl Slave) bool {
	return old.Addr == sl.Addr && old.Drives == sl.Drives && slices.Equal(old.Reaches, sl.Reaches) && sl.LastSeq <= old.LastSeq
}
