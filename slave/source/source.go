package source

import (
	"archive/tar"
	"context"
	"errors"
	"fmt"
	"io"
	"path"
	"strconv"
	"strings"
	"time"
)

// Partition is a place volumes live in and can be dumped from. Implementations:
// DirPartition (a directory whose subdirectories are volumes) and
// CommandPartition (a dump/restore command pair).
type Partition interface {
	// Server is the name of the server holding the partition.
	Server() string
	// Name is the partition's name on that server.
	Name() string
	// Volumes lists the volumes of the partition, sorted.
	Volumes(ctx context.Context) ([]string, error)
	// Dump writes one dump stream (see doc.go) of volume to w: a full dump if
	// since is zero, else an incremental of what changed after since. The
	// returned DumpDate is the value to pass as since for the next
	// incremental. On error the bytes already written to w are garbage.
	Dump(ctx context.Context, volume string, since time.Time, w io.Writer, p Progress) (DumpStats, error)
}

// Restorer applies one dump stream to a restore target. A chain (a full dump,
// then incrementals in order) is applied by calling Restore once per stream
// with RestoreOptions.After set to the previous stream's DumpDate; RestoreChain
// does exactly that.
type Restorer interface {
	Restore(ctx context.Context, target string, r io.Reader, opts RestoreOptions) (RestoreStats, error)
}

// RestoreOptions tune one Restore call. The zero value restores a full dump.
type RestoreOptions struct {
	// After is the DumpDate of the stream applied to target just before this
	// one. Zero: the stream must be a full dump. Non-zero: the stream must be
	// an incremental whose Since is not after After (no gap in the chain) and
	// whose DumpDate is after After (chain order).
	After time.Time
	// Volume, if not empty, is the volume the stream must belong to.
	Volume string
	// Progress, if not nil, is told of the stream bytes consumed.
	Progress Progress
}

// Progress is told how many stream bytes have gone by. It may be nil wherever
// it is accepted.
type Progress interface{ Add(bytes int64) }

// DumpStats describes one dump stream written by Dump.
type DumpStats struct {
	Files, Dirs, Symlinks int       // entries written to the stream (for commands: Files is the number of stdout chunks)
	Listed                int       // paths in the manifest (everything present at dump time)
	Skipped               int       // paths neither dumped nor listed: sockets, devices, fifos, or vanished during the dump
	Bytes                 int64     // bytes written to w (the whole stream, headers included)
	DumpDate              time.Time // taken before the walk (or before the command starts)
	Since                 time.Time // the increment date; zero for a full dump
}

// RestoreStats describes one stream applied by Restore.
type RestoreStats struct {
	Volume          string
	Full            bool
	DumpDate, Since time.Time
	Files, Dirs     int // entries written
	Symlinks        int
	Deleted         int   // paths removed because the manifest no longer lists them
	Bytes           int64 // file content bytes written (for commands: bytes fed to the restore command)
}

// RestoreChain applies streams (a full dump, then incrementals in dump order)
// to target with rs, checking that they form a chain: the first is full, each
// next one is an incremental whose Since is not after the previous DumpDate.
// It stops at the first error; target then holds a partial restore.
func RestoreChain(ctx context.Context, rs Restorer, target string, streams ...io.Reader) error {
	var after time.Time
	var volume string
	for i, r := range streams {
		st, err := rs.Restore(ctx, target, r, RestoreOptions{After: after, Volume: volume})
		if err != nil {
			return fmt.Errorf("source: restore chain: stream %d: %w", i, err)
		}
		after, volume = st.DumpDate, st.Volume
	}
	return nil
}

