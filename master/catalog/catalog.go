package catalog

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/vfs"
)

// Errors returned by the catalog. Each says when it is returned; wrapped
// errors keep them reachable with errors.Is.
var (
	// ErrReadOnly is returned by Batch.Put, Batch.Commit and Sync of a
	// catalog opened with Options.ReadOnly.
	ErrReadOnly = errors.New("catalog: opened read-only")
	// ErrClosed is returned by every method of a Catalog (and of its
	// batches) after Close.
	ErrClosed = errors.New("catalog: closed")
	// ErrInUse is returned by Open and Remove when the catalog directory is
	// open elsewhere: by another Catalog of this process, or (for Remove and
	// ReadOnly opens) locked by another process, a running master.
	ErrInUse = errors.New("catalog: in use")
	// ErrBatchDone is returned by every method of a Batch after its Commit
	// (whether the Commit succeeded or not): make a new batch.
	ErrBatchDone = errors.New("catalog: batch already committed")
	// ErrNoApplied is returned by Batch.Commit when Batch.SetApplied was not
	// called: data must never be stored without the index that produced it.
	ErrNoApplied = errors.New("catalog: batch has no applied index (call SetApplied)")
	// ErrOutOfOrder is returned by Batch.Commit when the batch's applied
	// index is not greater than the catalog's, or its snapshot index is not
	// greater than the latest snapshot's or is above the applied index. It is
	// a bug in the caller: journal indices are applied once, in order.
	ErrOutOfOrder = errors.New("catalog: index out of order")
	// ErrCorrupt is wrapped by errors about stored bytes that do not decode
	// (a key or value this version did not write). The catalog is a cache:
	// `abs journal rebuild` replaces it.
	ErrCorrupt = errors.New("catalog: corrupt")
)

// MismatchError is returned by Batch.Commit when the catalog was built from
// another journal than the one being applied (a catalog copied from another
// master, or left over from a journal that was replaced). Nothing is written.
type MismatchError struct {
	Have string // journal ID stored in the catalog
	Want string // journal ID of the batch
}

func (e *MismatchError) Error() string {
	return fmt.Sprintf("catalog belongs to journal %s, not %s: run `abs journal rebuild`", e.Have, e.Want)
}

// Options configures Open. The zero value opens (or creates) an on-disk
// catalog for writing, with pebble's logging discarded.
type Options struct {
	// ReadOnly opens an existing catalog without changing a byte on disk
	// (for `abs journal verify`): no file is created, renamed, removed or
	// written, not even pebble's LOCK file, which is only read-locked. A
	// missing catalog is an error wrapping fs.ErrNotExist; Put, Commit and
	// Sync return ErrReadOnly. Default false.
	ReadOnly bool
	// InMemory keeps the catalog in memory (pebble's vfs.NewMem), for fresh
	// replays compared against the on-disk catalog with Diff; dir then only
	// names it. It always starts empty, so it cannot be ReadOnly. Default
	// false.
	InMemory bool
	// Logger receives pebble's own messages: informational ones at debug
	// level, background errors at error level. Default: discarded.
	Logger *slog.Logger

	// fs, when set by a test, replaces the file system (a crashable MemFS).
	fs vfs.FS
}

// Catalog is the Pebble projection of the master's journal. Reads are safe
// for concurrent use with each other and with Commit (each read sees the
// catalog as of a commit); Close must not race with anything.
type Catalog struct {
	db       *pebble.DB
	dir      string
	readOnly bool
	closed   atomic.Bool
	release  func() // unregisters dir from the in-process registry

	// mu serialises commits; it guards the cached meta below, which equals
	// what is stored once a commit returns.
	mu      sync.Mutex
	journal string   // meta/journal; "" for a new catalog
	applied uint64   // meta/applied; 0 for a new catalog
	snaps   []uint64 // indices of stored snapshots, ascending
}

// Meta is the catalog's own state: which journal it projects and how far.
type Meta struct {
	JournalID     string // "" for a new catalog
	Applied       uint64 // last journal index whose records are stored; 0 for a new catalog
	SnapshotIndex uint64 // index of the latest snapshot; 0 if none
}

// Counts is the number of records of each kind.
type Counts struct {
	Jobs, Dumps, Tapes, Slaves, Volumes, Masters int
}

