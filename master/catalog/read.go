package catalog

import (
	"bytes"
	"fmt"
	"math"

	"github.com/cockroachdb/pebble/v2"
	"github.com/vmihailenco/msgpack/v5"

	"github.com/abs-backup/abs/statemachine"
)

// decode decodes a stored value into v, strictly: an unknown field or a
// trailing byte means the value was not written by this version.
func decode(key, val []byte, v any) error {
	r := bytes.NewReader(val)
	dec := msgpack.GetDecoder()
	defer msgpack.PutDecoder(dec)
	dec.Reset(r)
	dec.DisallowUnknownFields(true)
	if err := dec.Decode(v); err != nil {
		return fmt.Errorf("%w: %s: %v", ErrCorrupt, key, err)
	}
	if r.Len() != 0 {
		return fmt.Errorf("%w: %s: %d trailing bytes", ErrCorrupt, key, r.Len())
	}
	return nil
}

// scan calls fn with each key and value under [lower, upper), in key order
// (or reverse). Key and value are valid only during the call.
func (c *Catalog) scan(lower, upper []byte, reverse bool, fn func(k, v []byte) (bool, error)) error {
	if c.closed.Load() {
		return ErrClosed
	}
	it, err := c.db.NewIter(&pebble.IterOptions{LowerBound: lower, UpperBound: upper})
	if err != nil {
		return fmt.Errorf("catalog: scan %s: %w", lower, err)
	}
	var ok bool
	if reverse {
		ok = it.Last()
	} else {
		ok = it.First()
	}
	for ; ok; ok = step(it, reverse) {
		v, err := it.ValueAndErr()
		if err != nil {
			it.Close()
			return fmt.Errorf("catalog: read %s: %w", it.Key(), err)
		}
		more, err := fn(it.Key(), v)
		if err != nil || !more {
			it.Close()
			return err
		}
	}
	if err := it.Close(); err != nil {
		return fmt.Errorf("catalog: scan %s: %w", lower, err)
	}
	return nil
}

func step(it *pebble.Iterator, reverse bool) bool {
	if reverse {
		return it.Prev()
	}
	return it.Next()
}

// scanPrefix scans every key starting with prefix.
func (c *Catalog) scanPrefix(prefix string, fn func(k, v []byte) (bool, error)) error {
	p := []byte(prefix)
	return c.scan(p, prefixEnd(p), false, fn)
}

// each decodes every record under prefix into a T and passes it to fn.
func each[T any](c *Catalog, prefix string, fn func(T) bool) error {
	return c.scanPrefix(prefix, func(k, v []byte) (bool, error) {
		var r T
		if err := decode(k, v, &r); err != nil {
			return false, err
		}
		return fn(r), nil
	})
}

// Job returns the job with ID id, and whether it exists.
func (c *Catalog) Job(id statemachine.JobID) (statemachine.Job, bool, error) {
	if c.closed.Load() {
		return statemachine.Job{}, false, ErrClosed
	}
	key := jobKey(nil, string(id))
	v, ok, err := c.get(key)
	if err != nil || !ok {
		return statemachine.Job{}, false, err
	}
	var j statemachine.Job
	if err := decode(key, v, &j); err != nil {
		return statemachine.Job{}, false, err
	}
	return j, true, nil
}

// Jobs calls fn with every job queued after journal index after (0 for
// all), in queueing order (Job.QueuedIndex), until fn returns false. Pass
// the QueuedIndex of the last job seen to continue a listing.
func (c *Catalog) Jobs(after uint64, fn func(statemachine.Job) bool) error {
	if after == math.MaxUint64 {
		return nil
	}
	lower := jobQKey(nil, after+1, "")
	return c.jobs(lower, false, fn)
}

// JobsReverse calls fn with every job, newest (highest QueuedIndex) first,
// until fn returns false.
func (c *Catalog) JobsReverse(fn func(statemachine.Job) bool) error {
	return c.jobs([]byte(prefixJobQ), true, fn)
}

// jobs walks the queue index from lower and looks up each job. An index
// entry whose job names another QueuedIndex is stale (a job ID queued
// twice, which statemachine never does) and is skipped, so a job is
// listed once, at its current position.
func (c *Catalog) jobs(lower []byte, reverse bool, fn func(statemachine.Job) bool) error {
	var key []byte
	return c.scan(lower, prefixEnd([]byte(prefixJobQ)), reverse, func(k, v []byte) (bool, error) {
		qi, ok := parseIndex(k[len(prefixJobQ):min(len(k), len(prefixJobQ)+indexWidth)])
		if !ok {
			return false, fmt.Errorf("%w: bad queue key %q", ErrCorrupt, k)
		}
		key = jobKey(key[:0], string(v))
		jv, found, err := c.get(key)
		if err != nil {
			return false, err
		}
		if !found {
			return false, fmt.Errorf("%w: %s names job %s, which is not stored", ErrCorrupt, k, v)
		}
		var j statemachine.Job
		if err := decode(key, jv, &j); err != nil {
			return false, err
		}
		if j.QueuedIndex != qi {
			return true, nil
		}
		return fn(j), nil
	})
}

// Dumps calls fn with every dump record of the given server, partition and
// volume (an empty string matches any), in key order: by server,
// partition, volume, then dump date and journal index; until fn returns
// false.
func (c *Catalog) Dumps(server, partition, volume string, fn func(statemachine.DumpRecord) bool) error {
	prefix, exact := dumpPrefix(nil, server, partition, volume)
	return c.scan(prefix, prefixEnd(prefix), false, func(k, v []byte) (bool, error) {
		var d statemachine.DumpRecord
		if err := decode(k, v, &d); err != nil {
			return false, err
		}
		if !exact && ((server != "" && d.Server != server) ||
			(partition != "" && d.Partition != partition) ||
			(volume != "" && d.Volume != volume)) {
			return true, nil
		}
		return fn(d), nil
	})
}

