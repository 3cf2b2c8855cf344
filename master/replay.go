package master

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/abs-backup/abs/journal"
	"github.com/abs-backup/abs/master/catalog"
	"github.com/abs-backup/abs/statemachine"
)

// Layout of a master's data directory.
const (
	JournalDir = "journal" // the journal: the truth
	CatalogDir = "catalog" // the Pebble projection: a cache
)

// ErrCatalog is wrapped by errors that mean the catalog cannot be used as it
// is and `abs journal rebuild` is the way out.
var ErrCatalog = errors.New("catalog unusable")

func journalInfo(id journal.Identity) statemachine.JournalInfo {
	return statemachine.JournalInfo{ID: id.JournalID, Realm: id.Realm, Mode: id.Mode}
}

// replay applies the journal's records from index from to upTo (0: to the
// end) to st, calling sink with each record's output.
func replay(r *journal.Reader, st *statemachine.State, from, upTo uint64, sink func(index uint64, out statemachine.Output) error) error {
	return r.Scan(from, func(rec journal.Record) error {
		if upTo != 0 && rec.Index > upTo {
			return errStopScan
		}
		if rec.Type != journal.TypeEvents {
			return fmt.Errorf("journal record %d has type %d where events were expected", rec.Index, rec.Type)
		}
		evs, err := statemachine.DecodeEvents(rec.Payload)
		if err != nil {
			return fmt.Errorf("journal record %d: %w", rec.Index, err)
		}
		out := st.Apply(rec.Index, evs)
		if sink != nil {
			return sink(rec.Index, out)
		}
		return nil
	})
}

var errStopScan = errors.New("stop scan")

func scanDone(err error) error {
	if errors.Is(err, errStopScan) {
		return nil
	}
	return err
}

// projector writes replayed outputs into a catalog in batches. Encoding and
// committing run in a goroutine of their own, so a replay uses two cores:
// one decodes and applies, the other writes.
type projector struct {
	cat       *catalog.Catalog
	journalID string
	st        *statemachine.State
	snapEvery uint64
	lastSnap  uint64
	chunk     chunk
	chunks    chan chunk
	done      chan error
}

// chunk is one catalog batch's worth of replayed records.
type chunk struct {
	records  []statemachine.Record
	last     uint64 // applied index after this chunk
	snapAt   uint64
	snapshot []byte
}

func newProjector(cat *catalog.Catalog, st *statemachine.State, snapEvery uint64) *projector {
	p := &projector{cat: cat, journalID: st.Journal.ID, snapEvery: snapEvery, st: st, lastSnap: st.Applied,
		chunks: make(chan chunk, 4), done: make(chan error, 1)}
	go p.write()
	return p
}

// write commits chunks in order; after an error it drains and reports it.
func (p *projector) write() {
	var err error
	for c := range p.chunks {
		if err != nil {
			continue
		}
		b := p.cat.NewBatch()
		for _, r := range c.records {
			if err = b.Put(r); err != nil {
				break
			}
		}
		if err != nil {
			continue
		}
		if c.snapshot != nil {
			b.SetSnapshot(c.snapAt, c.snapshot)
		}
		b.SetApplied(p.journalID, c.last)
		err = b.Commit()
	}
	p.done <- err
}

func (p *projector) sink(index uint64, out statemachine.Output) error {
	p.chunk.records = append(p.chunk.records, out.Records...)
	p.chunk.last = index
	if p.snapEvery != 0 && index-p.lastSnap >= p.snapEvery {
		snap, err := p.st.Snapshot()
		if err != nil {
			return err
		}
		p.chunk.snapAt, p.chunk.snapshot = index, snap
		p.lastSnap = index
		p.send()
		return nil
	}
	if len(p.chunk.records) >= 2000 {
		p.send()
	}
	return nil
}

func (p *projector) send() {
	if p.chunk.last != 0 {
		p.chunks <- p.chunk
	}
	p.chunk = chunk{records: make([]statemachine.Record, 0, 2048)}
}

