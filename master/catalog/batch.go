package catalog

import (
	"bytes"
	"encoding/binary"
	"fmt"

	"github.com/cockroachdb/pebble/v2"
	"github.com/vmihailenco/msgpack/v5"

	"github.com/abs-backup/abs/statemachine"
)

// Batch collects the records of one or more journal records and commits
// them atomically with the journal index they bring the catalog to. A Batch
// is not safe for concurrent use; an uncommitted batch may simply be dropped.
type Batch struct {
	c   *Catalog
	pb  *pebble.Batch
	n   int
	err error // sticky: set by ErrBatchDone, ErrReadOnly

	journal string
	applied uint64
	snapIdx uint64
	snap    []byte
	hasSnap bool

	key []byte       // scratch key, copied by pebble.Batch.Set
	val bytes.Buffer // scratch value
	enc *msgpack.Encoder
}

// NewBatch starts a batch. On a read-only catalog the batch refuses every
// Put and its Commit with ErrReadOnly.
func (c *Catalog) NewBatch() *Batch {
	b := &Batch{c: c}
	switch {
	case c.closed.Load():
		b.err = ErrClosed
	case c.readOnly:
		b.err = ErrReadOnly
	default:
		b.pb = c.db.NewBatch()
	}
	b.enc = msgpack.NewEncoder(&b.val)
	b.enc.UseCompactInts(true)
	return b
}

// Put stores r, the full new value of a record (statemachine.Output.Records
// lists them), under its key (see doc.go), replacing the previous value.
// Errors: ErrBatchDone, ErrReadOnly, ErrClosed, an encoding error, or an
// unknown record type (a bug).
func (b *Batch) Put(r statemachine.Record) error {
	if b.err != nil {
		return b.err
	}
	k := b.key[:0]
	switch r := r.(type) {
	case statemachine.Job:
		// The queue index entry is written with every version of the job:
		// QueuedIndex never changes, so it is the same key and value each
		// time, and a blind write is cheaper than reading whether it exists.
		k = jobQKey(k, r.QueuedIndex, string(r.ID))
		if err := b.pb.Set(k, []byte(r.ID), nil); err != nil {
			return fmt.Errorf("catalog: put %s: %w", k, err)
		}
		k = jobKey(k[:0], string(r.ID))
		return b.set(k, &r)
	case statemachine.DumpRecord:
		return b.set(dumpKey(k, r.Server, r.Partition, r.Volume, r.DumpDate, r.Index), &r)
	case statemachine.Tape:
		return b.set(tapeKey(k, r.Label), &r)
	case statemachine.Slave:
		return b.set(slaveKey(k, r.Name), &r)
	case statemachine.Volume:
		return b.set(volKey(k, r.Server, r.Partition, r.Name), &r)
	case statemachine.Master:
		return b.set(masterKey(k, r.Epoch), &r)
	case nil:
		return fmt.Errorf("catalog: put: nil record")
	default:
		return fmt.Errorf("catalog: put: unknown record type %T", r)
	}
}

// set encodes v as msgpack (the records' struct tags; they hold no maps,
// so the bytes are deterministic) and adds it under key.
func (b *Batch) set(key []byte, v any) error {
	b.key = key
	b.val.Reset()
	if err := b.enc.Encode(v); err != nil {
		return fmt.Errorf("catalog: put %s: encode: %w", key, err)
	}
	if err := b.pb.Set(key, b.val.Bytes(), nil); err != nil {
		return fmt.Errorf("catalog: put %s: %w", key, err)
	}
	b.n++
	return nil
}

// Len returns the number of records put so far.
func (b *Batch) Len() int { return b.n }

// SetApplied records that the batch brings the catalog up to journal index
// of journal journalID. It is required before Commit; the last call wins.
// Commit refuses an index not greater than the catalog's (ErrOutOfOrder)
// and a journal other than the catalog's (*MismatchError).
func (b *Batch) SetApplied(journalID string, index uint64) {
	b.journal, b.applied = journalID, index
}

