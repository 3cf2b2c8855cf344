package journal

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/tidwall/wal"
)

// DefaultSegmentSize is Options.SegmentSize when left zero (32 MiB).
const DefaultSegmentSize = 32 << 20

// Group commit bounds: one batch takes at most this many queued entries or
// this many payload bytes (but always at least one entry).
const (
	maxBatchEntries = 8192
	maxBatchBytes   = 8 << 20
)

// Observer receives the journal's figures, so that metrics can live in
// another package (this one must not import prometheus). Its methods are
// called by the committer (the writer goroutine, or an Append committing its
// own group; never two at once) and must not block.
type Observer interface {
	// Appended is called after each group commit with the number of records
	// and WAL bytes it wrote, the time the write took and the time the
	// fsyncs took (file, plus directory when a segment was created).
	Appended(records, bytes int, write, fsync time.Duration)
	// Size is called at open and after each group commit with the total size
	// of the segment files and the last durable index.
	Size(bytes int64, last uint64)
}

// Hooks are named durability points for tests (etcd failpoint style): a test
// can block or crash exactly there. Leave nil in production (each is then a
// nil check). They are called by the committer (as for Observer), around
// each group commit:
//
//	BeforeWrite   records encoded, nothing written
//	AfterWrite    the batch is in the page cache, not yet fsynced
//	AfterSync     the segment is fsynced (futures not yet resolved)
//	AfterDirSync  the directory was fsynced because a segment file appeared
//	              (also called by Create for the first segment)
type Hooks struct {
	BeforeWrite  func()
	AfterWrite   func()
	AfterSync    func()
	AfterDirSync func()
}

// Options configure Create and Open. The zero value is valid.
type Options struct {
	// SegmentSize is the size at which wal starts a new segment file.
	// Default DefaultSegmentSize (32 MiB). A segment exceeds it by at most
	// its last entry (more if it was written with a larger SegmentSize).
	// wal holds the segment being written in memory, so this is also the
	// writer's main memory cost.
	SegmentSize int
	// Observer, if not nil, receives figures for metrics.
	Observer Observer
	// Fatal is called once, with the cause, on any write, fsync or directory
	// fsync error: in a group commit, in Create, in Open's repair, and in
	// Close (wal fsyncs again when closing). The default prints
	// "abs: journal: FATAL: <err>" to stderr and exits with ExitIO: an fsync
	// is never retried, because after a failed fsync the kernel may have
	// dropped the dirty pages and a retry would lie. If Fatal returns
	// (tests), the journal refuses everything with ErrFailed.
	Fatal func(error)
	// Hooks are test durability points; nil in production.
	Hooks *Hooks

	// failpoint, set only by this package's tests, injects an error at a
	// named point of the writer ("write", "sync", "dirsync").
	failpoint func(point string) error
}

func (o Options) withDefaults() Options {
	if o.SegmentSize <= 0 {
		o.SegmentSize = DefaultSegmentSize
	}
	if o.Fatal == nil {
		o.Fatal = defaultFatal
	}
	if o.Hooks == nil {
		o.Hooks = &Hooks{}
	}
	return o
}

func defaultFatal(err error) {
	fmt.Fprintf(os.Stderr, "abs: journal: FATAL: %v\n", err)
	os.Exit(ExitIO)
}

// Journal is an open journal with its single writer. Its methods are safe for
// concurrent use.
type Journal struct {
	dir      string
	opts     Options
	id       Identity
	lock     *dirLock
	log      *wal.Log
	repaired *RepairReport

	last      atomic.Uint64 // last durable index
	fatalOnce sync.Once

	mu    sync.Mutex
	wake  *sync.Cond
	queue []*Future // submitted, not yet taken by a committer; indices next-len+1..next
	next  uint64    // last index assigned by Submit
	// committing is the commit token: set while the writer goroutine or a
	// leading Append commits. Whoever sets it owns the fields below
	// "Owned by the committer" until it clears it (j.mu orders the hand-off).
	committing bool
	closing    bool
	closed     bool
	failed     error // the write/fsync error, once Fatal was called

	writerDone chan struct{}

	// Owned by the committer (see committing).
	prevCRC  uint32    // CRC of the last record written
	segBytes int       // bytes in wal's current segment, to predict its cycles
	size     int64     // total bytes of all segments
	batch    wal.Batch // reused
	scratch  []byte    // reused record encoding buffer
	newSegs  []uint64  // reused: segments the current batch creates
}

