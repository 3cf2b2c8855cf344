package source

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"slices"
	"strings"
	"time"
)

// DirRestorer restores directory dumps (written by DirPartition.Dump) into a
// target directory. Every filesystem operation is relative to a directory
// held open as a descriptor and names a single entry of it without
// following a symlink; directories are opened one name at a time from the
// target's own descriptor, with O_DIRECTORY|O_NOFOLLOW (fsys_unix.go). So
// every entry's parent is a real directory inside the target, and no entry
// can make the restore write outside it.
type DirRestorer struct{}

var _ Restorer = DirRestorer{}

// Restore applies one directory dump stream to target (see doc.go for what
// each entry does). A full dump needs target absent or an empty directory
// (it is created with mode 0700 if absent); an incremental needs the target
// that the previous dumps of the chain were restored into. A refused stream
// may leave target partly restored, but never anything outside it.
func (DirRestorer) Restore(ctx context.Context, target string, r io.Reader, opts RestoreOptions) (RestoreStats, error) {
	var st RestoreStats
	tr := tar.NewReader(&countingReader{r: r, p: opts.Progress})
	h, err := readStreamHeader(tr, sourceDir, opts)
	if err != nil {
		return st, fmt.Errorf("source: restore: %w", err)
	}
	st.Volume, st.Full, st.DumpDate, st.Since = h.volume, h.full, h.dumpDate, h.since
	raw, err := io.ReadAll(tr)
	if err != nil {
		return st, fmt.Errorf("source: restore: manifest: %w", err)
	}
	man, err := parseManifest(raw)
	if err != nil {
		return st, fmt.Errorf("source: restore: %w", err)
	}
	if err := prepareTarget(target, h.full); err != nil {
		return st, fmt.Errorf("source: restore: %w", err)
	}
	rootfd, err := openRootDir(target)
	if err != nil {
		return st, fmt.Errorf("source: restore: %w", pathErr("open", target, err))
	}
	rs := &dirRestore{
		ctx: ctx, target: target, man: man, st: &st, full: h.full,
		dirs:  newDirCache(rootfd),
		meta:  map[string]dirMeta{},
		chown: os.Geteuid() == 0,
	}
	defer rs.dirs.close()
	rs.w = startWriters(ctx, rs.chown)
	defer rs.w.stop()
	if !h.full {
		if err := rs.prune(); err != nil {
			return st, fmt.Errorf("source: restore: deleting what the manifest no longer lists: %w", err)
		}
	}
	last := HeaderName
	entries := 0
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			return st, fmt.Errorf("source: restore: %w", errTruncated(last))
		}
		if err != nil {
			return st, fmt.Errorf("source: restore: entry after %q: %w", last, err)
		}
		if end, err := isTrailer(hdr, entries); err != nil {
			return st, fmt.Errorf("source: restore: %w", err)
		} else if end {
			if _, err := tr.Next(); err != io.EOF {
				return st, fmt.Errorf("source: restore: entries after the end marker (%v)", err)
			}
			break
		}
		entries++
		last = hdr.Name
		if name, err := rs.w.failed(); err != nil {
			return st, fmt.Errorf("source: restore: entry %q: %w", name, err)
		}
		if err := ctx.Err(); err != nil {
			return st, fmt.Errorf("source: restore: %w", err)
		}
		if err := rs.apply(hdr, tr); err != nil {
			return st, fmt.Errorf("source: restore: entry %q: %w", hdr.Name, err)
		}
	}
	if err := rs.w.barrier(); err != nil {
		return st, fmt.Errorf("source: restore: %w", err)
	}
	// The check comes before the directories get their final modes, which
	// may take away the access it needs (when not running as root).
	if err := rs.verify(); err != nil {
		return st, fmt.Errorf("source: restore: %w", err)
	}
	if err := rs.finishDirs(); err != nil {
		return st, fmt.Errorf("source: restore: %w", err)
	}
	return st, nil
}

// manifest is the parsed header entry of a directory dump.
type manifest struct {
	order []string        // as listed
	typ   map[string]byte // 'd', 'f' or 'l'
}

