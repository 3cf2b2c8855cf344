package source

import (
	"archive/tar"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"path"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// walked is one path found by the first pass of a dump.
type walked struct {
	name string // slash-separated, relative to the volume root; "." is the root
	typ  byte   // manifest type: 'd', 'f' or 'l'
}

// walkVolume lists every directory, regular file and symlink under the
// directory open as rootfd (whose path, for messages, is root), in the order
// of fs.WalkDir: depth first, each directory before its entries, entries
// sorted by name. Other types are counted as skipped, and so is a directory
// that vanished (or was replaced) between being listed and being opened.
func walkVolume(ctx context.Context, rootfd int, root string) ([]walked, int, error) {
	list := []walked{{".", 'd'}}
	skipped := 0
	var walk func(fd int, rel string) error
	walk = func(fd int, rel string) error {
		abs := root
		if rel != "." {
			abs = root + "/" + rel
		}
		ents, err := readDir(fd, abs)
		if err != nil {
			return err
		}
		slices.SortFunc(ents, func(a, b fs.DirEntry) int { return strings.Compare(a.Name(), b.Name()) })
		for _, e := range ents {
			if err := ctx.Err(); err != nil {
				return err
			}
			name := e.Name()
			if rel != "." {
				name = rel + "/" + name
			}
			switch t := e.Type(); {
			case t.IsDir():
				list = append(list, walked{name, 'd'})
				cfd, err := openDirAt(fd, e.Name())
				if vanished(err) {
					skipped++
					continue
				}
				if err != nil {
					return pathErr("open", name, err)
				}
				err = walk(cfd, name)
				closeFD(cfd)
				if err != nil {
					return err
				}
			case t.IsRegular():
				list = append(list, walked{name, 'f'})
			case t&fs.ModeSymlink != 0:
				list = append(list, walked{name, 'l'})
			default:
				skipped++ // sockets, devices, fifos: not backed up (doc.go)
			}
		}
		return nil
	}
	if err := walk(rootfd, "."); err != nil {
		return nil, skipped, err
	}
	return list, skipped, nil
}

// Pass 2 of a dump is a pipeline, because a dump spends most of its time
// waiting for the disk: one file at a time, a cold tree of small files
// reads at a fraction of what the disk does with a few requests in flight.
// A dispatcher walks the list in order, holding the chain of open
// directories, and hands each entry to one of dumpWorkers workers, which
// lstat it and, for a file that is to be dumped, open it and read it whole
// (up to bufferedMax bytes), or read its first prefetchMax bytes and ask
// the kernel to read the rest ahead (larger files, whose rest the writer
// reads). The writer (the caller's goroutine) takes
// the entries in list order and writes them to the tar stream, so the
// stream is exactly what a one-entry-at-a-time dump writes. Entries go to
// workers in batches of dumpBatch. Workers stay at most dumpWindow entries
// and prefetchBudget bytes ahead of the writer.
const (
	dumpWorkers    = 8
	dumpWindow     = 1024
	bufferedMax    = 1 << 20
	prefetchBudget = 16 << 20
	// prefetchMax is how much of a large file is read ahead before the
	// writer reaches it; the kernel is asked to read on up to readAheadMax,
	// and its own read-ahead takes over from there.
	prefetchMax  = 4 << 20
	readAheadMax = 16 << 20
)

// errStopped is what an entry prepared after the writer stopped holds.
var errStopped = errors.New("dump stopped")

// dirRef is an open directory shared by goroutines: a dump's dispatcher and
// workers, a restore's directory cache and file writers. The last release
// closes it.
type dirRef struct {
	path string // relative to the volume root
	fd   int
	err  error // the directory could not be opened; fd is not valid
	refs atomic.Int32
	own  bool // fd is ours to close (not the volume's root descriptor)
}

func (d *dirRef) acquire() *dirRef { d.refs.Add(1); return d }

func (d *dirRef) release() {
	if d.refs.Add(-1) == 0 && d.own && d.err == nil {
		closeFD(d.fd)
	}
}

// prepared is one entry of pass 2, made ready by a worker.
type prepared struct {
	e   walked
	dir *dirRef // its parent; nil for the root

	hdr     *tar.Header // nil: nothing to write (unchanged, or skipped)
	skipped bool        // vanished or changed type since pass 1
	data    []byte      // the contents of a file read whole (len hdr.Size)
	fd      int         // a larger file, open for the writer; -1 if none
	cost    int64       // bytes of prefetchBudget held
	err     error
}

// batch is dumpBatch consecutive entries (fewer at the end), prepared by
// one worker in order: an incremental dump spends a microsecond or two on
// most entries, which would not pay for handing each over on its own.
type batch struct {
	first   int // index in the list of entries[0]
	entries []prepared
	done    chan struct{}
}

const dumpBatch = 32

// budget bounds the bytes read ahead of the writer. The entries of the
// batch the writer waits for are always admitted, so workers never wait
// for each other.
type budget struct {
	mu      sync.Mutex
	cond    *sync.Cond
	used    int64
	headEnd int // entries before it are in a batch the writer waits for or wrote
	quit    bool
}

func (b *budget) acquire(i int, n int64) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	for !b.quit && i >= b.headEnd && b.used+n > prefetchBudget {
		b.cond.Wait()
	}
	if b.quit {
		return false
	}
	b.used += n
	return true
}