// Create makes a new journal in dir named by id: it creates dir (and fsyncs
// the parent of every directory it creates), takes the lock, and writes the
// identity record as index 1 durably. It refuses (ErrExist) if dir already
// holds segment files, and returns *LockedError if another opener holds dir.
//
// The first segment is written to a temporary file, fsynced, then renamed
// into place and the directory fsynced, so a crash leaves either no journal
// or one with its identity: never a journal without a name.
func Create(dir string, id Identity, opts Options) (*Journal, error) {
	opts = opts.withDefaults()
	if err := id.validate(); err != nil {
		return nil, fmt.Errorf("journal: create %s: %w", dir, err)
	}
	payload, err := encodeIdentity(id)
	if err != nil {
		return nil, err
	}
	if syncErr, err := mkdirAllDurable(dir); err != nil {
		return nil, fmt.Errorf("journal: create %s: %w", dir, err)
	} else if syncErr != nil {
		return nil, fatalOpen(opts, fmt.Errorf("journal: create %s: %w", dir, syncErr))
	}
	lock, err := lockDir(dir, true)
	if err != nil {
		return nil, err
	}
	ok := false
	defer func() {
		if !ok {
			lock.release()
		}
	}()
	if _, err := listSegments(dir); err == nil {
		return nil, fmt.Errorf("journal: create %s: %w", dir, ErrExist)
	} else if !errors.Is(err, ErrNotExist) {
		return nil, fmt.Errorf("journal: create %s: %w", dir, err)
	}
	if err := lock.writePID(); err != nil {
		return nil, fmt.Errorf("journal: create %s: lock file: %w", dir, err)
	}
	rec := EncodeRecord(nil, Record{Index: 1, Type: TypeIdentity, Time: id.Created, Payload: payload})
	entry := binary.AppendUvarint(nil, uint64(len(rec)))
	entry = append(entry, rec...)
	if err := writeFirstSegment(dir, entry); err != nil {
		return nil, fatalOpen(opts, fmt.Errorf("journal: create %s: %w", dir, err))
	}
	if h := opts.Hooks.AfterDirSync; h != nil {
		h()
	}
	j, err := start(dir, opts, lock, id, 1, binary.BigEndian.Uint32(rec[len(rec)-4:]), len(entry), int64(len(entry)), nil)
	if err != nil {
		return nil, err
	}
	ok = true
	return j, nil
}

