package tape

import (
	"hash"
	"os"
	"sync"
)

// Payload writes go through a write-behind stage: FileWriter.Write copies
// the caller's bytes into chunks, and one goroutine per open file hashes
// each chunk and writes it at its offset, while the caller produces the
// next one. The dump stream is produced on one core and hashed and written
// on another; the bytes on the cartridge are the same as with a plain
// buffered writer.
const (
	// chunkSize is the unit handed to the writing goroutine (one pwrite).
	chunkSize = 1 << 20
	// chunksInFlight bounds the memory of one open file: chunks filled
	// and not yet written, plus the one being filled. It absorbs bursts of
	// a dump (a run of small files read ahead).
	chunksInFlight = 8
	// writebackEvery is how many payload bytes are written before the
	// kernel is asked to start writing them back (sync_file_range on
	// Linux), so that the fsync in Close finds little left to do.
	writebackEvery = 8 << 20
)

// writeBehind hashes and writes chunks at consecutive offsets of f, in the
// order they are sent.
type writeBehind struct {
	f      *os.File
	hashes []hash.Hash // every chunk is written to each of them

	ch   chan []byte   // filled chunks, in payload order
	free chan []byte   // empty chunks, ready to be filled
	done chan struct{} // closed when the goroutine has returned

	stopOnce sync.Once

	// Set by the goroutine; read by others only after done is closed,
	// except failed, which may be polled any time.
	mu     sync.Mutex
	err    error
	failed bool
}

func newWriteBehind(f *os.File, off int64, hashes ...hash.Hash) *writeBehind {
	wb := &writeBehind{f: f, hashes: hashes,
		ch:   make(chan []byte, chunksInFlight),
		free: make(chan []byte, chunksInFlight),
		done: make(chan struct{})}
	for range chunksInFlight {
		wb.free <- make([]byte, 0, chunkSize)
	}
	go wb.run(off)
	return wb
}

func (wb *writeBehind) run(off int64) {
	defer close(wb.done)
	synced := off // payload before this offset was handed to writeback
	var err error
	for b := range wb.ch {
		if err == nil {
			for _, h := range wb.hashes {
				h.Write(b)
			}
			_, err = wb.f.WriteAt(b, off)
			off += int64(len(b))
			if err == nil && off-synced >= writebackEvery {
				startWriteback(wb.f, synced, off-synced)
				synced = off
			}
			if err != nil {
				wb.mu.Lock()
				wb.err, wb.failed = err, true
				wb.mu.Unlock()
			}
		}
		wb.free <- b[:0]
	}
}

// chunk returns an empty chunk to fill, waiting for one to be written if
// all are in flight.
func (wb *writeBehind) chunk() []byte { return <-wb.free }

// send queues a filled chunk.
func (wb *writeBehind) send(b []byte) { wb.ch <- b }

// error returns the first write error so far, if any.
func (wb *writeBehind) error() error {
	wb.mu.Lock()
	defer wb.mu.Unlock()
	return wb.err
}

// stop waits until every chunk sent is hashed and written (or dropped
// after an error) and returns the first write error. Nothing may be sent
// after stop; calling it again is harmless.
func (wb *writeBehind) stop() error {
	wb.stopOnce.Do(func() { close(wb.ch) })
	<-wb.done
	return wb.error()
}