// advance gives back release bytes: the writer wrote a batch and waits for
// the next one.
func (b *budget) advance(release int64) {
	b.mu.Lock()
	b.used -= release
	b.headEnd += dumpBatch
	b.mu.Unlock()
	b.cond.Broadcast()
}

func (b *budget) stop() {
	b.mu.Lock()
	b.quit = true
	b.mu.Unlock()
	b.cond.Broadcast()
}

// writeEntries is pass 2: it writes the entries of list to tw, counting
// them in st.
func writeEntries(ctx context.Context, rootfd int, list []walked, threshold time.Time, tw *tar.Writer, st *DumpStats) error {
	bud := &budget{headEnd: dumpBatch}
	bud.cond = sync.NewCond(&bud.mu)
	quit := make(chan struct{})
	order := make(chan *batch, dumpWindow/dumpBatch)
	jobq := make(chan *batch, dumpWindow/dumpBatch)
	var wg sync.WaitGroup
	workers := min(dumpWorkers, max(1, (len(list)+dumpBatch-1)/dumpBatch))
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for b := range jobq {
				for k := range b.entries {
					prepare(ctx, rootfd, &b.entries[k], b.first+k, threshold, bud, quit)
				}
				close(b.done)
			}
		}()
	}

	// The dispatcher.
	wg.Add(1)
	go func() {
		defer wg.Done()
		defer close(order)
		defer close(jobq)
		root := &dirRef{path: ".", fd: rootfd}
		root.acquire()
		stack := []*dirRef{root}
		defer func() {
			for _, d := range stack {
				d.release()
			}
		}()
		for first := 0; first < len(list); first += dumpBatch {
			b := &batch{first: first, done: make(chan struct{})}
			for _, e := range list[first:min(first+dumpBatch, len(list))] {
				p := prepared{e: e, fd: -1}
				if e.name != "." {
					parent := path.Dir(e.name)
					for top := stack[len(stack)-1]; top.path != parent && !isAncestor(top.path, parent); top = stack[len(stack)-1] {
						stack = stack[:len(stack)-1]
						top.release()
					}
					for top := stack[len(stack)-1]; top.path != parent; top = stack[len(stack)-1] {
						next := childToward(top.path, parent)
						d := &dirRef{path: next, own: true}
						d.acquire()
						if top.err != nil {
							d.err = top.err
						} else if d.fd, d.err = openDirAt(top.fd, path.Base(next)); d.err != nil {
							d.err = pathErr("open", next, d.err)
						}
						stack = append(stack, d)
					}
					p.dir = stack[len(stack)-1].acquire()
				}
				b.entries = append(b.entries, p)
			}
			select {
			case order <- b:
			case <-quit:
				b.release(0)
				return
			}
			select {
			case jobq <- b:
			case <-quit:
				close(b.done) // b is in order: the writer's drain releases it
				return
			}
		}
	}()

	stop := func() {
		close(quit)
		bud.stop()
		// Drain: entries dispatched but not written hold descriptors.
		for b := range order {
			<-b.done
			b.release(0)
		}
		wg.Wait()
	}

	buf := make([]byte, 1<<20)
	n := 0
	for b := range order {
		<-b.done
		var cost int64
		for k := range b.entries {
			p := &b.entries[k]
			err := ctx.Err()
			if err == nil {
				if err = p.write(tw, buf, st); err != nil {
					err = fmt.Errorf("%q: %w", p.e.name, err)
				}
			}
			cost += p.cost
			p.release()
			if err != nil {
				b.release(k + 1)
				stop()
				return err
			}
			n++
		}
		bud.advance(cost)
	}
	wg.Wait()
	if err := ctx.Err(); err != nil {
		return err
	}
	if n != len(list) {
		return fmt.Errorf("internal error: %d of %d entries written", n, len(list))
	}
	return nil
}