// SetSnapshot stores snap (statemachine.State.Snapshot) as the state after
// journal index: restart begins from the latest snapshot and replays only
// the journal after it. Commit keeps the two latest snapshots (the new one
// and the previous, in case the new one cannot be restored) and deletes
// older ones. The index must be greater than the latest stored snapshot's
// (and than 0) and at most the batch's applied index (else Commit returns
// ErrOutOfOrder).
// snap is not copied until Commit: do not modify it before.
func (b *Batch) SetSnapshot(index uint64, snap []byte) {
	b.snapIdx, b.snap, b.hasSnap = index, snap, true
}

// Commit writes the batch atomically: every record put, the snapshot if
// any, and meta/applied (and meta/journal), or nothing. After Commit,
// successful or not, the batch is done (ErrBatchDone).
//
// Errors: ErrNoApplied, ErrOutOfOrder, *MismatchError (nothing written;
// bugs or a wrong catalog), ErrReadOnly, ErrClosed, ErrBatchDone, and
// pebble write errors (an environment failure: the master should exit and
// restart, resuming at the stored applied index).
//
// Durability: the batch is applied with pebble.NoSync, so Commit returns
// before the data reaches the disk, and a crash may lose the latest
// commits. That is safe because the catalog is a cache of the journal,
// which is durable before anything is applied (DESIGN.md §2), and because
// pebble writes each batch as one WAL record and, after a crash, replays a
// prefix of whole batches (a torn record at the WAL's tail is discarded):
// the data and the meta/applied written with it survive or vanish
// together. The catalog therefore always holds exactly the records of
// journal indices ≤ meta/applied, and the master resumes at applied+1.
// Syncing every commit would add an fsync per journal record for nothing.
func (b *Batch) Commit() error {
	if b.err != nil {
		return b.err
	}
	b.err = ErrBatchDone
	defer b.pb.Close()
	c := b.c
	if c.closed.Load() {
		return ErrClosed
	}
	if b.journal == "" {
		return ErrNoApplied
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.journal != "" && c.journal != b.journal {
		return &MismatchError{Have: c.journal, Want: b.journal}
	}
	if b.applied <= c.applied {
		return fmt.Errorf("%w: batch applies index %d, catalog has applied %d already", ErrOutOfOrder, b.applied, c.applied)
	}
	snaps := c.snaps
	if b.hasSnap {
		if b.snapIdx == 0 || b.snapIdx > b.applied {
			return fmt.Errorf("%w: snapshot at index %d is not within the batch's applied indices 1..%d", ErrOutOfOrder, b.snapIdx, b.applied)
		}
		if n := len(c.snaps); n > 0 && b.snapIdx <= c.snaps[n-1] {
			return fmt.Errorf("%w: snapshot at index %d is not after the latest, %d", ErrOutOfOrder, b.snapIdx, c.snaps[n-1])
		}
		if err := b.pb.Set(snapKey(b.key[:0], b.snapIdx), b.snap, nil); err != nil {
			return fmt.Errorf("catalog: commit %d: %w", b.applied, err)
		}
		// Keep the previous snapshot, delete the older ones.
		keep := c.snaps
		if n := len(keep); n > 0 {
			for _, old := range keep[:n-1] {
				if err := b.pb.Delete(snapKey(b.key[:0], old), nil); err != nil {
					return fmt.Errorf("catalog: commit %d: %w", b.applied, err)
				}
			}
			keep = keep[n-1:]
		}
		snaps = append(append([]uint64(nil), keep...), b.snapIdx)
	}
	if c.journal == "" {
		if err := b.pb.Set([]byte(keyMetaJournal), []byte(b.journal), nil); err != nil {
			return fmt.Errorf("catalog: commit %d: %w", b.applied, err)
		}
	}
	var idx [8]byte
	binary.BigEndian.PutUint64(idx[:], b.applied)
	if err := b.pb.Set([]byte(keyMetaApplied), idx[:], nil); err != nil {
		return fmt.Errorf("catalog: commit %d: %w", b.applied, err)
	}
	if err := c.db.Apply(b.pb, pebble.NoSync); err != nil {
		return fmt.Errorf("catalog: commit %d in %s: %w", b.applied, c.dir, err)
	}
	c.journal, c.applied, c.snaps = b.journal, b.applied, snaps
	return nil
}
