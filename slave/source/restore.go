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
	"syscall"
	"time"
)

// DirRestorer restores directory dumps (written by DirPartition.Dump) into a
// target directory. Every filesystem operation goes through an os.Root opened
// on the target, and every entry's parent is checked to be a real directory
// (not a symlink) first, so no entry can make it write outside the target.
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
	root, err := os.OpenRoot(target)
	if err != nil {
		return st, fmt.Errorf("source: restore: %w", err)
	}
	defer root.Close()
	rs := &dirRestore{
		ctx: ctx, root: root, man: man, st: &st,
		dirsOK: map[string]bool{".": true},
		dirs:   map[string]dirMeta{},
		chown:  os.Geteuid() == 0,
	}
	if err := rs.prune(); err != nil {
		return st, fmt.Errorf("source: restore: deleting what the manifest no longer lists: %w", err)
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
		if err := ctx.Err(); err != nil {
			return st, fmt.Errorf("source: restore: %w", err)
		}
		if err := rs.apply(hdr, tr); err != nil {
			return st, fmt.Errorf("source: restore: entry %q: %w", hdr.Name, err)
		}
	}
	if err := rs.finishDirs(); err != nil {
		return st, fmt.Errorf("source: restore: %w", err)
	}
	if err := rs.verify(); err != nil {
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
	root   *os.Root
	man    manifest
	st     *RestoreStats
	chown  bool
	dirsOK map[string]bool // verified real directories; reset when a directory is removed
	dirs   map[string]dirMeta
	dirSeq []string // directories in stream order; metadata applied at the end
}

// prune removes everything in the target that the manifest does not list:
// what was deleted from the volume since the previous dump.
func (rs *dirRestore) prune() error {
	return fs.WalkDir(rs.root.FS(), ".", func(name string, e fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if name == "." {
			return nil
		}
		if _, ok := rs.man.typ[name]; ok {
			return nil
		}
		if err := rs.removeAll(name); err != nil {
			return err
		}
		rs.st.Deleted++
		if e.IsDir() {
			return fs.SkipDir
		}
		return nil
	})
}

// removeAll removes name and, if it is a directory, everything beneath it;
// if permissions forbid it, it makes the directories writable and retries.
func (rs *dirRestore) removeAll(name string) error {
	clear(rs.dirsOK)
	rs.dirsOK["."] = true
	err := rs.root.RemoveAll(name)
	if err == nil || !errors.Is(err, fs.ErrPermission) {
		return err
	}
	_ = rs.root.Chmod(path.Dir(name), 0o700)
	_ = fs.WalkDir(rs.root.FS(), name, func(p string, e fs.DirEntry, err error) error {
		if err == nil && e.IsDir() {
			_ = rs.root.Chmod(p, 0o700)
		}
		return nil
	})
	return rs.root.RemoveAll(name)
}

// removeExisting clears name for a new entry of another kind.
func (rs *dirRestore) removeExisting(name string) error {
	fi, err := rs.root.Lstat(name)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	if fi.IsDir() {
		return rs.removeAll(name)
	}
	err = rs.root.Remove(name)
	if errors.Is(err, fs.ErrPermission) {
		return rs.removeAll(name)
	}
	return err
}

