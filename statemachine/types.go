package statemachine

import (
	"fmt"
	"strings"
)

// JobID names a job across every master that ever ran in a realm. It is the
// job prefix of the journal that queued it (see JobPrefix), a dash and a
// decimal sequence number: "q7k2m-12". Short enough to type, unique across
// masters because each journal (normal, crippled, relocated copies share their
// origin's ID) has its own prefix.
type JobID string

// JobKind says what a job does.
type JobKind uint8

const (
	KindDump    JobKind = 1
	KindRestore JobKind = 2
)

func (k JobKind) String() string {
	switch k {
	case KindDump:
		return "dump"
	case KindRestore:
		return "restore"
	}
	return fmt.Sprintf("kind(%d)", uint8(k))
}

// JobState is where a job is in its life: queued → dispatched → running →
// done / failed / aborted. A queued job may also be aborted directly.
type JobState uint8

const (
	StateQueued     JobState = 1 // accepted, waiting for a slave
	StateDispatched JobState = 2 // handed to a slave, not yet reported running
	StateRunning    JobState = 3 // the slave reported progress
	StateDone       JobState = 4
	StateFailed     JobState = 5
	StateAborted    JobState = 6
)

// JobStates lists every state in order, for metrics and listings.
var JobStates = []JobState{StateQueued, StateDispatched, StateRunning, StateDone, StateFailed, StateAborted}

func (s JobState) String() string {
	switch s {
	case StateQueued:
		return "queued"
	case StateDispatched:
		return "dispatched"
	case StateRunning:
		return "running"
	case StateDone:
		return "done"
	case StateFailed:
		return "failed"
	case StateAborted:
		return "aborted"
	}
	return fmt.Sprintf("state(%d)", uint8(s))
}

// Ended reports whether the job can change no more.
func (s JobState) Ended() bool { return s == StateDone || s == StateFailed || s == StateAborted }

// Scope is what a dump names: one volume, every volume of a partition, or
// every partition of a server.
type Scope uint8

const (
	ScopeVolume    Scope = 1
	ScopePartition Scope = 2
	ScopeServer    Scope = 3
)

func (s Scope) String() string {
	switch s {
	case ScopeVolume:
		return "volume"
	case ScopePartition:
		return "partition"
	case ScopeServer:
		return "server"
	}
	return fmt.Sprintf("scope(%d)", uint8(s))
}

// ParseScope reads "volume", "partition" or "server".
func ParseScope(s string) (Scope, error) {
	switch s {
	case "volume":
		return ScopeVolume, nil
	case "partition":
		return ScopePartition, nil
	case "server":
		return ScopeServer, nil
	}
	return 0, fmt.Errorf("unknown scope %q (want volume, partition or server)", s)
}

// Target names what a job works on. Server and Partition may be empty for a
// volume target (any slave that reaches a volume of that name will do).
type Target struct {
	_msgpack  struct{} `msgpack:",as_array"`
	Scope     Scope    `msgpack:"s"`
	Server    string   `msgpack:"sv,omitempty"`
	Partition string   `msgpack:"p,omitempty"`
	Volume    string   `msgpack:"v,omitempty"`
}

// String renders the target as server/partition/volume with the parts the
// scope names ("fs1/vicepa/user.alice", "fs1/vicepa", "fs1", "*/*/user.alice").
func (t Target) String() string {
	part := func(s string) string {
		if s == "" {
			return "*"
		}
		return s
	}
	switch t.Scope {
	case ScopeServer:
		return part(t.Server)
	case ScopePartition:
		return part(t.Server) + "/" + part(t.Partition)
	default:
		return part(t.Server) + "/" + part(t.Partition) + "/" + part(t.Volume)
	}
}

// Covers reports whether the volume server/partition/volume is under t.
func (t Target) Covers(server, partition, volume string) bool {
	return (t.Server == "" || server == t.Server) && (t.Partition == "" || partition == t.Partition) &&
		(t.Scope != ScopeVolume || volume == t.Volume)
}

// Level is the kind of dump a job makes.
type Level uint8

const (
	LevelAuto        Level = 0 // incremental when the volume has a full dump, else full
	LevelFull        Level = 1
	LevelIncremental Level = 2
)