// release frees what the entries of b from the k-th on hold.
func (b *batch) release(k int) {
	for i := k; i < len(b.entries); i++ {
		b.entries[i].release()
	}
}

// release frees what p holds: its parent directory, its open file, its
// buffer.
func (p *prepared) release() {
	if p.dir != nil {
		p.dir.release()
		p.dir = nil
	}
	if p.fd >= 0 {
		closeFD(p.fd)
		p.fd = -1
	}
	if p.data != nil {
		putBuffer(p.data)
		p.data = nil
	}
}

// isAncestor says whether directory a is a proper ancestor of directory b
// (both relative to the volume root, "." the root).
func isAncestor(a, b string) bool {
	if a == "." {
		return b != "."
	}
	return len(b) > len(a) && b[len(a)] == '/' && b[:len(a)] == a
}

// childToward returns the child of directory a on the way to its
// descendant b.
func childToward(a, b string) string {
	rest := b
	if a != "." {
		rest = b[len(a)+1:]
	}
	if i := strings.IndexByte(rest, '/'); i >= 0 {
		rest = rest[:i]
	}
	if a == "." {
		return rest
	}
	return a + "/" + rest
}

// prepare is a worker's part of entry i: lstat it and, for a file to be
// dumped, open it and read it (or have it read ahead).
func prepare(ctx context.Context, rootfd int, p *prepared, i int, threshold time.Time, bud *budget, quit chan struct{}) {
	select {
	case <-quit:
		p.err = errStopped
		return
	default:
	}
	if err := ctx.Err(); err != nil {
		p.err = err
		return
	}
	dirfd, base := rootfd, ""
	if p.e.name != "." {
		if p.dir.err != nil {
			if vanished(p.dir.err) {
				p.skipped = true
			} else {
				p.err = p.dir.err
			}
			return
		}
		dirfd, base = p.dir.fd, path.Base(p.e.name)
	}
	fi, err := lstatAt(dirfd, base)
	if vanished(err) && base != "" {
		p.skipped = true
		return
	}
	if err != nil {
		p.err = pathErr("lstat", p.e.name, err)
		return
	}
	hdr := &tar.Header{Name: p.e.name, Format: tar.FormatPAX}
	fillOwner(hdr, fi)
	switch {
	case p.e.typ == 'd' && fi.isDir():
		// Every directory goes into every dump, so a restore can create
		// empty ones and set modes and mtimes.
		hdr.Typeflag = tar.TypeDir
		hdr.Name += "/" // the root is "./"
		hdr.Mode = tarMode(fi.mode)
		hdr.ModTime = fi.mtime
		p.hdr = hdr
	case p.e.typ == 'l' && fi.isSymlink():
		if !changedSince(fi, threshold) {
			return
		}
		target, err := readlinkAt(dirfd, base)
		if vanished(err) || notSymlink(err) {
			p.skipped = true
			return
		}
		if err != nil {
			p.err = pathErr("readlink", p.e.name, err)
			return
		}
		hdr.Typeflag = tar.TypeSymlink
		hdr.Linkname = target
		hdr.Mode = 0o777
		hdr.ModTime = fi.mtime
		p.hdr = hdr
	case p.e.typ == 'f' && fi.isRegular():
		if !changedSince(fi, threshold) {
			return
		}
		fd, err := openReadAt(dirfd, base)
		if vanished(err) {
			p.skipped = true // vanished, or replaced by a symlink since the lstat
			return
		}
		if err != nil {
			p.err = pathErr("open", p.e.name, err)
			return
		}
		if fi, err = lstatAt(fd, ""); err != nil {
			closeFD(fd)
			p.err = pathErr("fstat", p.e.name, err)
			return
		}
		if !fi.isRegular() {
			closeFD(fd)
			p.skipped = true
			return
		}
		fillOwner(hdr, fi)
		hdr.Typeflag = tar.TypeReg
		hdr.Mode = tarMode(fi.mode)
		hdr.ModTime = fi.mtime
		hdr.Size = fi.size
		p.hdr = hdr
		if fi.size <= bufferedMax {
			p.cost = fi.size
			if !bud.acquire(i, p.cost) {
				p.cost, p.hdr, p.err = 0, nil, errStopped
				closeFD(fd)
				return
			}
			b := getBuffer(int(fi.size))
			n, err := readFD(fd, b)
			closeFD(fd)
			if err != nil {
				putBuffer(b)
				p.err = pathErr("read", p.e.name, err)
				return
			}
			// A file that shrank while we read it is padded with zeros,
			// like GNU tar: its ctime is after the dump date, so the
			// next incremental carries the right contents.
			clear(b[n:])
			p.data = b
			return
		}
		// A larger file: its first prefetchMax bytes are read here too,
		// the writer reads the rest, with the kernel reading ahead.
		p.cost = min(fi.size, prefetchMax)
		if !bud.acquire(i, p.cost) {
			p.cost, p.hdr, p.err = 0, nil, errStopped
			closeFD(fd)
			return
		}
		readAhead(fd, min(fi.size, readAheadMax))
		b := getBuffer(int(p.cost))
		n, err := readFD(fd, b)
		if err != nil {
			putBuffer(b)
			closeFD(fd)
			p.err = pathErr("read", p.e.name, err)
			return
		}
		clear(b[n:]) // it shrank: padded with zeros (see above)
		p.data = b
		if fi.size > p.cost {
			p.fd = fd
		} else {
			closeFD(fd)
		}
	default:
		p.skipped = true // changed type since pass 1
	}
}