// Stream format constants; doc.go describes the format in prose.
const (
	// HeaderName is the name of the first entry of every stream, the header
	// entry. It is recognised by its position and its ABS.format record, never
	// by its name, so a volume holding its own ".abs/manifest" round-trips.
	HeaderName = ".abs/manifest"
	// ChunkPrefix names the entries of a command dump: stdout.000000000, ...
	ChunkPrefix = "stdout."

	FormatVersion = "1"

	paxFormat    = "ABS.format"    // "1"
	paxSource    = "ABS.source"    // "dir" or "command"
	paxKind      = "ABS.kind"      // "full" or "incremental"
	paxServer    = "ABS.server"    // informational
	paxPartition = "ABS.partition" // informational
	paxVolume    = "ABS.volume"
	paxDumpDate  = "ABS.dumpdate" // RFC 3339 with nanoseconds, UTC
	paxSince     = "ABS.since"    // RFC 3339 with nanoseconds, UTC; absent for full dumps
	paxEnd       = "ABS.end"      // in the trailer: number of entries between header and trailer

	sourceDir     = "dir"
	sourceCommand = "command"
	kindFull      = "full"
	kindIncr      = "incremental"
)

// ErrNotDump is returned (wrapped) by Restore when the stream does not start
// with an abs header entry: it is not an abs dump at all, or it is damaged.
var ErrNotDump = errors.New("not an abs dump stream")

// streamHeader is what the header entry says.
type streamHeader struct {
	source, volume  string
	full            bool
	dumpDate, since time.Time
}

func (h streamHeader) records(server, partition string) map[string]string {
	rec := map[string]string{
		paxFormat:    FormatVersion,
		paxSource:    h.source,
		paxKind:      kindFull,
		paxServer:    server,
		paxPartition: partition,
		paxVolume:    h.volume,
		paxDumpDate:  h.dumpDate.UTC().Format(time.RFC3339Nano),
	}
	if !h.full {
		rec[paxKind] = kindIncr
		rec[paxSince] = h.since.UTC().Format(time.RFC3339Nano)
	}
	return rec
}

// readStreamHeader reads the first entry of a stream and checks it against
// want (source) and opts. The entry's data (the manifest) is left unread.
func readStreamHeader(tr *tar.Reader, want string, opts RestoreOptions) (streamHeader, error) {
	var h streamHeader
	hdr, err := tr.Next()
	if err != nil {
		if err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		return h, fmt.Errorf("%w: reading header entry: %w", ErrNotDump, err)
	}
	rec := hdr.PAXRecords
	if hdr.Typeflag != tar.TypeReg || hdr.Name != HeaderName || rec[paxFormat] == "" {
		return h, fmt.Errorf("%w: first entry %q is not an abs header", ErrNotDump, hdr.Name)
	}
	if v := rec[paxFormat]; v != FormatVersion {
		return h, fmt.Errorf("%w: unsupported format version %q", ErrNotDump, v)
	}
	h.source, h.volume = rec[paxSource], rec[paxVolume]
	if h.source != want {
		return h, fmt.Errorf("source: stream holds a %q dump, this restorer takes %q dumps", h.source, want)
	}
	if opts.Volume != "" && h.volume != opts.Volume {
		return h, fmt.Errorf("source: stream is a dump of volume %q, not %q", h.volume, opts.Volume)
	}
	if h.dumpDate, err = time.Parse(time.RFC3339Nano, rec[paxDumpDate]); err != nil {
		return h, fmt.Errorf("%w: bad %s: %w", ErrNotDump, paxDumpDate, err)
	}
	switch rec[paxKind] {
	case kindFull:
		h.full = true
		if !opts.After.IsZero() {
			return h, fmt.Errorf("source: full dump of %s given where an incremental after %s was expected", h.dumpDate.Format(time.RFC3339Nano), opts.After.Format(time.RFC3339Nano))
		}
	case kindIncr:
		if h.since, err = time.Parse(time.RFC3339Nano, rec[paxSince]); err != nil {
			return h, fmt.Errorf("%w: bad %s: %w", ErrNotDump, paxSince, err)
		}
		switch {
		case opts.After.IsZero():
			return h, fmt.Errorf("source: incremental dump since %s needs the previous dump of the chain first", h.since.Format(time.RFC3339Nano))
		case h.since.After(opts.After):
			return h, fmt.Errorf("source: chain gap: incremental since %s follows a dump of %s", h.since.Format(time.RFC3339Nano), opts.After.Format(time.RFC3339Nano))
		case !h.dumpDate.After(opts.After):
			return h, fmt.Errorf("source: chain order: incremental of %s follows a dump of %s", h.dumpDate.Format(time.RFC3339Nano), opts.After.Format(time.RFC3339Nano))
		}
	default:
		return h, fmt.Errorf("%w: bad %s %q", ErrNotDump, paxKind, rec[paxKind])
	}
	return h, nil
}