func (l Level) String() string {
	switch l {
	case LevelAuto:
		return "auto"
	case LevelFull:
		return "full"
	case LevelIncremental:
		return "incremental"
	}
	return fmt.Sprintf("level(%d)", uint8(l))
}

// ParseLevel reads "full", "incremental" (or "incr") and "auto" ("" too).
func ParseLevel(s string) (Level, error) {
	switch s {
	case "", "auto":
		return LevelAuto, nil
	case "full":
		return LevelFull, nil
	case "incremental", "incr":
		return LevelIncremental, nil
	}
	return 0, fmt.Errorf("unknown dump level %q (want full or incremental)", s)
}

// Job is everything known about one job. The state keeps jobs that have not
// ended; the catalog keeps them all.
//
// Job and Target encode as msgpack arrays (fields in declaration order): they
// are the most frequent values in the journal and the catalog, and arrays
// skip the field names and the per-field emptiness checks. New fields go at
// the end, so older records (shorter arrays) still decode.
type Job struct {
	_msgpack struct{} `msgpack:",as_array"`
	ID       JobID    `msgpack:"id"`
	Kind     JobKind  `msgpack:"k"`
	Target   Target   `msgpack:"t"`
	Level    Level    `msgpack:"l,omitempty"`
	State    JobState `msgpack:"st"`
	By       string   `msgpack:"by,omitempty"` // who asked (operator name), or "adopted from SLAVE"
	Slave    string   `msgpack:"sl,omitempty"` // the slave it was dispatched to
	// Why is what the job is waiting for while queued ("no slave has
	// registered", "waiting for a blank tape"), or why it failed or was
	// aborted once ended.
	Why            string       `msgpack:"why,omitempty"`
	AbortRequested bool         `msgpack:"ar,omitempty"`
	QueuedAt       int64        `msgpack:"qa"` // unix ns
	UpdatedAt      int64        `msgpack:"ua"`
	EndedAt        int64        `msgpack:"ea,omitempty"`
	QueuedIndex    uint64       `msgpack:"qi"` // journal index of JobQueued
	Volumes        int          `msgpack:"nv,omitempty"`
	Bytes          int64        `msgpack:"nb,omitempty"`
	Restore        *RestoreSpec `msgpack:"rs,omitempty"` // for a restore job
	// Origin is the journal ID of the master that queued the job, when this
	// master adopted it from a slave (JobAdopted); empty for its own jobs.
	Origin string `msgpack:"or,omitempty"`
}

// RestoreSpec is what a restore job restores, and where.
type RestoreSpec struct {
	To    string `msgpack:"to"`             // target directory on the slave
	AsOf  int64  `msgpack:"asof,omitempty"` // unix ns; 0: the latest
	Slave string `msgpack:"want,omitempty"` // the slave the operator asked for, if any
	Plan  []Dump `msgpack:"plan"`           // full dump, then incrementals, in order
}

// Slave is a media slave the master has heard from.
type Slave struct {
	Name         string   `msgpack:"n"`
	Addr         string   `msgpack:"a"`
	Drives       int      `msgpack:"d,omitempty"`
	Reaches      []Target `msgpack:"r,omitempty"` // servers/partitions/volumes it can dump
	RegisteredAt int64    `msgpack:"ra"`
	LastSeq      uint64   `msgpack:"sq,omitempty"` // highest report sequence number applied
}

// TapeState is a tape's life: unlabeled → reserved (being written by a job)
// → valid (holds dumps that must not be overwritten) → expired (only by an
// explicit retention decision).
type TapeState uint8

const (
	TapeUnlabeled TapeState = 1
	TapeReserved  TapeState = 2
	TapeValid     TapeState = 3
	TapeExpired   TapeState = 4
)

func (s TapeState) String() string {
	switch s {
	case TapeUnlabeled:
		return "unlabeled"
	case TapeReserved:
		return "reserved"
	case TapeValid:
		return "valid"
	case TapeExpired:
		return "expired"
	}
	return fmt.Sprintf("tapestate(%d)", uint8(s))
}