// flush writes what is left and waits for the writer; the projector cannot
// be used after it.
func (p *projector) flush() error {
	p.send()
	close(p.chunks)
	return <-p.done
}

// recoverState rebuilds the in-memory state from the catalog's latest
// snapshot plus the journal's tail, and catches the catalog up to the
// journal. cat may be nil (crippled mode: full replay, no projection).
func recoverState(r *journal.Reader, cat *catalog.Catalog) (*statemachine.State, error) {
	info := journalInfo(r.Identity())
	st := statemachine.NewState(info)
	if cat == nil {
		return st, scanDone(replay(r, st, 2, 0, nil))
	}
	meta, err := cat.Meta()
	if err != nil {
		return nil, err
	}
	if meta.JournalID != "" && meta.JournalID != info.ID {
		return nil, fmt.Errorf("%w: it belongs to journal %s, not %s: run `abs journal rebuild`", ErrCatalog, meta.JournalID, info.ID)
	}
	if meta.Applied > r.LastIndex() {
		return nil, fmt.Errorf("%w: it has applied journal index %d but the journal ends at %d (records lost from the journal?): run `abs journal verify`, then `abs journal rebuild`",
			ErrCatalog, meta.Applied, r.LastIndex())
	}
	if idx, snap, err := cat.LatestSnapshot(); err != nil {
		return nil, err
	} else if snap != nil && idx <= r.LastIndex() {
		restored, err := statemachine.RestoreSnapshot(snap)
		if err != nil {
			return nil, fmt.Errorf("%w: snapshot at %d: %v", ErrCatalog, idx, err)
		}
		if restored.Journal.ID != info.ID || restored.Applied != idx {
			return nil, fmt.Errorf("%w: snapshot at %d is for journal %s index %d", ErrCatalog, idx, restored.Journal.ID, restored.Applied)
		}
		st = restored
	}
	p := newProjector(cat, st, SnapshotEvery)
	err = replay(r, st, st.Applied+1, 0, func(index uint64, out statemachine.Output) error {
		if index <= meta.Applied {
			return nil // already in the catalog
		}
		return p.sink(index, out)
	})
	if err := scanDone(err); err != nil {
		p.flush()
		return nil, err
	}
	return st, p.flush()
}

// RebuildReport says what a rebuild did.
type RebuildReport struct {
	Records  uint64
	Events   uint64
	Duration time.Duration
}

// Rebuild recreates the catalog of a master's data directory from its
// journal. It takes the journal's lock (a running master makes it fail with
// *journal.LockedError) and replaces the catalog only when the new one is
// complete, so a crash midway leaves the old one.
func Rebuild(dataDir string) (RebuildReport, error) {
	start := time.Now()
	jdir := filepath.Join(dataDir, JournalDir)
	j, err := journal.Open(jdir, journal.Options{})
	if err != nil {
		return RebuildReport{}, err
	}
	defer j.Close()
	r, err := journal.OpenReader(jdir)
	if err != nil {
		return RebuildReport{}, err
	}
	tmp := filepath.Join(dataDir, CatalogDir+".rebuild")
	if err := os.RemoveAll(tmp); err != nil {
		return RebuildReport{}, err
	}
	cat, err := catalog.Open(tmp, catalog.Options{})
	if err != nil {
		return RebuildReport{}, err
	}
	st := statemachine.NewState(journalInfo(r.Identity()))
	p := newProjector(cat, st, SnapshotEvery)
	var rep RebuildReport
	err = replay(r, st, 2, 0, func(index uint64, out statemachine.Output) error {
		rep.Records++
		return p.sink(index, out)
	})
	if ferr := p.flush(); err == nil {
		err = ferr
	}
	if err == nil {
		err = cat.Sync()
	}
	if cerr := cat.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.RemoveAll(tmp)
		return rep, err
	}
	final := filepath.Join(dataDir, CatalogDir)
	if err := os.RemoveAll(final); err != nil {
		return rep, err
	}
	if err := os.Rename(tmp, final); err != nil {
		return rep, err
	}
	if err := syncDir(dataDir); err != nil {
		return rep, err
	}
	rep.Duration = time.Since(start)
	return rep, nil
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