// parseManifest reads records "<type> <path>\x00"; every path must be clean.
func parseManifest(raw []byte) (manifest, error) {
	m := manifest{typ: map[string]byte{}}
	for len(raw) > 0 {
		i := bytes.IndexByte(raw, 0)
		if i < 0 {
			return m, fmt.Errorf("manifest: record %d not terminated by NUL", len(m.order))
		}
		rec := raw[:i]
		raw = raw[i+1:]
		if len(rec) < 3 || rec[1] != ' ' || (rec[0] != 'd' && rec[0] != 'f' && rec[0] != 'l') {
			return m, fmt.Errorf("manifest: record %d: malformed %q", len(m.order), rec)
		}
		name, err := cleanName(string(rec[2:]), rec[0] == 'd')
		if err != nil {
			return m, fmt.Errorf("manifest: record %d: %w", len(m.order), err)
		}
		if _, dup := m.typ[name]; !dup {
			m.order = append(m.order, name)
		}
		m.typ[name] = rec[0]
	}
	return m, nil
}

func prepareTarget(target string, full bool) error {
	fi, err := os.Stat(target)
	switch {
	case errors.Is(err, fs.ErrNotExist) && full:
		return os.MkdirAll(target, 0o700)
	case err != nil:
		return err
	case !fi.IsDir():
		return fmt.Errorf("target %s is not a directory", target)
	case !full:
		return nil
	}
	f, err := os.Open(target)
	if err != nil {
		return err
	}
	defer f.Close()
	if names, _ := f.Readdirnames(1); len(names) > 0 {
		return fmt.Errorf("target %s is not empty: a full dump restores into an empty directory", target)
	}
	return nil
}

type dirMeta struct {
	mode     fs.FileMode
	uid, gid int
	mtime    time.Time
	atime    time.Time
}

type dirRestore struct {
	ctx    context.Context
	target string // for messages
	man    manifest
	st     *RestoreStats
	full   bool // the target was empty: nothing is in the way of an entry
	chown  bool
	dirs   *dirCache // verified real directories, open; reset when anything is removed
	w      *writers  // create and write the files
	meta   map[string]dirMeta
	dirSeq []string // directories in stream order; metadata applied at the end
}

// dirCache holds open descriptors of directories of the target, each
// opened from its parent's with O_DIRECTORY|O_NOFOLLOW, starting at the
// target's own: a descriptor in the cache is a real directory inside the
// target (never reached through a symlink). Removing anything from the
// target resets the cache, so a directory replaced since it was opened is
// looked up again. Descriptors are reference-counted (dirRef): a file
// writer holding one keeps it open across a reset.
type dirCache struct {
	root *dirRef
	refs map[string]*dirRef
}

// dirCacheMax bounds the descriptors a restore keeps open; entries come in
// walk order, so the ones in use are few.
const dirCacheMax = 256

func newDirCache(root int) *dirCache {
	r := &dirRef{path: ".", fd: root, own: true}
	r.acquire()
	return &dirCache{root: r, refs: map[string]*dirRef{}}
}

// get returns a descriptor of directory name ("." is the target), opening
// it and the ancestors not held from the nearest one held. It fails with a
// *parentError if a component is missing, a symlink or not a directory.
// The descriptor is valid until the next call of get, parent or reset;
// acquire the dirRef of getRef to keep it longer.
func (c *dirCache) get(name string) (int, error) {
	r, err := c.getRef(name)
	if err != nil {
		return -1, err
	}
	return r.fd, nil
}

func (c *dirCache) getRef(name string) (*dirRef, error) {
	if len(c.refs) >= dirCacheMax {
		c.reset() // only here: nothing looked up by this call is closed
	}
	return c.lookup(name)
}