// writeTrailer ends a stream with a PAX global header carrying ABS.end: a
// stream cut at an entry boundary still reads as valid tar, and only the
// missing trailer tells it is truncated. Tar tools ignore the record.
func writeTrailer(tw *tar.Writer, entries int) error {
	return tw.WriteHeader(&tar.Header{
		Typeflag:   tar.TypeXGlobalHeader,
		Name:       "abs-end",
		PAXRecords: map[string]string{paxEnd: strconv.Itoa(entries)},
		Format:     tar.FormatPAX,
	})
}

// isTrailer reports whether hdr is the trailer and checks its entry count.
func isTrailer(hdr *tar.Header, entries int) (bool, error) {
	v, ok := hdr.PAXRecords[paxEnd]
	if hdr.Typeflag != tar.TypeXGlobalHeader || !ok {
		return false, nil
	}
	if v != strconv.Itoa(entries) {
		return true, fmt.Errorf("trailer counts %s entries, the stream held %d", v, entries)
	}
	return true, nil
}

// errTruncated says a stream ended without its trailer.
func errTruncated(last string) error {
	return fmt.Errorf("stream truncated after entry %q: %w (no end marker)", last, io.ErrUnexpectedEOF)
}

// checkEntryRecords refuses entries after the header that carry abs records
// (only the header may) or GNU sparse maps (a tiny entry could expand into a
// huge file; dumps never write them).
func checkEntryRecords(hdr *tar.Header) error {
	for k := range hdr.PAXRecords {
		if strings.HasPrefix(k, "ABS.") {
			return fmt.Errorf("path %q: unexpected abs record %s after the header", hdr.Name, k)
		}
		if strings.HasPrefix(k, "GNU.sparse.") {
			return fmt.Errorf("path %q: sparse files are not supported", hdr.Name)
		}
	}
	return nil
}

// cleanName validates an archive or manifest path and returns it without the
// trailing slash of directories. Only clean relative paths are accepted: no
// leading "/", no "." or ".." components, no empty components, no NUL. The
// volume root is "." and is accepted only when dir is true.
func cleanName(name string, dir bool) (string, error) {
	n := name
	if dir && strings.HasSuffix(n, "/") && n != "/" {
		n = n[:len(n)-1]
	}
	switch {
	case n == "":
		return "", fmt.Errorf("path %q: empty path", name)
	case n == ".":
		if dir {
			return n, nil
		}
		return "", fmt.Errorf("path %q: the volume root must be a directory", name)
	case strings.HasPrefix(n, "/"):
		return "", fmt.Errorf("path %q: absolute path refused", name)
	case strings.ContainsRune(n, 0):
		return "", fmt.Errorf("path %q: NUL in path", name)
	case n == ".." || strings.HasPrefix(n, "../") || path.Clean(n) != n:
		return "", fmt.Errorf("path %q: path is not clean or leaves the target (\"..\")", name)
	}
	return n, nil
}

// countingWriter counts and reports the bytes written through it.
type countingWriter struct {
	w io.Writer
	n int64
	p Progress
}

func (c *countingWriter) Write(b []byte) (int, error) {
	n, err := c.w.Write(b)
	c.n += int64(n)
	if c.p != nil && n > 0 {
		c.p.Add(int64(n))
	}
	return n, err
}

// countingReader reports the bytes read through it.
type countingReader struct {
	r io.Reader
	p Progress
}

func (c *countingReader) Read(b []byte) (int, error) {
	n, err := c.r.Read(b)
	if c.p != nil && n > 0 {
		c.p.Add(int64(n))
	}
	return n, err
}

// validVolume refuses volume names that are not a single path element.
func validVolume(v string) error {
	if v == "" || v == "." || v == ".." || strings.ContainsAny(v, "/\x00") {
		return fmt.Errorf("source: invalid volume name %q", v)
	}
	return nil
}