// Tape is a cartridge the master has labeled or seen.
type Tape struct {
	Label     string    `msgpack:"l"`           // internal label, written on the medium
	Name      string    `msgpack:"n,omitempty"` // external name (the sticker)
	State     TapeState `msgpack:"s"`
	Job       JobID     `msgpack:"j,omitempty"`  // the job writing it while reserved
	Slave     string    `msgpack:"sl,omitempty"` // where it was last mounted
	Files     int       `msgpack:"f,omitempty"`  // tape files written
	UpdatedAt int64     `msgpack:"ua"`
}

// Dump is one volume written to tape: a dump record.
type Dump struct {
	Volume        string   `msgpack:"v"`
	Server        string   `msgpack:"sv"`
	Partition     string   `msgpack:"p"`
	DumpDate      int64    `msgpack:"dd"` // unix ns: when the dump's snapshot was taken
	IncrementDate int64    `msgpack:"id"` // 0 for a full dump, else the date it is incremental to
	Tapes         []string `msgpack:"t"`  // labels, in order (a dump may span tapes)
	File          int      `msgpack:"f"`  // tape file number on the first tape
	Bytes         int64    `msgpack:"b"`
	SHA256        string   `msgpack:"h"`
	Job           JobID    `msgpack:"j"`
}

// VolumeKey is server/partition/volume.
func VolumeKey(server, partition, volume string) string {
	return server + "/" + partition + "/" + volume
}

// Volume is the per-volume summary decisions need: the latest dumps.
type Volume struct {
	Server       string `msgpack:"sv"`
	Partition    string `msgpack:"p"`
	Name         string `msgpack:"v"`
	LastFull     int64  `msgpack:"lf,omitempty"` // dump date of the latest full dump
	LastDump     int64  `msgpack:"ld,omitempty"` // dump date of the latest dump of any level
	Dumps        int    `msgpack:"n,omitempty"`
	LastDumpJob  JobID  `msgpack:"lj,omitempty"`
	LastDumpTape string `msgpack:"lt,omitempty"`
	// The sizes of the latest full and incremental dumps: estimates of the
	// next ones (the time left of a running job).
	LastFullBytes int64 `msgpack:"lfb,omitempty"`
	LastIncrBytes int64 `msgpack:"lib,omitempty"`
}

// Master describes the current master incarnation.
type Master struct {
	Epoch     uint64 `msgpack:"e"`
	Node      string `msgpack:"n"`
	Addr      string `msgpack:"a"`
	StartedAt int64  `msgpack:"at"`
	// Disaster is set for a crippled master in disaster mode: it takes
	// calls from any slave of the realm and never answers "no such job"
	// (a job a slave reports that it does not know is adopted).
	Disaster bool `msgpack:"d,omitempty"`
}

// JournalInfo is the identity of the journal the state was built from.
type JournalInfo struct {
	ID    string `msgpack:"id"`
	Realm string `msgpack:"realm"`
	Mode  string `msgpack:"mode"`
}

// Crippled reports whether the journal is a crippled-mode journal.
func (j JournalInfo) Crippled() bool { return j.Mode == "crippled" }

// validName checks an operator-supplied server, partition or volume name.
func validName(what, s string) error {
	if s == "" {
		return refuse(InvalidArgument, "%s name is empty", what)
	}
	if len(s) > 128 {
		return refuse(InvalidArgument, "%s name is %d bytes long (at most 128)", what, len(s))
	}
	for _, r := range s {
		if r <= ' ' || r == 0x7f || r == '/' || r == '\\' {
			return refuse(InvalidArgument, "%s name %q contains %q (names are letters, digits and . _ - + @ :)", what, s, r)
		}
	}
	if strings.HasPrefix(s, "-") || s == "." || s == ".." {
		return refuse(InvalidArgument, "%s name %q is not a valid name", what, s)
	}
	return nil
}

func (r *RestoreSpec) String() string {
	if r == nil {
		return "<none>"
	}
	dates := make([]string, len(r.Plan))
	for i, d := range r.Plan {
		dates[i] = fmt.Sprintf("%d/%d", d.DumpDate, d.IncrementDate)
	}
	return fmt.Sprintf("{to:%s asof:%d slave:%q plan:%s}", r.To, r.AsOf, r.Slave, strings.Join(dates, ","))
}
