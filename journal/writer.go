package journal

import (
	"encoding/binary"
	"fmt"
	"os"
	"path/filepath"
	"time"
)

// Entry is what an appender gives: one decision, written as one record.
type Entry struct {
	// Type must be TypeEvents (the identity record is written by Create).
	Type RecordType
	// Epoch is the writer epoch (master incarnation).
	Epoch uint64
	// Time is the appender's clock, unix nanoseconds.
	Time int64
	// Payload is the encoded events, at most MaxPayload bytes. The journal
	// keeps a reference until the entry's future is done: do not modify it
	// before then.
	Payload []byte
}

// Future is the outcome of a Submit.
type Future struct {
	done  chan struct{}
	e     Entry
	index uint64
	err   error
}

// Wait blocks until the entry is durable (on disk, fsynced, and the
// directory fsynced if it opened a segment) or has failed, and returns its
// index. Errors: ErrClosed, ErrFailed (wrapping the write error), or a
// refusal of an invalid entry.
func (f *Future) Wait() (uint64, error) {
	<-f.done
	return f.index, f.err
}

// Done is closed when Wait would not block.
func (f *Future) Done() <-chan struct{} { return f.done }

func (f *Future) resolve(index uint64, err error) {
	f.index, f.err = index, err
	f.e = Entry{}
	close(f.done)
}

func doneFuture(err error) *Future {
	f := &Future{done: make(chan struct{})}
	f.resolve(0, err)
	return f
}

// Submit queues e for the next group commit and returns at once. Indices are
// assigned in Submit order: the n-th successful Submit after LastIndex() == L
// with nothing in flight gets L+n, so a single submitter can predict them.
// An entry that is refused (wrong type, payload too large) consumes no index.
// The queue is not bounded: callers that submit without waiting should bound
// their own backlog.
func (j *Journal) Submit(e Entry) *Future {
	f, _ := j.enqueue(e, false)
	return f
}

// Append submits e and waits until it is durable; it returns its index.
//
// When no commit is in progress, Append commits the group itself, in the
// calling goroutine, instead of waking the writer goroutine and sleeping
// until it is done: the same single-committer group commit, without two
// goroutine hand-offs per commit (which cost as much as a fast fsync). The
// hooks and the Observer are then called from the appender's goroutine.
func (j *Journal) Append(e Entry) (uint64, error) {
	f, lead := j.enqueue(e, true)
	if lead {
		j.lead(f)
	}
	return f.Wait()
}

// enqueue validates e, assigns its index and queues it. If lead is set and
// nobody is committing, the caller gets the commit token (committing) and
// must call j.lead.
func (j *Journal) enqueue(e Entry, lead bool) (*Future, bool) {
	if e.Type != TypeEvents {
		return doneFuture(fmt.Errorf("journal: submit: entry of type %s: only events can be appended", e.Type)), false
	}
	if len(e.Payload) > MaxPayload {
		return doneFuture(fmt.Errorf("journal: submit: payload of %d bytes exceeds MaxPayload (%d)", len(e.Payload), MaxPayload)), false
	}
	f := &Future{done: make(chan struct{}), e: e}
	j.mu.Lock()
	switch {
	case j.failed != nil:
		err := failedErr(j.failed)
		j.mu.Unlock()
		f.resolve(0, err)
		return f, false
	case j.closing:
		j.mu.Unlock()
		f.resolve(0, ErrClosed)
		return f, false
	}
	j.next++
	f.index = j.next
	j.queue = append(j.queue, f)
	leading := false
	if !j.committing {
		if lead {
			j.committing, leading = true, true
		} else {
			j.wake.Signal()
		}
	}
	j.mu.Unlock()
	return f, leading
}

// lead commits groups, holding the commit token, until f is durable, then
// hands whatever was queued meanwhile to the writer goroutine.
func (j *Journal) lead(f *Future) {
	j.commitLoop(f)
	j.mu.Lock()
	j.committing = false
	if len(j.queue) > 0 || j.closing {
		j.wake.Signal() // not otherwise: a needless wake-up costs the next Append
	}
	j.mu.Unlock()
}