func (c *dirCache) lookup(name string) (*dirRef, error) {
	if name == "." {
		return c.root, nil
	}
	if r, ok := c.refs[name]; ok {
		return r, nil
	}
	parent, err := c.lookup(path.Dir(name))
	if err != nil {
		return nil, err
	}
	base := path.Base(name)
	fd, err := openDirAt(parent.fd, base)
	if err != nil {
		// Say what is in the way, as precisely as an lstat can.
		fi, lerr := lstatAt(parent.fd, base)
		switch {
		case errors.Is(lerr, fs.ErrNotExist):
			return nil, &parentError{name, parentMissing}
		case lerr == nil && fi.isSymlink():
			return nil, &parentError{name, parentSymlink}
		case lerr == nil && !fi.isDir():
			return nil, &parentError{name, parentNotDir}
		}
		return nil, pathErr("open", name, err)
	}
	r := &dirRef{path: name, fd: fd, own: true}
	r.acquire()
	c.refs[name] = r
	return r, nil
}

// parent returns a descriptor of name's directory and name's last element.
func (c *dirCache) parent(name string) (int, string, error) {
	fd, err := c.get(path.Dir(name))
	return fd, path.Base(name), err
}

// reset drops every descriptor but the target's (each is closed when the
// last writer using it is done).
func (c *dirCache) reset() {
	for _, r := range c.refs {
		r.release()
	}
	clear(c.refs)
}

func (c *dirCache) close() {
	c.reset()
	c.root.release()
}

// parentError says why an entry's directory cannot be used.
type parentError struct {
	dir  string
	kind int
}

const (
	parentMissing = iota
	parentSymlink
	parentNotDir
)

func (e *parentError) Error() string {
	switch e.kind {
	case parentMissing:
		return fmt.Sprintf("parent directory %q does not exist (not in the dump)", e.dir)
	case parentSymlink:
		return fmt.Sprintf("parent %q is a symlink: refusing to write through it", e.dir)
	}
	return fmt.Sprintf("parent %q is not a directory", e.dir)
}

// prune removes everything in the target that the manifest does not list:
// what was deleted from the volume since the previous dump.
func (rs *dirRestore) prune() error {
	var walk func(dir string) error
	walk = func(dir string) error {
		fd, err := rs.dirs.get(dir)
		if err != nil {
			return err
		}
		abs := rs.target
		if dir != "." {
			abs += "/" + dir
		}
		ents, err := readDir(fd, abs)
		if err != nil {
			return err
		}
		slices.SortFunc(ents, func(a, b fs.DirEntry) int { return strings.Compare(a.Name(), b.Name()) })
		for _, e := range ents {
			name := e.Name()
			if dir != "." {
				name = dir + "/" + name
			}
			if _, ok := rs.man.typ[name]; !ok {
				if err := rs.removeAll(name); err != nil {
					return err
				}
				rs.st.Deleted++
				continue
			}
			if e.IsDir() {
				if err := walk(name); err != nil {
					return err
				}
			}
		}
		return nil
	}
	return walk(".")
}

// removeAll removes name and, if it is a directory, everything beneath it;
// where permissions forbid it, it makes the directories involved writable
// and searchable by their owner and tries again.
func (rs *dirRestore) removeAll(name string) error {
	if err := rs.w.barrier(); err != nil {
		return err
	}
	rs.dirs.reset()
	dirfd, base, err := rs.dirs.parent(name)
	if err != nil {
		return err
	}
	err = removeAt(dirfd, base, name, rs.target)
	if errors.Is(err, fs.ErrPermission) {
		_ = fchmod(dirfd, 0o700)
		err = removeAt(dirfd, base, name, rs.target)
	}
	rs.dirs.reset()
	return err
}