// Pebble tuning. The catalog is written by one goroutine in batches of
// records (one batch per journal record, larger during a rebuild), read by
// prefix scans and occasional point lookups, on small machines (2 cores).
const (
	// memTableSize: a 64 MiB memtable absorbs a rebuild of hundreds of
	// thousands of records between flushes, so flushes (and the L0 files
	// that compactions must then merge) are few; pebble grows memtables from
	// 256 KiB, so a quiet catalog does not pay for it. The cost is memory
	// (at most memTableStopWrites of them) and, after a crash, replaying
	// and flushing the unflushed WAL before Open returns: about 0.45 s
	// after a 1M-job rebuild on a 2-core machine (BenchmarkOpen1MAfterCrash;
	// 8 MiB measured 0.9 s there, as the flush backlog of small memtables
	// grows). Close flushes, so a clean restart replays nothing (~6 ms).
	memTableSize = 64 << 20
	// memTableStopWrites: two memtables (one filling, one flushing) before
	// writes stall, pebble's default.
	memTableStopWrites = 2
	// cacheSize: block cache for reads. Listings read job/ keys in queueing
	// order (random in key order), so a larger cache than pebble's 8 MiB
	// default helps `abs jobs --all` on big catalogs.
	cacheSize = 32 << 20
	// compactionLow, compactionHigh: one compaction normally, two when
	// pebble sees L0 or compaction debt building up; more would starve the
	// master on a 2-core machine.
	compactionLow, compactionHigh = 1, 2
)

// formatVersion pins pebble's on-disk format, so an upgrade of pebble does
// not silently ratchet the format of existing catalogs. It includes WAL sync
// chunks (FormatWALSyncChunks), with which pebble tells a torn WAL tail from
// corruption when it replays after a crash.
const formatVersion = pebble.FormatValueSeparation

func pebbleOptions(o Options) *pebble.Options {
	po := &pebble.Options{
		FormatMajorVersion:          formatVersion,
		MemTableSize:                memTableSize,
		MemTableStopWritesThreshold: memTableStopWrites,
		CacheSize:                   cacheSize,
		CompactionConcurrencyRange:  func() (int, int) { return compactionLow, compactionHigh },
		// L0 compaction thresholds stay at pebble's defaults (compact at 4
		// sublevels, stall at 12): with 64 MiB memtables, L0 grows slowly.
		//
		// No bloom filters (pebble's default, FilterPolicy nil): they speed
		// up point lookups of absent keys in many levels; the catalog's
		// reads are prefix scans and lookups of keys that exist.
		Logger:   pebbleLogger{o.Logger},
		ReadOnly: o.ReadOnly,
	}
	// The catalog is never written with Sync: see Batch.Commit.
	return po
}

// Open opens the catalog in dir, creating it (and dir) if missing unless
// opts.ReadOnly is set.
//
// Errors: a missing catalog when ReadOnly ("no catalog in DIR", wrapping
// fs.ErrNotExist); dir is not a directory; the catalog is open elsewhere
// (ErrInUse); InMemory with ReadOnly; pebble's own errors (permissions,
// corruption), wrapped with the directory.
func Open(dir string, opts Options) (*Catalog, error) {
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	po := pebbleOptions(opts)
	release := func() {}
	switch {
	case opts.InMemory && opts.ReadOnly:
		return nil, errors.New("catalog: an in-memory catalog cannot be read-only (it starts empty)")
	case opts.fs != nil:
		po.FS = opts.fs
	case opts.InMemory:
		po.FS = vfs.NewMem()
	default:
		fi, err := os.Stat(dir)
		switch {
		case errors.Is(err, fs.ErrNotExist) && opts.ReadOnly:
			return nil, fmt.Errorf("catalog: no catalog in %s: %w", dir, fs.ErrNotExist)
		case errors.Is(err, fs.ErrNotExist):
		case err != nil:
			return nil, fmt.Errorf("catalog: open %s: %w", dir, err)
		case !fi.IsDir():
			return nil, fmt.Errorf("catalog: open %s: not a directory", dir)
		}
		release, err = register(dir, opts.ReadOnly)
		if err != nil {
			return nil, err
		}
		po.FS = vfs.Default
		if opts.ReadOnly {
			po.FS = readOnlyFS{vfs.Default}
		}
	}
	if opts.InMemory && dir == "" {
		dir = "catalog"
	}
	db, err := pebble.Open(dir, po)
	if err != nil {
		release()
		// A read-only open of a directory pebble never wrote fails on the
		// missing LOCK file (readOnlyFS.Lock) or the missing manifest.
		if opts.ReadOnly && (errors.Is(err, pebble.ErrDBDoesNotExist) || errors.Is(err, fs.ErrNotExist)) {
			return nil, fmt.Errorf("catalog: no catalog in %s: %w", dir, fs.ErrNotExist)
		}
		if lockConflict(err) {
			return nil, fmt.Errorf("catalog: open %s: %w (by a running master?): %v", dir, ErrInUse, err)
		}
		return nil, fmt.Errorf("catalog: open %s: %w", dir, err)
	}
	c := &Catalog{db: db, dir: dir, readOnly: opts.ReadOnly, release: release}
	if err := c.loadMeta(); err != nil {
		db.Close()
		release()
		return nil, err
	}
	return c, nil
}