// Close stops accepting entries, waits for the writer to commit everything
// already submitted, closes the WAL and releases the lock. After a Fatal it
// still releases the lock, and returns ErrFailed.
func (j *Journal) Close() error {
	j.mu.Lock()
	if j.closed {
		j.mu.Unlock()
		return ErrClosed
	}
	j.closed, j.closing = true, true
	j.wake.Signal()
	j.mu.Unlock()
	<-j.writerDone

	defer j.lock.release()
	j.mu.Lock()
	failed := j.failed
	j.mu.Unlock()
	if failed != nil {
		j.log.Close() // already failed; only frees the descriptor
		return failedErr(failed)
	}
	// wal.Close fsyncs the segment once more; everything was synced already,
	// but an error still means the disk is in trouble.
	if err := j.log.Close(); err != nil {
		err = fmt.Errorf("journal: close %s: %w", j.dir, err)
		j.fail(err, nil)
		return failedErr(err)
	}
	return nil
}

func failedErr(cause error) error {
	return fmt.Errorf("%w: %w", ErrFailed, cause)
}

// writer is the goroutine that commits what Submit queued: whenever nobody
// else holds the commit token and entries are queued, it takes the token and
// commits groups until the queue is empty. It exits when closing with the
// queue empty, or after a failure.
func (j *Journal) writer() {
	defer close(j.writerDone)
	j.mu.Lock()
	defer j.mu.Unlock()
	for {
		switch {
		case j.failed != nil:
			return
		case !j.committing && len(j.queue) > 0:
			j.committing = true
			j.mu.Unlock()
			j.commitLoop(nil)
			j.mu.Lock()
			j.committing = false
		case !j.committing && j.closing:
			return
		default:
			j.wake.Wait()
		}
	}
}

// commitLoop commits groups until the queue is empty or, for a leading
// Append (own != nil), until own's group is durable. The caller holds the
// commit token.
//
// The futures of a group are resolved once it is durable, but when another
// group is already queued they are resolved just after that next group is
// written, before its fsync: the waiters then wake and run while the disk
// works, instead of competing for the CPU with the committer between its
// fsync and its next write (on a small machine that competition costs as
// much as the write itself).
func (j *Journal) commitLoop(own *Future) {
	var durable []*Future // committed, not yet resolved
	resolve := func() {
		for _, f := range durable {
			f.resolve(f.index, nil)
		}
		durable = nil
	}
	defer resolve()
	for own == nil || len(durable) == 0 || durable[len(durable)-1].index < own.index {
		j.mu.Lock()
		batch := j.takeLocked()
		j.mu.Unlock()
		if batch == nil {
			return
		}
		if err := j.commit(batch, resolve); err != nil {
			resolve() // they were durable before this batch failed
			j.fail(err, batch)
			return
		}
		j.last.Store(batch[len(batch)-1].index)
		durable = batch // commit called resolve after its write
	}
}

// takeLocked removes the next group from the queue: everything queued, up to
// maxBatchEntries entries or maxBatchBytes of payload (at least one entry).
// It returns nil if the journal failed or the queue is empty. j.mu is held.
func (j *Journal) takeLocked() []*Future {
	if j.failed != nil || len(j.queue) == 0 {
		return nil
	}
	n, bytes := 0, 0
	for n < len(j.queue) && n < maxBatchEntries && (n == 0 || bytes+len(j.queue[n].e.Payload) <= maxBatchBytes) {
		bytes += len(j.queue[n].e.Payload)
		n++
	}
	batch := j.queue[:n:n]
	if n == len(j.queue) {
		j.queue = make([]*Future, 0, n) // the batch keeps the old array
	} else {
		j.queue = j.queue[n:]
	}
	return batch
}