// write writes p to tw and counts it.
func (p *prepared) write(tw *tar.Writer, buf []byte, st *DumpStats) error {
	if p.err != nil {
		return p.err
	}
	if p.skipped {
		st.Skipped++
		return nil
	}
	if p.hdr == nil {
		return nil // unchanged since the increment date
	}
	if err := tw.WriteHeader(p.hdr); err != nil {
		return err
	}
	switch p.hdr.Typeflag {
	case tar.TypeDir:
		st.Dirs++
		return nil
	case tar.TypeSymlink:
		st.Symlinks++
		return nil
	}
	if _, err := tw.Write(p.data); err != nil {
		return err
	}
	left := p.hdr.Size - int64(len(p.data))
	if left == 0 {
		st.Files++
		return nil
	}
	// The rest of a large file, streamed.
	for left > 0 {
		n, err := readFD(p.fd, buf[:min(int64(len(buf)), left)])
		if err != nil {
			return pathErr("read", p.e.name, err)
		}
		if n == 0 {
			// It shrank while we read it: pad with zeros (see above).
			clear(buf)
			for left > 0 {
				k := min(int64(len(buf)), left)
				if _, err := tw.Write(buf[:k]); err != nil {
					return err
				}
				left -= k
			}
			break
		}
		if _, err := tw.Write(buf[:n]); err != nil {
			return err
		}
		left -= int64(n)
	}
	st.Files++
	return nil
}

// Buffers for files read whole come from pools by power-of-two size, so a
// dump of many small files does not allocate (and collect) each one.
var bufferPools [23]sync.Pool // 1 B … 4 MiB classes; prefetchMax is 4 MiB

func bufferClass(n int) int {
	c := 0
	for 1<<c < n {
		c++
	}
	return c
}

func getBuffer(n int) []byte {
	if n == 0 {
		return []byte{}
	}
	c := bufferClass(n)
	if b, ok := bufferPools[c].Get().(*[]byte); ok {
		return (*b)[:n]
	}
	return make([]byte, n, 1<<c)
}

func putBuffer(b []byte) {
	if cap(b) == 0 {
		return
	}
	c := bufferClass(cap(b))
	if 1<<c != cap(b) {
		return
	}
	b = b[:cap(b)]
	bufferPools[c].Put(&b)
}