// writeSynced creates path (flag adds O_TRUNC or O_EXCL), writes data and
// fsyncs it; the caller fsyncs the directory.
func writeSynced(path string, data []byte, flag int) error {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|flag, 0o640)
	if err != nil {
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// createTemp is the temporary name of the first segment while Create writes
// it. wal ignores it (not a 20-digit name); Create overwrites a leftover.
const createTemp = "CREATE.tmp"

func writeFirstSegment(dir string, entry []byte) error {
	tmp := filepath.Join(dir, createTemp)
	if err := writeSynced(tmp, entry, os.O_TRUNC); err != nil {
		return err
	}
	if err := os.Rename(tmp, filepath.Join(dir, segmentName(1))); err != nil {
		return err
	}
	return syncDir(dir)
}

// fatalOpen reports a write/fsync error met by Create or Open to Fatal and
// returns the error Create or Open returns if Fatal returns.
func fatalOpen(opts Options, err error) error {
	opts.Fatal(err)
	return fmt.Errorf("%w: %w", ErrFailed, err)
}

// Open opens an existing journal for appending. It takes the lock
// (*LockedError if held), verifies every segment and the whole chain, repairs
// a torn final record of the last segment (see Repaired) and refuses any
// other damage with a *CorruptError, writing nothing. A directory without
// segment files gives ErrNotExist (nothing is created).
func Open(dir string, opts Options) (*Journal, error) {
	opts = opts.withDefaults()
	lock, err := lockDir(dir, false)
	if errors.Is(err, fs.ErrNotExist) {
		// No LOCK file: create it only if there is a journal to lock.
		if _, lerr := listSegments(dir); lerr != nil {
			return nil, lerr
		}
		lock, err = lockDir(dir, true)
	}
	if err != nil {
		return nil, err
	}
	ok := false
	defer func() {
		if !ok {
			lock.release()
		}
	}()
	segs, err := listSegments(dir)
	if err != nil {
		return nil, err
	}
	st, err := verifyJournal(dir, segs)
	if err != nil {
		return nil, err
	}
	// Verified: from here on we write. The pid goes in only now, so that a
	// refused Open leaves the directory exactly as it found it.
	if err := lock.writePID(); err != nil {
		return nil, fmt.Errorf("journal: open %s: lock file: %w", dir, err)
	}
	var report *RepairReport
	if st.tail != nil {
		report = st.tail
		if err := repairTail(dir, st, time.Now()); err != nil {
			return nil, fatalOpen(opts, fmt.Errorf("journal: open %s: repair: %w", dir, err))
		}
		// The caller reports it (Repaired), with its own logger.
	}
	j, err := start(dir, opts, lock, st.id, st.last, st.lastCRC, int(st.lastSegSize), st.size, report)
	if err != nil {
		return nil, err
	}
	ok = true
	return j, nil
}

// journalState is what verifyJournal learned.
type journalState struct {
	id          Identity
	last        uint64 // last valid index
	lastCRC     uint32
	lastSeg     segment
	lastSegSize int64 // after the cut, if any
	size        int64 // all segments, after the cut
	tail        *RepairReport
	tailData    []byte // the last segment's bytes, when tail != nil
}

// verifyJournal reads every segment once, in order, verifying framing, CRCs,
// indices, the chain across segments and that no segment is missing, and
// classifies damage in the last segment. It writes nothing.
func verifyJournal(dir string, segs []segment) (*journalState, error) {
	bufp := bufPool.Get().(*[]byte)
	defer bufPool.Put(bufp)
	st := &journalState{}
	next, prev := uint64(1), uint32(0)
	for i, s := range segs {
		file := filepath.Join(dir, s.name)
		lastSeg := i == len(segs)-1
		data, err := readSegment(file, -1, bufp)
		if err != nil {
			return nil, err
		}
		res, _ := scanRecords(data, next, prev, true, 0, nil)
		if i == 0 && res.count > 0 {
			r, _ := firstRecord(data)
			id, err := decodeIdentity(r.Payload)
			if err != nil {
				return nil, &CorruptError{File: file, Index: 1, Reason: fmt.Sprintf("identity payload: %v", err)}
			}
			st.id = id
		}
		if res.dmg != nil {
			if !lastSeg {
				return nil, &CorruptError{File: file, Offset: res.dmg.off, Index: res.dmg.index,
					Reason: res.dmg.reason + " (not the last segment: never repaired)"}
			}
			tail, err := judgeTail(file, data, res.dmg)
			if err != nil {
				return nil, err
			}
			st.tail = tail
			st.tailData = append([]byte(nil), data...)
		}
		next += res.count
		prev = res.lastCRC
		if !lastSeg && segs[i+1].first != next {
			return nil, &CorruptError{File: filepath.Join(dir, segs[i+1].name), Index: next,
				Reason: fmt.Sprintf("segment %s holds %d records, so the next segment must be %s: segments are missing or out of place",
					s.name, res.count, segmentName(next))}
		}
		st.size += res.end
		if lastSeg {
			st.lastSeg = s
			st.lastSegSize = res.end
		}
	}
	if next == 1 {
		return nil, &CorruptError{File: filepath.Join(dir, segs[0].name), Index: 1, Reason: "journal has no identity record"}
	}
	st.last = next - 1
	st.lastCRC = prev
	return st, nil
}

// brokenDir is where repair keeps copies of the segments it cut. wal skips
// directories, so nothing in it is ever mistaken for a segment.
const brokenDir = "broken"

// repairTail keeps a copy of the last segment in dir/broken, then cuts the
// segment at the damage and makes both durable.
func repairTail(dir string, st *journalState, now time.Time) error {
	t := st.tail
	bdir := filepath.Join(dir, brokenDir)
	if err := os.Mkdir(bdir, 0o750); err == nil {
		if err := syncDir(dir); err != nil {
			return err
		}
	} else if !errors.Is(err, fs.ErrExist) {
		return err
	}
	t.Broken = filepath.Join(bdir, fmt.Sprintf("%s.%d.broken", st.lastSeg.name, now.UnixNano()))
	if err := writeSynced(t.Broken, st.tailData, os.O_EXCL); err != nil {
		return err
	}
	if err := syncDir(bdir); err != nil {
		return err
	}
	f, err := os.OpenFile(t.File, os.O_WRONLY, 0)
	if err != nil {
		return err
	}
	if err := f.Truncate(t.Offset); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	st.tailData = nil
	return syncDir(dir)
}

// start opens wal over a verified directory and starts the writer.
func start(dir string, opts Options, lock *dirLock, id Identity, last uint64, lastCRC uint32, segBytes int, size int64, report *RepairReport) (*Journal, error) {
	// NoSync: we fsync once per group commit ourselves (wal would fsync
	// inside WriteBatch, before we could time it or fsync the directory).
	log, err := wal.Open(dir, &wal.Options{NoSync: true, SegmentSize: opts.SegmentSize, SegmentCacheSize: 1, DirPerms: 0o750, FilePerms: 0o640})
	if err != nil {
		return nil, fmt.Errorf("journal: open %s: wal: %w", dir, err)
	}
	if wl, err := log.LastIndex(); err != nil || wl != last {
		log.Close()
		// We verified every byte wal reads; disagreement means our model of
		// wal is wrong.
		panic(fmt.Sprintf("journal: wal sees last index %d (err %v) where verification found %d", wl, err, last))
	}
	j := &Journal{
		dir: dir, opts: opts, id: id, lock: lock, log: log, repaired: report,
		next: last, writerDone: make(chan struct{}),
		prevCRC: lastCRC, segBytes: segBytes, size: size,
	}
	j.last.Store(last)
	j.wake = sync.NewCond(&j.mu)
	if o := opts.Observer; o != nil {
		o.Size(size, last)
	}
	go j.writer()
	return j, nil
}

// Identity returns the journal's identity (its first record).
func (j *Journal) Identity() Identity { return j.id }

// LastIndex returns the last durable index.
func (j *Journal) LastIndex() uint64 { return j.last.Load() }

// Repaired returns what Open cut from a torn tail, or nil if it cut nothing.
func (j *Journal) Repaired() *RepairReport { return j.repaired }

// Dir returns the journal directory as given to Create or Open.
func (j *Journal) Dir() string { return j.dir }