// commit writes one batch durably. The order is the durability contract:
// write all records → fsync the segment → fsync the directory if a segment
// file appeared → (caller) resolve futures. afterWrite is called once the
// batch is written and before its fsync (commitLoop resolves the previous,
// already durable, group there).
func (j *Journal) commit(batch []*Future, afterWrite func()) error {
	h := j.opts.Hooks
	segSize := j.opts.SegmentSize
	j.batch.Clear()
	j.newSegs = j.newSegs[:0]
	segBytes := j.segBytes
	// Replicate wal.writeBatch's cycling rule to know which segment files it
	// creates: before the batch if the segment is already over size, and
	// after any entry that brings it to size or beyond. Each new segment is
	// named by the index of the entry that will be first in it.
	if segBytes > segSize {
		j.newSegs = append(j.newSegs, batch[0].index)
		segBytes = 0
	}
	prev := j.prevCRC
	written := 0
	for _, f := range batch {
		j.scratch = EncodeRecord(j.scratch[:0], Record{
			Index: f.index, Type: f.e.Type, Epoch: f.e.Epoch, Time: f.e.Time, Payload: f.e.Payload, Prev: prev,
		})
		prev = binary.BigEndian.Uint32(j.scratch[len(j.scratch)-4:])
		j.batch.Write(f.index, j.scratch) // copies
		n := uvarintLen(uint64(len(j.scratch))) + len(j.scratch)
		written += n
		segBytes += n
		if segBytes >= segSize {
			j.newSegs = append(j.newSegs, f.index+1)
			segBytes = 0
		}
	}
	first, last := batch[0].index, batch[len(batch)-1].index

	if h.BeforeWrite != nil {
		h.BeforeWrite()
	}
	t0 := time.Now()
	err := j.failpoint("write")
	if err == nil {
		// A cycle inside WriteBatch fsyncs and closes the full segment before
		// creating the next, so a crash leaves a prefix of the batch.
		err = j.log.WriteBatch(&j.batch)
	}
	if err != nil {
		return fmt.Errorf("journal: append %d..%d: write: %w", first, last, err)
	}
	tWrite := time.Since(t0)
	afterWrite()
	if h.AfterWrite != nil {
		h.AfterWrite()
	}
	t1 := time.Now()
	err = j.failpoint("sync")
	if err == nil {
		err = j.log.Sync()
	}
	if err != nil {
		return fmt.Errorf("journal: append %d..%d: fsync: %w", first, last, err)
	}
	if h.AfterSync != nil {
		h.AfterSync()
	}
	if len(j.newSegs) > 0 {
		for _, idx := range j.newSegs {
			if _, err := os.Stat(filepath.Join(j.dir, segmentName(idx))); err != nil {
				panic(fmt.Sprintf("journal: expected wal to create segment %s after writing %d..%d: %v (our model of wal's cycling is wrong)",
					segmentName(idx), first, last, err))
			}
		}
		err = j.failpoint("dirsync")
		if err == nil {
			err = syncDir(j.dir)
		}
		if err == nil {
			// wal keeps the segments it cycled away from in an LRU cache
			// (their whole contents); we never read through wal, so drop them.
			err = j.log.ClearCache()
		}
		if err != nil {
			return fmt.Errorf("journal: append %d..%d: new segment: %w", first, last, err)
		}
		if h.AfterDirSync != nil {
			h.AfterDirSync()
		}
	}
	tSync := time.Since(t1)

	j.prevCRC = prev
	j.segBytes = segBytes
	j.size += int64(written)
	if o := j.opts.Observer; o != nil {
		o.Appended(len(batch), written, tWrite, tSync)
		o.Size(j.size, last)
	}
	return nil
}

func (j *Journal) failpoint(point string) error {
	if j.opts.failpoint == nil {
		return nil
	}
	return j.opts.failpoint(point)
}

// fail records a write error, reports it to Fatal once, and fails the batch
// in flight and everything queued. Fatal runs first: in production it exits
// before any waiter could observe the failure.
func (j *Journal) fail(err error, batch []*Future) {
	j.mu.Lock()
	if j.failed == nil {
		j.failed = err
	}
	ferr := failedErr(j.failed)
	queued := j.queue
	j.queue = nil
	j.wake.Signal() // the writer goroutine exits
	j.mu.Unlock()
	j.fatalOnce.Do(func() { j.opts.Fatal(err) })
	for _, f := range batch {
		f.resolve(0, ferr)
	}
	for _, f := range queued {
		f.resolve(0, ferr)
	}
}

func uvarintLen(x uint64) int {
	n := 1
	for x >= 0x80 {
		x >>= 7
		n++
	}
	return n
}