// Tapes calls fn with every tape, by label, until fn returns false.
func (c *Catalog) Tapes(fn func(statemachine.Tape) bool) error {
	return each(c, prefixTape, fn)
}

// Slaves calls fn with every slave, by name, until fn returns false.
func (c *Catalog) Slaves(fn func(statemachine.Slave) bool) error {
	return each(c, prefixSlave, fn)
}

// Volumes calls fn with every volume summary, by server, partition and
// name, until fn returns false.
func (c *Catalog) Volumes(fn func(statemachine.Volume) bool) error {
	return each(c, prefixVol, fn)
}

// Masters calls fn with every master incarnation, by epoch, until fn
// returns false.
func (c *Catalog) Masters(fn func(statemachine.Master) bool) error {
	return each(c, prefixMaster, fn)
}

// Counts counts the records of each kind (by iterating over them).
func (c *Catalog) Counts() (Counts, error) {
	var n Counts
	for _, p := range []struct {
		prefix string
		n      *int
	}{
		{prefixJob, &n.Jobs}, {prefixDump, &n.Dumps}, {prefixTape, &n.Tapes},
		{prefixSlave, &n.Slaves}, {prefixVol, &n.Volumes}, {prefixMaster, &n.Masters},
	} {
		err := c.scanPrefix(p.prefix, func(_, _ []byte) (bool, error) {
			*p.n++
			return true, nil
		})
		if err != nil {
			return Counts{}, err
		}
	}
	return n, nil
}

// LatestSnapshot returns the latest stored snapshot and its index, or 0,
// nil, nil if there is none.
func (c *Catalog) LatestSnapshot() (index uint64, snap []byte, err error) {
	p := []byte(prefixSnap)
	err = c.scan(p, prefixEnd(p), true, func(k, v []byte) (bool, error) {
		i, ok := parseIndex(k[len(p):])
		if !ok {
			return false, fmt.Errorf("%w: bad snapshot key %q", ErrCorrupt, k)
		}
		index, snap = i, bytes.Clone(v)
		return false, nil
	})
	if err != nil {
		return 0, nil, err
	}
	return index, snap, nil
}

// snapshotIndices lists the indices of the stored snapshots, ascending.
func (c *Catalog) snapshotIndices() ([]uint64, error) {
	var out []uint64
	err := c.scanPrefix(prefixSnap, func(k, _ []byte) (bool, error) {
		i, ok := parseIndex(k[len(prefixSnap):])
		if !ok {
			return false, fmt.Errorf("%w: bad snapshot key %q", ErrCorrupt, k)
		}
		out = append(out, i)
		return true, nil
	})
	return out, err
}

// Diff compares the records of c ("a") and other ("b"): every key and value
// except the meta and the snapshots, which legitimately differ between a
// catalog and a fresh replay of the same journal. It returns up to max
// differences (all if max ≤ 0), in key order, as
//
//	only in a: KEY
//	only in b: KEY
//	differs: KEY
//
// and none when the catalogs hold the same records. `abs journal verify`
// uses it to prove the catalog equals a fresh replay.
func (c *Catalog) Diff(other *Catalog, max int) ([]string, error) {
	if c.closed.Load() || other.closed.Load() {
		return nil, ErrClosed
	}
	ia, err := c.db.NewIter(nil)
	if err != nil {
		return nil, fmt.Errorf("catalog: diff: %w", err)
	}
	defer ia.Close()
	ib, err := other.db.NewIter(nil)
	if err != nil {
		return nil, fmt.Errorf("catalog: diff: %w", err)
	}
	defer ib.Close()

	// next positions it on the next compared key at or after its current
	// position, skipping the meta/ and snap/ ranges.
	next := func(it *pebble.Iterator) bool {
		for it.Valid() {
			k := it.Key()
			switch {
			case bytes.HasPrefix(k, []byte(prefixMeta)):
				it.SeekGE(prefixEnd([]byte(prefixMeta)))
			case bytes.HasPrefix(k, []byte(prefixSnap)):
				it.SeekGE(prefixEnd([]byte(prefixSnap)))
			default:
				return true
			}
		}
		return false
	}
	var out []string
	full := func() bool { return max > 0 && len(out) >= max }
	ia.First()
	ib.First()
	okA, okB := next(ia), next(ib)
	for (okA || okB) && !full() {
		var cmp int
		switch {
		case !okA:
			cmp = 1
		case !okB:
			cmp = -1
		default:
			cmp = bytes.Compare(ia.Key(), ib.Key())
		}
		switch {
		case cmp < 0:
			out = append(out, "only in a: "+string(ia.Key()))
			ia.Next()
		case cmp > 0:
			out = append(out, "only in b: "+string(ib.Key()))
			ib.Next()
		default:
			va, err := ia.ValueAndErr()
			if err != nil {
				return nil, fmt.Errorf("catalog: diff: read %s: %w", ia.Key(), err)
			}
			vb, err := ib.ValueAndErr()
			if err != nil {
				return nil, fmt.Errorf("catalog: diff: read %s: %w", ib.Key(), err)
			}
			if !bytes.Equal(va, vb) {
				out = append(out, "differs: "+string(ia.Key()))
			}
			ia.Next()
			ib.Next()
		}
		okA, okB = next(ia), next(ib)
	}
	if err := ia.Error(); err != nil {
		return nil, fmt.Errorf("catalog: diff: %w", err)
	}
	if err := ib.Error(); err != nil {
		return nil, fmt.Errorf("catalog: diff: %w", err)
	}
	return out, nil
}