// VerifyReport says what `abs journal verify` found.
type VerifyReport struct {
	Journal     journal.Identity
	LastIndex   uint64
	TailDamage  *journal.RepairReport // a torn tail the next open will cut
	Catalog     bool                  // a catalog exists
	CatalogBusy bool                  // a running master holds it: only the journal was checked
	Applied     uint64                // catalog's applied index
	Differences []string              // catalog vs fresh replay; empty when equal
	SnapshotAt  uint64
	SnapshotOK  bool
}

// Verify checks a master's data directory without changing a byte: the
// journal's whole chain, and that the catalog equals a fresh replay of the
// journal up to the catalog's applied index (and that its latest snapshot
// equals the replayed state at its index). It works on a stopped master's
// directory and, read-only, beside a running one.
func Verify(dataDir string) (VerifyReport, error) {
	var rep VerifyReport
	r, err := journal.OpenReader(filepath.Join(dataDir, JournalDir))
	if err != nil {
		return rep, err
	}
	if _, err := r.Verify(); err != nil {
		return rep, err
	}
	rep.Journal, rep.LastIndex, rep.TailDamage = r.Identity(), r.LastIndex(), r.TailDamage()
	cdir := filepath.Join(dataDir, CatalogDir)
	if _, err := os.Stat(cdir); errors.Is(err, os.ErrNotExist) {
		return rep, nil
	}
	rep.Catalog = true
	cat, err := catalog.Open(cdir, catalog.Options{ReadOnly: true})
	if errors.Is(err, catalog.ErrInUse) {
		rep.CatalogBusy = true
		return rep, nil
	}
	if err != nil {
		return rep, err
	}
	defer cat.Close()
	meta, err := cat.Meta()
	if err != nil {
		return rep, err
	}
	rep.Applied = meta.Applied
	if meta.JournalID != "" && meta.JournalID != rep.Journal.JournalID {
		rep.Differences = append(rep.Differences, fmt.Sprintf("catalog belongs to journal %s", meta.JournalID))
		return rep, nil
	}
	if meta.Applied > rep.LastIndex {
		rep.Differences = append(rep.Differences, fmt.Sprintf("catalog applied index %d is past the journal's end %d", meta.Applied, rep.LastIndex))
		return rep, nil
	}
	snapIdx, snap, err := cat.LatestSnapshot()
	if err != nil {
		return rep, err
	}
	rep.SnapshotAt = snapIdx
	fresh, err := catalog.Open("", catalog.Options{InMemory: true})
	if err != nil {
		return rep, err
	}
	defer fresh.Close()
	st := statemachine.NewState(journalInfo(rep.Journal))
	p := newProjector(fresh, st, 0)
	rep.SnapshotOK = snap == nil
	err = replay(r, st, 2, meta.Applied, func(index uint64, out statemachine.Output) error {
		if err := p.sink(index, out); err != nil {
			return err
		}
		if index == snapIdx {
			mine, err := st.Snapshot()
			if err != nil {
				return err
			}
			rep.SnapshotOK = string(mine) == string(snap)
		}
		return nil
	})
	if ferr := p.flush(); err == nil {
		err = ferr
	}
	if err := scanDone(err); err != nil {
		return rep, err
	}
	if meta.Applied > 1 {
		rep.Differences, err = cat.Diff(fresh, 20)
		if err != nil {
			return rep, err
		}
	}
	if !rep.SnapshotOK {
		rep.Differences = append(rep.Differences, fmt.Sprintf("snapshot at index %d differs from the replayed state", snapIdx))
	}
	return rep, nil
}