// removeAt removes base of dirfd (name relative to the target, for
// messages) and, if it is a directory, everything beneath it.
func removeAt(dirfd int, base, name, target string) error {
	fi, err := lstatAt(dirfd, base)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return pathErr("lstat", name, err)
	}
	if !fi.isDir() {
		if err := unlinkAt(dirfd, base); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return pathErr("unlink", name, err)
		}
		return nil
	}
	fd, err := openDirAt(dirfd, base)
	if err != nil {
		return pathErr("open", name, err)
	}
	defer closeFD(fd)
	ents, err := readDir(fd, target+"/"+name)
	if errors.Is(err, fs.ErrPermission) {
		_ = fchmod(fd, 0o700)
		ents, err = readDir(fd, target+"/"+name)
	}
	if err != nil {
		return err
	}
	for i, e := range ents {
		err := removeAt(fd, e.Name(), name+"/"+e.Name(), target)
		if errors.Is(err, fs.ErrPermission) && i == 0 {
			_ = fchmod(fd, 0o700)
			err = removeAt(fd, e.Name(), name+"/"+e.Name(), target)
		}
		if err != nil {
			return err
		}
	}
	if err := rmdirAt(dirfd, base); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return pathErr("rmdir", name, err)
	}
	return nil
}

// parent is dirs.parent for an entry, except that a missing directory is
// looked up again once the writers are done: a file still being written
// may be what is in the way, and the error should say so.
func (rs *dirRestore) parent(name string) (int, string, error) {
	fd, base, err := rs.dirs.parent(name)
	var pe *parentError
	if errors.As(err, &pe) && pe.kind == parentMissing {
		if err := rs.w.barrier(); err != nil {
			return -1, "", err
		}
		fd, base, err = rs.dirs.parent(name)
	}
	return fd, base, err
}

// removeExisting clears name for a new entry of another kind.
func (rs *dirRestore) removeExisting(name string) error {
	dirfd, base, err := rs.dirs.parent(name)
	if err != nil {
		return err
	}
	fi, err := lstatAt(dirfd, base)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return pathErr("lstat", name, err)
	}
	if fi.isDir() {
		return rs.removeAll(name)
	}
	err = unlinkAt(dirfd, base)
	if errors.Is(err, fs.ErrPermission) {
		return rs.removeAll(name)
	}
	return pathErr("unlink", name, err)
}

