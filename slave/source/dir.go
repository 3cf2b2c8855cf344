package source

import (
	"archive/tar"
	"bytes"
	"context"
	"fmt"
	"io"
	"io/fs"
	"os"
	"sort"
	"time"
)

// DefaultTimestampSlack is the TimestampSlack used when DirPartition leaves it
// zero: it covers filesystems with one-second timestamps and the kernel's
// coarse clock lagging behind the clock the dump date is read from.
const DefaultTimestampSlack = time.Second

// DirPartition is a directory whose subdirectories are volumes. The zero value
// of its embedded DirRestorer restores its dumps.
type DirPartition struct {
	ServerName    string
	PartitionName string
	Path          string // the partition directory; volume v is Path/v
	// TimestampSlack widens incrementals: a file is dumped when its mtime or
	// ctime is after since-TimestampSlack. Re-dumping a few unchanged files is
	// harmless; missing a changed one is not. Zero means DefaultTimestampSlack;
	// a negative value means no slack.
	TimestampSlack time.Duration

	DirRestorer
}

var (
	_ Partition = (*DirPartition)(nil)
	_ Restorer  = (*DirPartition)(nil)
)

func (d *DirPartition) Server() string { return d.ServerName }
func (d *DirPartition) Name() string   { return d.PartitionName }

// Volumes lists the subdirectories of Path (symlinks to directories are not
// volumes), sorted.
func (d *DirPartition) Volumes(ctx context.Context) ([]string, error) {
	ents, err := os.ReadDir(d.Path)
	if err != nil {
		return nil, fmt.Errorf("source: partition %s: %w", d.PartitionName, err)
	}
	var vols []string
	for _, e := range ents {
		if e.IsDir() {
			vols = append(vols, e.Name())
		}
	}
	sort.Strings(vols)
	return vols, nil
}

// Dump writes a dump stream of volume (see doc.go). The volume is read
// through directory descriptors opened from the volume's own, one name at a
// time and never through a symlink (fsys_unix.go), so a symlink swapped in
// during the dump cannot make it read outside the volume. An unreadable
// directory or file fails the dump; a path that vanishes during the dump is
// skipped.
func (d *DirPartition) Dump(ctx context.Context, volume string, since time.Time, w io.Writer, p Progress) (DumpStats, error) {
	st := DumpStats{Since: since}
	if err := validVolume(volume); err != nil {
		return st, err
	}
	// The dump date is taken before the walk: whatever changes while we walk
	// has a ctime after it and is caught by the next incremental.
	st.DumpDate = time.Now()
	dir := d.Path + string(os.PathSeparator) + volume
	if fi, err := os.Lstat(dir); err != nil {
		return st, fmt.Errorf("source: dump %s: %w", volume, err)
	} else if !fi.IsDir() {
		return st, fmt.Errorf("source: dump %s: %s is not a directory", volume, volume)
	}
	rootfd, err := openRootDir(dir)
	if err != nil {
		return st, fmt.Errorf("source: dump %s: %w", volume, pathErr("open", dir, err))
	}
	defer closeFD(rootfd)

	// Pass 1: list every path, in sorted order, for the manifest.
	list, skipped, err := walkVolume(ctx, rootfd, dir)
	st.Skipped += skipped
	if err != nil {
		return st, fmt.Errorf("source: dump %s: walk: %w", volume, err)
	}
	var man bytes.Buffer
	for _, e := range list {
		man.WriteByte(e.typ)
		man.WriteByte(' ')
		man.WriteString(e.name)
		man.WriteByte(0)
	}
	st.Listed = len(list)

	cw := &countingWriter{w: w, p: p}
	tw := tar.NewWriter(cw)
	h := streamHeader{source: sourceDir, volume: volume, full: since.IsZero(), dumpDate: st.DumpDate, since: since}
	err = tw.WriteHeader(&tar.Header{
		Typeflag:   tar.TypeReg,
		Name:       HeaderName,
		Mode:       0o444,
		Size:       int64(man.Len()),
		ModTime:    st.DumpDate.Truncate(time.Second),
		PAXRecords: h.records(d.ServerName, d.PartitionName),
		Format:     tar.FormatPAX,
	})
	if err == nil {
		_, err = tw.Write(man.Bytes())
	}
	if err != nil {
		return st, fmt.Errorf("source: dump %s: header: %w", volume, err)
	}

	// Pass 2: write the entries. Paths are lstat'ed again: what vanished or
	// changed type since pass 1 is skipped (the manifest still lists it; the
	// restore tolerates listed paths that are absent).
	threshold := since
	if !since.IsZero() {
		slack := d.TimestampSlack
		if slack == 0 {
			slack = DefaultTimestampSlack
		}
		if slack > 0 {
			threshold = since.Add(-slack)
		}
	}
	if err := writeEntries(ctx, rootfd, list, threshold, tw, &st); err != nil {
		return st, fmt.Errorf("source: dump %s: %w", volume, err)
	}
	if err := writeTrailer(tw, st.Files+st.Dirs+st.Symlinks); err != nil {
		return st, fmt.Errorf("source: dump %s: %w", volume, err)
	}
	if err := tw.Close(); err != nil {
		return st, fmt.Errorf("source: dump %s: %w", volume, err)
	}
	st.Bytes = cw.n
	return st, nil
}

// changedSince reports whether fi's mtime or ctime is not before threshold;
// a zero threshold means a full dump, where everything counts as changed.
func changedSince(fi statInfo, threshold time.Time) bool {
	if threshold.IsZero() {
		return true
	}
	return !fi.mtime.Before(threshold) || !fi.ctime.Before(threshold)
}

type zeroReader struct{}

func (zeroReader) Read(b []byte) (int, error) {
	clear(b)
	return len(b), nil
}

// tarMode converts permission and setuid/setgid/sticky bits to tar's.
func tarMode(m fs.FileMode) int64 {
	v := int64(m.Perm())
	if m&fs.ModeSetuid != 0 {
		v |= 0o4000
	}
	if m&fs.ModeSetgid != 0 {
		v |= 0o2000
	}
	if m&fs.ModeSticky != 0 {
		v |= 0o1000
	}
	return v
}

// fileMode converts tar's mode bits back.
func fileMode(v int64) fs.FileMode {
	m := fs.FileMode(v & 0o777)
	if v&0o4000 != 0 {
		m |= fs.ModeSetuid
	}
	if v&0o2000 != 0 {
		m |= fs.ModeSetgid
	}
	if v&0o1000 != 0 {
		m |= fs.ModeSticky
	}
	return m
}

// fillOwner records numeric ownership; user and group names are not looked
// up (it would make dumps slow and depend on the name service).
func fillOwner(hdr *tar.Header, fi statInfo) {
	hdr.Uid, hdr.Gid = fi.uid, fi.gid
}
