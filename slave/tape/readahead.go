package tape

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"sync"
)

// aheadReader reads a payload of a cartridge file with one goroutine that
// reads ahead, in chunks, and hashes what it read, so that the consumer (a
// restore writing files) and the reading and hashing overlap. It checks the
// payload as NewPayloadReader does: at the end of the payload, a size or
// SHA-256 that differs from the trailer's is returned by Read instead of
// io.EOF, and by Close.
type aheadReader struct {
	fi     FileInfo
	path   string
	closer func() error // nil: Close does not read the rest (Drive.Open)

	ch   chan readChunk
	free chan []byte
	quit chan struct{} // closed by Close: the goroutine stops
	done chan struct{} // closed when the goroutine returned

	cur    []byte // unread part of the current chunk
	buf    []byte // the current chunk, handed back when consumed
	term   error  // io.EOF, the verdict, or a read error, once received
	closed bool
	once   sync.Once
}

// readChunks is how many chunks a reader reads ahead of its consumer.
const readChunks = 4

type readChunk struct {
	b   []byte
	err error // set on the last chunk only: io.EOF, a mismatch, or a read error
}

// newAheadReader reads fi's payload from r, which starts at offset off.
func newAheadReader(r io.ReaderAt, off int64, fi FileInfo, path string, closer func() error) *aheadReader {
	a := &aheadReader{fi: fi, path: path, closer: closer,
		ch:   make(chan readChunk, readChunks),
		free: make(chan []byte, readChunks),
		quit: make(chan struct{}),
		done: make(chan struct{})}
	for range readChunks {
		a.free <- make([]byte, chunkSize)
	}
	go a.run(r, off)
	return a
}

func (a *aheadReader) run(r io.ReaderAt, off int64) {
	defer close(a.done)
	h := sha256.New()
	var n int64
	// The payload is read up to its size (what follows it on the cartridge
	// is padding and the trailer); a cartridge that ends before is a
	// mismatch.
	limit := a.fi.Size
	for {
		var buf []byte
		select {
		case buf = <-a.free:
		case <-a.quit:
			return
		}
		want := min(int64(len(buf)), limit-n)
		var m int
		var err error
		if want > 0 {
			m, err = r.ReadAt(buf[:want], off+n)
		} else {
			err = io.EOF
		}
		h.Write(buf[:m])
		n += int64(m)
		if n >= limit {
			err = io.EOF
		}
		if err != nil && errors.Is(err, io.EOF) {
			err = io.EOF
			if sum := hex.EncodeToString(h.Sum(nil)); n != a.fi.Size || sum != a.fi.SHA256 {
				err = &CorruptError{Path: a.path, Offset: a.fi.Offset + BlockSize, File: a.fi.Number,
					Reason: fmt.Sprintf("payload SHA-256 is %s (%d bytes), trailer says %s (%d bytes)", sum, n, a.fi.SHA256, a.fi.Size)}
			}
		}
		if m > 0 {
			select {
			case a.ch <- readChunk{b: buf[:m]}:
			case <-a.quit:
				return
			}
		}
		if err != nil {
			select {
			case a.ch <- readChunk{err: err}:
			case <-a.quit:
			}
			return
		}
		if m == 0 {
			a.free <- buf
		}
	}
}

func (a *aheadReader) Read(b []byte) (int, error) {
	if a.closed {
		return 0, errReaderClosed
	}
	if len(a.cur) == 0 {
		if a.term != nil {
			return 0, a.term
		}
		if a.buf != nil {
			a.free <- a.buf[:cap(a.buf)]
			a.buf = nil
		}
		c := <-a.ch
		if c.err != nil {
			a.term = c.err
			return 0, c.err
		}
		a.buf, a.cur = c.b, c.b
	}
	n := copy(b, a.cur)
	a.cur = a.cur[n:]
	return n, nil
}

// WriteTo lets io.Copy take the chunks as they are.
func (a *aheadReader) WriteTo(w io.Writer) (int64, error) {
	var total int64
	for {
		if len(a.cur) > 0 {
			n, err := w.Write(a.cur)
			total += int64(n)
			a.cur = a.cur[n:]
			if err != nil {
				return total, err
			}
		}
		_, err := a.Read(nil)
		if err == io.EOF {
			return total, nil
		}
		if err != nil {
			return total, err
		}
	}
}

// Close stops the reading goroutine. With a closer (OpenFile), it first
// reads what the consumer left, so a damaged payload is always reported;
// without one (Drive.Open), it reports the verdict only if the consumer read
// to the end.
func (a *aheadReader) Close() error {
	if a.closer != nil && a.term == nil {
		_, _ = io.Copy(io.Discard, a)
	}
	a.once.Do(func() { close(a.quit) })
	<-a.done
	var err error
	if a.closer != nil {
		err = a.closer()
		a.closer = nil
	}
	if a.term != nil && a.term != io.EOF {
		return a.term
	}
	a.closed, a.cur = true, nil // a Read after Close must not wait for the goroutine
	return err
}

var errReaderClosed = errors.New("tape: read from a closed payload reader")