func (rs *dirRestore) apply(hdr *tar.Header, data io.Reader) error {
	if err := checkEntryRecords(hdr); err != nil {
		return err
	}
	var typ byte
	switch hdr.Typeflag {
	case tar.TypeDir:
		typ = 'd'
	case tar.TypeReg:
		typ = 'f'
	case tar.TypeSymlink:
		typ = 'l'
	case tar.TypeLink:
		return fmt.Errorf("hard links are not supported (dumps store linked files as separate copies)")
	default:
		return fmt.Errorf("unsupported entry type %q (dumps hold only files, directories and symlinks)", hdr.Typeflag)
	}
	name, err := cleanName(hdr.Name, typ == 'd')
	if err != nil {
		return err
	}
	if want, ok := rs.man.typ[name]; !ok {
		return fmt.Errorf("not listed in the manifest")
	} else if want != typ {
		return fmt.Errorf("the manifest lists it as %q, the entry is %q", want, typ)
	}
	mtime := hdr.ModTime
	atime := hdr.AccessTime
	if atime.IsZero() {
		atime = mtime
	}
	if typ == 'd' {
		return rs.dir(name, dirMeta{mode: fileMode(hdr.Mode), uid: hdr.Uid, gid: hdr.Gid, mtime: mtime, atime: atime})
	}
	// Every ancestor must be a real directory of the target, reached
	// without following a symlink: nothing is ever written through a link.
	dirfd, base, err := rs.parent(name)
	if err != nil {
		return err
	}
	if typ == 'l' {
		if hdr.Linkname == "" || strings.IndexByte(hdr.Linkname, 0) >= 0 {
			return fmt.Errorf("invalid symlink target %q", hdr.Linkname)
		}
		// The link is created verbatim, even if it points outside the target:
		// that is what the volume held. Nothing is ever written through it.
		err := symlinkAt(hdr.Linkname, dirfd, base)
		if errors.Is(err, fs.ErrExist) {
			if err := rs.removeExisting(name); err != nil {
				return err
			}
			if dirfd, base, err = rs.dirs.parent(name); err != nil {
				return err
			}
			err = symlinkAt(hdr.Linkname, dirfd, base)
		}
		if err != nil {
			return pathErr("symlink", name, err)
		}
		if rs.chown {
			if err := lchownAt(dirfd, base, hdr.Uid, hdr.Gid); err != nil {
				return pathErr("lchown", name, err)
			}
		}
		if haveLchtimes {
			if err := lchtimesAt(dirfd, base, atime, mtime); err != nil {
				return pathErr("utimensat", name, err)
			}
		}
		rs.st.Symlinks++
		return nil
	}
	// Regular file: always a fresh inode (O_EXCL), never opened through a
	// symlink (O_NOFOLLOW), written with mode 0600 and given its owner, mode
	// and times after, through its own descriptor. Files up to bufferedMax
	// bytes are read here and written by the file writers (writers.go),
	// while this goroutine goes on with the stream.
	again := rs.w.dispatched(name)
	if again {
		// The same path twice in a stream: the later entry wins, as it
		// would one entry at a time.
		if err := rs.w.barrier(); err != nil {
			return err
		}
	}
	if !rs.full || again {
		// What the previous dumps (or entries) left at the path goes first.
		if err := rs.removeExisting(name); err != nil {
			return err
		}
	}
	dir, err := rs.dirs.getRef(path.Dir(name))
	if err != nil {
		return err
	}
	j := &fileJob{name: name, base: path.Base(name), dir: dir.acquire(),
		uid: hdr.Uid, gid: hdr.Gid, mode: fileMode(hdr.Mode), atime: atime, mtime: mtime}
	r := ctxReader{rs.ctx, data}
	if hdr.Size <= bufferedMax {
		if err := rs.w.reserve(hdr.Size); err != nil {
			j.dir.release()
			return err
		}
		j.data = getBuffer(int(hdr.Size))
		if _, err := io.ReadFull(r, j.data); err != nil {
			rs.w.unreserve(hdr.Size)
			putBuffer(j.data)
			j.dir.release()
			return err
		}
		rs.w.start(j)
	} else {
		j.stream = make(chan []byte, 4)
		rs.w.start(j)
		err := func() (err error) {
			defer func() {
				if err != nil {
					j.aborted.Store(true) // the writer leaves the file as it is
				}
				close(j.stream)
			}()
			for left := hdr.Size; left > 0; {
				n := min(streamChunk, left)
				if err := rs.w.reserve(n); err != nil {
					return err
				}
				b := getBuffer(int(n))
				if _, err := io.ReadFull(r, b); err != nil {
					rs.w.unreserve(n)
					putBuffer(b)
					return err
				}
				j.stream <- b
				left -= n
			}
			return nil
		}()
		if err != nil {
			return err
		}
	}
	rs.st.Bytes += hdr.Size
	rs.st.Files++
	return nil
}

// finishFile gives the file just written (open as fd, named base in dirfd)
// its owner (when chown), mode and times.
func finishFile(fd, dirfd int, base, name string, chown bool, uid, gid int, mode fs.FileMode, atime, mtime time.Time) error {
	if chown {
		if err := fchown(fd, uid, gid); err != nil {
			return pathErr("fchown", name, err)
		}
	}
	if err := fchmod(fd, mode); err != nil {
		return pathErr("fchmod", name, err)
	}
	return pathErr("utimensat", name, lchtimesAt(dirfd, base, atime, mtime))
}

// dir creates or keeps a directory; its owner, mode and times are applied by
// finishDirs, after everything beneath it is written. Until then it is kept
// writable by its owner so entries can be created in it.
func (rs *dirRestore) dir(name string, meta dirMeta) error {
	if name == "." {
		fi, err := lstatAt(rs.dirs.root.fd, "")
		if err != nil {
			return pathErr("fstat", name, err)
		}
		if fi.mode.Perm()&0o700 != 0o700 {
			if err := fchmod(rs.dirs.root.fd, fi.mode.Perm()|0o700); err != nil {
				return pathErr("fchmod", name, err)
			}
		}
	} else {
		dirfd, base, err := rs.parent(name)
		if err != nil {
			return err
		}
		err = mkdirAt(dirfd, base, 0o700)
		if errors.Is(err, fs.ErrExist) {
			err = rs.keepDir(name, dirfd, base)
		}
		if err != nil {
			return err
		}
	}
	if _, seen := rs.meta[name]; !seen {
		rs.dirSeq = append(rs.dirSeq, name)
	}
	rs.meta[name] = meta
	rs.st.Dirs++
	return nil
}