// loadMeta reads the stored meta into the cache Commit checks against.
func (c *Catalog) loadMeta() error {
	j, ok, err := c.get([]byte(keyMetaJournal))
	if err != nil {
		return err
	}
	if ok {
		c.journal = string(j)
	}
	a, ok, err := c.get([]byte(keyMetaApplied))
	if err != nil {
		return err
	}
	if ok {
		if len(a) != 8 {
			return fmt.Errorf("%w: %s in %s holds %d bytes, not 8", ErrCorrupt, keyMetaApplied, c.dir, len(a))
		}
		c.applied = binary.BigEndian.Uint64(a)
	}
	c.snaps, err = c.snapshotIndices()
	return err
}

// Close flushes the memtable (so the next Open replays no WAL: a clean
// restart opens in milliseconds) and closes the catalog. Closing twice
// returns ErrClosed.
func (c *Catalog) Close() error {
	if c.closed.Swap(true) {
		return ErrClosed
	}
	defer c.release()
	var err error
	if !c.readOnly {
		if ferr := c.db.Flush(); ferr != nil {
			err = fmt.Errorf("catalog: close %s: flush: %w", c.dir, ferr)
		}
	}
	if cerr := c.db.Close(); cerr != nil && err == nil {
		err = fmt.Errorf("catalog: close %s: %w", c.dir, cerr)
	}
	return err
}

// Sync makes every committed batch durable (an fsync of pebble's WAL). The
// commit loop does not need it (see Batch.Commit); it marks clean points,
// such as the end of a rebuild, after which a crash must not cost a replay.
func (c *Catalog) Sync() error {
	if c.closed.Load() {
		return ErrClosed
	}
	if c.readOnly {
		return ErrReadOnly
	}
	if err := c.db.LogData(nil, pebble.Sync); err != nil {
		return fmt.Errorf("catalog: sync %s: %w", c.dir, err)
	}
	return nil
}

// Meta returns the stored meta: a zero Meta for a new catalog.
func (c *Catalog) Meta() (Meta, error) {
	if c.closed.Load() {
		return Meta{}, ErrClosed
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	m := Meta{JournalID: c.journal, Applied: c.applied}
	if n := len(c.snaps); n > 0 {
		m.SnapshotIndex = c.snaps[n-1]
	}
	return m, nil
}

// get returns a copy of the value of key, and whether it exists.
func (c *Catalog) get(key []byte) ([]byte, bool, error) {
	v, closer, err := c.db.Get(key)
	if errors.Is(err, pebble.ErrNotFound) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, fmt.Errorf("catalog: get %s: %w", key, err)
	}
	v = bytes.Clone(v)
	return v, true, closer.Close()
}

// registry holds the on-disk catalogs open in this process: a writer
// excludes everything else, readers share. It exists because pebble's LOCK
// is a POSIX (fcntl) lock, which the kernel drops when the process closes
// any descriptor of the file: a read-only open of a catalog this process
// writes must not even open its LOCK file, or closing it would release the
// writer's lock.
var registry = struct {
	sync.Mutex
	open map[string]int // absolute dir → -1 for a writer, else the number of readers
}{open: map[string]int{}}

func register(dir string, readOnly bool) (func(), error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, fmt.Errorf("catalog: open %s: %w", dir, err)
	}
	registry.Lock()
	defer registry.Unlock()
	n := registry.open[abs]
	if n < 0 || (n > 0 && !readOnly) {
		return nil, fmt.Errorf("catalog: open %s: %w: already open in this process", dir, ErrInUse)
	}
	if readOnly {
		registry.open[abs] = n + 1
	} else {
		registry.open[abs] = -1
	}
	var once sync.Once
	return func() {
		once.Do(func() {
			registry.Lock()
			defer registry.Unlock()
			if registry.open[abs] <= 1 {
				delete(registry.open, abs)
			} else {
				registry.open[abs]--
			}
		})
	}, nil
}

func registered(dir string) bool {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return false
	}
	registry.Lock()
	defer registry.Unlock()
	return registry.open[abs] != 0
}
