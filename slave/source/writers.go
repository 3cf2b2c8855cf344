package source

import (
	"context"
	"fmt"
	"hash/maphash"
	"io/fs"
	"sync"
	"sync/atomic"
	"time"
)

// A restore spends most of its time creating files: each is an openat, a
// write or more, an fchown, an fchmod, a utimensat and a close, each a trip
// into the kernel. The restore's goroutine reads the stream, checks every
// entry and makes the directories and symlinks itself; it hands files to
// restoreWriters goroutines that create and write them, so the kernel's work
// is spread over the cores and overlaps the reading of the stream. Files
// up to bufferedMax bytes are read whole first; larger ones are passed on in
// chunks as they are read. A directory's files all go to the same writer:
// creating files in one directory from several threads only makes them wait
// for the directory's lock.
//
// Only the restore's goroutine looks up directories (dirCache), so every
// check of doc.go happens there, in stream order; a writer gets the
// descriptor of a directory already checked (and keeps it open with a
// reference) and a single clean name, creates it with O_CREAT|O_EXCL|
// O_NOFOLLOW, and touches nothing else. Whatever depends on the files being
// there waits for the writers first (barrier): removing anything from the
// target, the same path coming twice in a stream, the directories' final
// metadata and the check of the result.
const (
	restoreWriters = 3
	// restoreBuffered bounds the file data read and not yet written.
	restoreBuffered = 16 << 20
	// writerQueue is how many files may wait for one writer.
	writerQueue = 256
	// streamChunk is the piece a large file is handed over in.
	streamChunk = 1 << 20
)

// fileJob is one file for a writer.
type fileJob struct {
	name, base string  // name relative to the target; base its last element
	dir        *dirRef // its directory, acquired for the job
	data       []byte  // the whole contents, or nil for a streamed file
	stream     chan []byte
	aborted    atomic.Bool // the stream broke off: the file is incomplete
	uid, gid   int
	mode       fs.FileMode
	atime      time.Time
	mtime      time.Time
}

type writers struct {
	ctx   context.Context
	chown bool
	seed  maphash.Seed
	queue []chan *fileJob // by writer
	exit  sync.WaitGroup  // the goroutines
	busy  sync.WaitGroup  // jobs not finished

	mu       sync.Mutex
	cond     *sync.Cond
	inflight int64 // bytes of data read and not yet written
	err      error // the first failure
	errName  string

	// names of the files handed over (only the restore's goroutine uses
	// it)
	names map[string]bool
}

func startWriters(ctx context.Context, chown bool) *writers {
	w := &writers{ctx: ctx, chown: chown, seed: maphash.MakeSeed(), names: map[string]bool{}}
	w.cond = sync.NewCond(&w.mu)
	for range restoreWriters {
		q := make(chan *fileJob, writerQueue)
		w.queue = append(w.queue, q)
		w.exit.Add(1)
		go w.run(q)
	}
	return w
}

func (w *writers) run(q chan *fileJob) {
	defer w.exit.Done()
	for j := range q {
		err := w.ctx.Err()
		if _, failed := w.failed(); failed != nil && err == nil {
			err = errSkipped
		}
		if err == nil {
			err = w.writeJob(j)
		}
		if j.stream != nil {
			for b := range j.stream { // what a failed job was still sent
				w.done(b)
			}
		}
		j.dir.release()
		if j.data != nil {
			w.done(j.data)
		}
		if err != nil && err != errSkipped {
			w.mu.Lock()
			if w.err == nil {
				w.err, w.errName = err, j.name
			}
			w.mu.Unlock()
			w.cond.Broadcast()
		}
		w.busy.Done()
	}
}

var errSkipped = fmt.Errorf("skipped after another failure")

// done returns a buffer whose bytes are written.
func (w *writers) done(b []byte) {
	w.mu.Lock()
	w.inflight -= int64(len(b))
	w.mu.Unlock()
	w.cond.Broadcast()
	putBuffer(b)
}

func (w *writers) writeJob(j *fileJob) error {
	fd, err := createAt(j.dir.fd, j.base)
	if err != nil {
		return pathErr("open", j.name, err)
	}
	defer closeFD(fd)
	if j.stream == nil {
		if err := writeFD(fd, j.data); err != nil {
			return pathErr("write", j.name, err)
		}
	} else {
		for b := range j.stream {
			err := writeFD(fd, b)
			w.done(b)
			if err != nil {
				return pathErr("write", j.name, err)
			}
		}
		if j.aborted.Load() {
			return errSkipped // the restore fails with the stream's error
		}
	}
	return finishFile(fd, j.dir.fd, j.base, j.name, w.chown, j.uid, j.gid, j.mode, j.atime, j.mtime)
}

// reserve waits until n more bytes may be read ahead of the writers.
func (w *writers) reserve(n int64) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	for w.err == nil && w.inflight > 0 && w.inflight+n > restoreBuffered {
		w.cond.Wait()
	}
	if w.err != nil {
		return fmt.Errorf("entry %q: %w", w.errName, w.err)
	}
	w.inflight += n
	return nil
}

// unreserve gives back bytes reserved and not handed over.
func (w *writers) unreserve(n int64) {
	w.mu.Lock()
	w.inflight -= n
	w.mu.Unlock()
	w.cond.Broadcast()
}

// start hands j to the writer of its directory. For a streamed file, the
// caller then sends its chunks (each reserved first) and closes j.stream.
func (w *writers) start(j *fileJob) {
	w.names[j.name] = true
	w.busy.Add(1)
	w.queue[maphash.String(w.seed, j.dir.path)%uint64(len(w.queue))] <- j
}

// dispatched says whether a file of that name went to the writers before.
func (w *writers) dispatched(name string) bool { return w.names[name] }

// barrier waits until every file handed over is written, and returns the
// first failure.
func (w *writers) barrier() error {
	w.busy.Wait()
	if name, err := w.failed(); err != nil {
		return fmt.Errorf("entry %q: %w", name, err)
	}
	return nil
}

// failed returns the first failure of a writer and the entry it was
// writing.
func (w *writers) failed() (string, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.errName, w.err
}

// stop waits for the writers to finish and end.
func (w *writers) stop() {
	for _, q := range w.queue {
		close(q)
	}
	w.exit.Wait()
}
