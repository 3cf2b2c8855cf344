package journal

import (
	"errors"
	"fmt"
)

// Exit statuses. The master maps journal failures to these (sysexits.h
// values) so that a supervisor can tell them apart:
//
//   - ExitIO (74, EX_IOERR): a write or fsync of the journal failed. The
//     default Options.Fatal exits with it. Restarting recovers (Open repairs
//     a torn tail), unless the disk is really gone.
//   - ExitCorrupt (65, EX_DATAERR): Open refused the journal with a
//     *CorruptError. Restarting does not help; an operator must look.
//   - ExitLocked (75, EX_TEMPFAIL): Open or Create met a *LockedError: another
//     process holds the journal.
const (
	ExitIO      = 74
	ExitCorrupt = 65
	ExitLocked  = 75
)

var (
	// ErrNotExist is returned by Open and OpenReader when the directory holds
	// no journal (it is missing or has no segment file), and by Reader.Read
	// for an index outside the log.
	ErrNotExist = errors.New("journal: does not exist")
	// ErrExist is returned by Create when the directory already holds a
	// journal (at least one segment file).
	ErrExist = errors.New("journal: already exists")
	// ErrFailed is returned by every operation of a Journal after a write or
	// fsync failed and Options.Fatal was called, including by the futures
	// that were waiting at the time. It is also returned by Create and Open
	// when such an error happens while they write (after calling Fatal).
	ErrFailed = errors.New("journal: failed after a write or fsync error")
	// ErrClosed is returned by Submit, Append and Close after Close.
	ErrClosed = errors.New("journal: closed")
)

// LockedError is returned by Create and Open when another open file
// description holds the journal's lock: another process, or another Journal
// in this process.
type LockedError struct {
	Dir string
	// PID is the holder's process id as written in the LOCK file, or 0 when
	// it is unknown (the file is empty, unparsable, or names a dead process:
	// the holder is still verifying the journal and has not written its pid).
	PID int
}

func (e *LockedError) Error() string {
	if e.PID == 0 {
		return fmt.Sprintf("journal %s is locked by an unknown process (another abs process is using it)", e.Dir)
	}
	return fmt.Sprintf("journal %s is locked by pid %d (another abs process is using it)", e.Dir, e.PID)
}

// CorruptError says where a journal is damaged in a way that Open will not
// repair: anything but a torn, zeroed or garbage final record of the last
// segment.
type CorruptError struct {
	// File is the segment file (the journal dir joined with its name).
	File string
	// Offset is the byte offset in File of the WAL entry (its length prefix)
	// where the damage starts.
	Offset int64
	// Index is the WAL index expected at Offset.
	Index uint64
	// Reason says what is wrong.
	Reason string
}

func (e *CorruptError) Error() string {
	return fmt.Sprintf("journal: corrupt: %s at offset %d (index %d): %s", e.File, e.Offset, e.Index, e.Reason)
}

// RepairReport describes the torn tail that Open cut (Journal.Repaired) or
// would cut (Reader.TailDamage).
type RepairReport struct {
	// File is the last segment.
	File string
	// Offset is where the valid prefix ends: the segment's new size.
	Offset int64
	// CutBytes is how many bytes were (or would be) removed.
	CutBytes int64
	// Broken is the path of the copy of the whole segment taken before
	// cutting, under dir/broken/; empty in Reader.TailDamage.
	Broken string
	// Reason says what was found at Offset.
	Reason string
}

func (r *RepairReport) String() string {
	s := fmt.Sprintf("%s: cut %d bytes at offset %d: %s", r.File, r.CutBytes, r.Offset, r.Reason)
	if r.Broken != "" {
		s += " (copy kept in " + r.Broken + ")"
	}
	return s
}