// keepDir deals with what is at a directory entry's path already: a
// directory is kept (made writable by its owner), anything else replaced.
func (rs *dirRestore) keepDir(name string, dirfd int, base string) error {
	fi, err := lstatAt(dirfd, base)
	if err != nil {
		return pathErr("lstat", name, err)
	}
	if !fi.isDir() {
		if err := rs.removeExisting(name); err != nil {
			return err
		}
		if dirfd, base, err = rs.dirs.parent(name); err != nil {
			return err
		}
		return pathErr("mkdir", name, mkdirAt(dirfd, base, 0o700))
	}
	if fi.mode.Perm()&0o700 == 0o700 {
		return nil
	}
	fd, err := rs.dirs.get(name)
	if err != nil {
		return err
	}
	return pathErr("fchmod", name, fchmod(fd, fi.mode.Perm()|0o700))
}

// finishDirs sets the owner, times and mode of every directory, deepest
// first, so a directory is still searchable and writable while those
// beneath it are done; times go before the mode, which may take away the
// owner's access.
func (rs *dirRestore) finishDirs() error {
	for i := len(rs.dirSeq) - 1; i >= 0; i-- {
		name := rs.dirSeq[i]
		meta := rs.meta[name]
		fd, err := rs.dirs.get(name)
		if err != nil {
			if name != "." {
				// Replaced by a later entry of another type: nothing to do.
				dirfd, base, perr := rs.dirs.parent(name)
				if perr == nil {
					if fi, lerr := lstatAt(dirfd, base); lerr == nil && !fi.isDir() {
						continue
					}
				}
			}
			return fmt.Errorf("directory %q: %w", name, err)
		}
		if rs.chown {
			if err := fchown(fd, meta.uid, meta.gid); err != nil {
				return fmt.Errorf("directory %q: %w", name, pathErr("fchown", name, err))
			}
		}
		if err := lchtimesAt(fd, ".", meta.atime, meta.mtime); err != nil {
			return fmt.Errorf("directory %q: %w", name, pathErr("utimensat", name, err))
		}
		if err := fchmod(fd, meta.mode); err != nil {
			return fmt.Errorf("directory %q: %w", name, pathErr("fchmod", name, err))
		}
	}
	return nil
}

// verify checks that every path the manifest lists and the target holds has
// the listed type: a mismatch means the chain is broken (a dump missing or
// out of order). Listed paths that are absent are tolerated: they vanished
// while the dump ran.
func (rs *dirRestore) verify() error {
	for _, name := range rs.man.order {
		var fi statInfo
		var err error
		if name == "." {
			fi, err = lstatAt(rs.dirs.root.fd, "")
		} else {
			var dirfd int
			var base string
			dirfd, base, err = rs.dirs.parent(name)
			if pe := (*parentError)(nil); errors.As(err, &pe) && pe.kind == parentMissing {
				continue // its directory is absent too
			}
			if err != nil {
				return fmt.Errorf("verify %q: %w", name, err)
			}
			fi, err = lstatAt(dirfd, base)
		}
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return fmt.Errorf("verify %q: %w", name, pathErr("lstat", name, err))
		}
		var got byte
		switch {
		case fi.isDir():
			got = 'd'
		case fi.isRegular():
			got = 'f'
		case fi.isSymlink():
			got = 'l'
		}
		if want := rs.man.typ[name]; got != want {
			return fmt.Errorf("verify %q: target holds type %q, the manifest lists %q: is the chain complete and in order?", name, got, want)
		}
	}
	return nil
}

type ctxReader struct {
	ctx context.Context
	r   io.Reader
}

func (c ctxReader) Read(b []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.r.Read(b)
}