// checkParent makes sure every ancestor of name is a real directory inside
// the target: not missing, not a file, and above all not a symlink, so that
// nothing is ever written "through" a link. Ancestors are checked from the
// top down, so each Lstat only traverses verified directories.
func (rs *dirRestore) checkParent(name string) error {
	var todo []string
	for d := path.Dir(name); !rs.dirsOK[d]; d = path.Dir(d) {
		todo = append(todo, d)
	}
	for i := len(todo) - 1; i >= 0; i-- {
		d := todo[i]
		fi, err := rs.root.Lstat(d)
		if errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("parent directory %q does not exist (not in the dump)", d)
		}
		if err != nil {
			return err
		}
		if fi.Mode()&fs.ModeSymlink != 0 {
			return fmt.Errorf("parent %q is a symlink: refusing to write through it", d)
		}
		if !fi.IsDir() {
			return fmt.Errorf("parent %q is not a directory", d)
		}
		rs.dirsOK[d] = true
	}
	return nil
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
	if name != "." {
		if err := rs.checkParent(name); err != nil {
			return err
		}
	}
	mtime := hdr.ModTime
	atime := hdr.AccessTime
	if atime.IsZero() {
		atime = mtime
	}
	switch typ {
	case 'd':
		return rs.dir(name, hdr, dirMeta{mode: fileMode(hdr.Mode), uid: hdr.Uid, gid: hdr.Gid, mtime: mtime, atime: atime})
	case 'l':
		if hdr.Linkname == "" || bytes.IndexByte([]byte(hdr.Linkname), 0) >= 0 {
			return fmt.Errorf("invalid symlink target %q", hdr.Linkname)
		}
		if err := rs.removeExisting(name); err != nil {
			return err
		}
		// The link is created verbatim, even if it points outside the target:
		// that is what the volume held. Nothing is ever written through it.
		if err := rs.root.Symlink(hdr.Linkname, name); err != nil {
			return err
		}
		if rs.chown {
			if err := rs.root.Lchown(name, hdr.Uid, hdr.Gid); err != nil {
				return err
			}
		}
		dir, err := rs.root.Open(path.Dir(name))
		if err != nil {
			return err
		}
		err = lchtimes(dir, path.Base(name), atime, mtime)
		dir.Close()
		if err != nil {
			return err
		}
		rs.st.Symlinks++
		return nil
	}
	// Regular file: always a fresh inode (O_EXCL), never opened through a
	// symlink (O_NOFOLLOW), written with mode 0600 and given its mode after.
	if err := rs.removeExisting(name); err != nil {
		return err
	}
	f, err := rs.root.OpenFile(name, os.O_WRONLY|os.O_CREATE|os.O_EXCL|syscall.O_NOFOLLOW, 0o600)
	if err != nil {
		return err
	}
	n, err := io.Copy(f, ctxReader{rs.ctx, data})
	rs.st.Bytes += n
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return err
	}
	if rs.chown {
		if err := rs.root.Lchown(name, hdr.Uid, hdr.Gid); err != nil {
			return err
		}
	}
	if err := rs.root.Chmod(name, fileMode(hdr.Mode)); err != nil {
		return err
	}
	if err := rs.root.Chtimes(name, atime, mtime); err != nil {
		return err
	}
	rs.st.Files++
	return nil
}

// dir creates or keeps a directory; its owner, mode and times are applied by
// finishDirs, after everything beneath it is written. Until then it is kept
// writable by its owner so entries can be created in it.
func (rs *dirRestore) dir(name string, hdr *tar.Header, meta dirMeta) error {
	fi, err := rs.root.Lstat(name)
	switch {
	case err == nil && fi.IsDir():
		if fi.Mode().Perm()&0o700 != 0o700 {
			if err := rs.root.Chmod(name, fi.Mode().Perm()|0o700); err != nil {
				return err
			}
		}
	case err == nil || errors.Is(err, fs.ErrNotExist):
		if err == nil {
			if err := rs.removeExisting(name); err != nil {
				return err
			}
		}
		if err := rs.root.Mkdir(name, 0o700); err != nil {
			return err
		}
	default:
		return err
	}
	rs.dirsOK[name] = true
	if _, seen := rs.dirs[name]; !seen {
		rs.dirSeq = append(rs.dirSeq, name)
	}
	rs.dirs[name] = meta
	rs.st.Dirs++
	return nil
}

func (rs *dirRestore) finishDirs() error {
	for _, name := range rs.dirSeq {
		meta := rs.dirs[name]
		if name != "." {
			if err := rs.checkParent(name); err != nil {
				return fmt.Errorf("directory %q: %w", name, err)
			}
		}
		fi, err := rs.root.Lstat(name)
		if err != nil {
			return fmt.Errorf("directory %q: %w", name, err)
		}
		if !fi.IsDir() {
			continue // replaced by a later entry
		}
		if rs.chown {
			if err := rs.root.Lchown(name, meta.uid, meta.gid); err != nil {
				return fmt.Errorf("directory %q: %w", name, err)
			}
		}
		if err := rs.root.Chmod(name, meta.mode); err != nil {
			return fmt.Errorf("directory %q: %w", name, err)
		}
		if err := rs.root.Chtimes(name, meta.atime, meta.mtime); err != nil {
			return fmt.Errorf("directory %q: %w", name, err)
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
		fi, err := rs.root.Lstat(name)
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return fmt.Errorf("verify %q: %w", name, err)
		}
		var got byte
		switch {
		case fi.IsDir():
			got = 'd'
		case fi.Mode().IsRegular():
			got = 'f'
		case fi.Mode()&fs.ModeSymlink != 0:
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
