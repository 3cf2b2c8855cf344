package source

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os/exec"
	"slices"
	"strings"
	"time"
)

// DefaultChunkSize is the ChunkSize used when CommandPartition leaves it zero.
const DefaultChunkSize = 8 << 20

// CommandPartition dumps and restores volumes with an external command pair
// (vos dump/restore, zfs send/recv, pg_dump/pg_restore, ...).
//
// The command lines are split into argv like a shell would split words
// (single quotes, double quotes, backslash; nothing else: no variables, no
// globs, no pipes) and run directly, WITHOUT a shell. Placeholders are then
// substituted inside each argument, so a substituted value is always part of
// one argument and can never add arguments or shell syntax:
//
//	{volume}  the volume name
//	{since}   the increment date, RFC 3339 UTC to the second (rounded down);
//	          empty for a full dump
//	{target}  the restore target (restore only)
//
// The dump command's stdout is the dump; the restore command reads it on
// stdin. A command that exits non-zero fails the job, and the error carries
// the last lines of its stderr; stderr of a successful command is ignored.
type CommandPartition struct {
	ServerName     string
	PartitionName  string
	DumpCommand    string   // e.g. "zfs send -i {since} pool/{volume}"
	RestoreCommand string   // e.g. "zfs recv -F {target}"
	VolumeNames    []string // the volumes this partition declares
	Dir            string   // working directory of the commands; empty: the slave's
	// ChunkSize is the largest entry the command's stdout is cut into (the
	// stream size is not known in advance, and a tar entry needs its size up
	// front). Each chunk is buffered in memory. Zero means DefaultChunkSize.
	ChunkSize int
}

var (
	_ Partition = (*CommandPartition)(nil)
	_ Restorer  = (*CommandPartition)(nil)
)

func (c *CommandPartition) Server() string { return c.ServerName }
func (c *CommandPartition) Name() string   { return c.PartitionName }

// Volumes returns the declared volumes, sorted.
func (c *CommandPartition) Volumes(ctx context.Context) ([]string, error) {
	v := slices.Clone(c.VolumeNames)
	slices.Sort(v)
	return v, nil
}

// command prepares line with the placeholders substituted per argument.
func (c *CommandPartition) command(ctx context.Context, line string, vars map[string]string) (*exec.Cmd, error) {
	argv, err := SplitArgs(line)
	if err != nil {
		return nil, err
	}
	if len(argv) == 0 {
		return nil, errors.New("empty command")
	}
	var pairs []string
	for k, v := range vars {
		pairs = append(pairs, "{"+k+"}", v)
	}
	// One pass of a Replacer: a substituted value is never expanded again.
	rep := strings.NewReplacer(pairs...)
	for i := range argv {
		argv[i] = rep.Replace(argv[i])
	}
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	cmd.Dir = c.Dir
	return cmd, nil
}

// Dump runs DumpCommand and writes its stdout into a command dump stream: the
// header entry (empty manifest) then the output cut into chunk entries
// "stdout.000000000", "stdout.000000001", ... (at least one, maybe empty).
func (c *CommandPartition) Dump(ctx context.Context, volume string, since time.Time, w io.Writer, p Progress) (DumpStats, error) {
	st := DumpStats{Since: since}
	if !slices.Contains(c.VolumeNames, volume) {
		return st, fmt.Errorf("source: dump: partition %s has no volume %q", c.PartitionName, volume)
	}
	sinceArg := ""
	if !since.IsZero() {
		sinceArg = since.UTC().Format(time.RFC3339)
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel() // kills the command if we return early
	cmd, err := c.command(ctx, c.DumpCommand, map[string]string{"volume": volume, "since": sinceArg})
	if err != nil {
		return st, fmt.Errorf("source: dump %s: command %q: %w", volume, c.DumpCommand, err)
	}
	stderr := &tailBuffer{}
	cmd.Stderr = stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		return st, fmt.Errorf("source: dump %s: %w", volume, err)
	}
	st.DumpDate = time.Now() // before the command starts
	if err := cmd.Start(); err != nil {
		return st, fmt.Errorf("source: dump %s: %w", volume, err)
	}
	werr := c.writeChunks(w, p, out, streamHeader{source: sourceCommand, volume: volume, full: since.IsZero(), dumpDate: st.DumpDate, since: since}, &st)
	if werr != nil {
		cancel()
	}
	err = cmd.Wait()
	if werr != nil { // we killed the command: our error is the cause
		return st, fmt.Errorf("source: dump %s: %w", volume, werr)
	}
	if err != nil {
		return st, fmt.Errorf("source: dump %s: %s: %w%s", volume, cmd.Args[0], err, stderr.report())
	}
	return st, nil
}

func (c *CommandPartition) writeChunks(w io.Writer, p Progress, out io.Reader, h streamHeader, st *DumpStats) error {
	size := c.ChunkSize
	if size <= 0 {
		size = DefaultChunkSize
	}
	cw := &countingWriter{w: w, p: p}
	tw := tar.NewWriter(cw)
	err := tw.WriteHeader(&tar.Header{
		Typeflag:   tar.TypeReg,
		Name:       HeaderName,
		Mode:       0o444,
		ModTime:    h.dumpDate.Truncate(time.Second),
		PAXRecords: h.records(c.ServerName, c.PartitionName),
		Format:     tar.FormatPAX,
	})
	if err != nil {
		return err
	}
	buf := make([]byte, size)
	for i := 0; ; i++ {
		n, rerr := io.ReadFull(out, buf)
		if rerr != nil && rerr != io.EOF && rerr != io.ErrUnexpectedEOF {
			return rerr
		}
		if n > 0 || i == 0 {
			err := tw.WriteHeader(&tar.Header{
				Typeflag: tar.TypeReg,
				Name:     fmt.Sprintf("%s%09d", ChunkPrefix, i),
				Mode:     0o400,
				Size:     int64(n),
				ModTime:  h.dumpDate.Truncate(time.Second),
				Format:   tar.FormatPAX,
			})
			if err == nil {
				_, err = tw.Write(buf[:n])
			}
			if err != nil {
				return err
			}
			st.Files++
		}
		if rerr != nil {
			break
		}
	}
	if err := writeTrailer(tw, st.Files); err != nil {
		return err
	}
	if err := tw.Close(); err != nil {
		return err
	}
	st.Bytes = cw.n
	return nil
}

// Restore feeds the chunks of a command dump stream, in order, to the stdin
// of RestoreCommand, with {volume} and {since} taken from the stream's header
// and {target} set to target.
func (c *CommandPartition) Restore(ctx context.Context, target string, r io.Reader, opts RestoreOptions) (RestoreStats, error) {
	var st RestoreStats
	tr := tar.NewReader(&countingReader{r: r, p: opts.Progress})
	h, err := readStreamHeader(tr, sourceCommand, opts)
	if err != nil {
		return st, fmt.Errorf("source: restore: %w", err)
	}
	st.Volume, st.Full, st.DumpDate, st.Since = h.volume, h.full, h.dumpDate, h.since
	sinceArg := ""
	if !h.full {
		sinceArg = h.since.UTC().Format(time.RFC3339)
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	cmd, err := c.command(ctx, c.RestoreCommand, map[string]string{"volume": h.volume, "since": sinceArg, "target": target})
	if err != nil {
		return st, fmt.Errorf("source: restore %s: command %q: %w", h.volume, c.RestoreCommand, err)
	}
	stderr := &tailBuffer{}
	cmd.Stderr = stderr
	in := &chunkReader{tr: tr}
	cmd.Stdin = in
	err = cmd.Run()
	st.Bytes = in.n
	if in.err != nil { // the stream was bad: say so, whatever the command did
		return st, fmt.Errorf("source: restore %s: %w", h.volume, in.err)
	}
	if err != nil {
		return st, fmt.Errorf("source: restore %s: %s: %w%s", h.volume, cmd.Args[0], err, stderr.report())
	}
	if !in.done {
		return st, fmt.Errorf("source: restore %s: %s exited before reading the whole dump", h.volume, cmd.Args[0])
	}
	st.Files = in.chunks
	return st, nil
}

// chunkReader concatenates the chunk entries of a command dump, checking
// their names and order.
type chunkReader struct {
	tr     *tar.Reader
	open   bool
	chunks int
	n      int64
	done   bool
	err    error
}

func (c *chunkReader) Read(b []byte) (int, error) {
	for {
		if c.err != nil {
			return 0, c.err
		}
		if c.done {
			return 0, io.EOF
		}
		if c.open {
			n, err := c.tr.Read(b)
			c.n += int64(n)
			if err == io.EOF {
				c.open = false
				if n > 0 {
					return n, nil
				}
				continue
			}
			if err != nil {
				c.err = err
			}
			return n, err
		}
		hdr, err := c.tr.Next()
		switch {
		case err == io.EOF:
			c.err = errTruncated(fmt.Sprintf("%s%09d", ChunkPrefix, c.chunks-1))
			continue
		case err != nil:
			c.err = fmt.Errorf("after chunk %d: %w", c.chunks, err)
			continue
		}
		if end, err := isTrailer(hdr, c.chunks); end || err != nil {
			switch {
			case err != nil:
				c.err = err
			case c.chunks == 0:
				c.err = errors.New("no chunk entry in command dump")
			default:
				if _, err := c.tr.Next(); err != io.EOF {
					c.err = fmt.Errorf("entries after the end marker")
				}
				c.done = true
			}
			continue
		}
		if want := fmt.Sprintf("%s%09d", ChunkPrefix, c.chunks); hdr.Typeflag != tar.TypeReg || hdr.Name != want {
			c.err = fmt.Errorf("entry %q: expected regular entry %q", hdr.Name, want)
			continue
		}
		if err := checkEntryRecords(hdr); err != nil {
			c.err = err
			continue
		}
		c.chunks++
		c.open = true
	}
}

// tailBuffer keeps the last few KiB written to it (a command's stderr).
type tailBuffer struct{ b []byte }

const tailMax = 4 << 10

func (t *tailBuffer) Write(p []byte) (int, error) {
	t.b = append(t.b, p...)
	if len(t.b) > tailMax {
		t.b = append(t.b[:0], t.b[len(t.b)-tailMax:]...)
	}
	return len(p), nil
}

// report returns the last lines of stderr, ready to append to an error.
func (t *tailBuffer) report() string {
	s := strings.TrimSpace(string(bytes.ToValidUTF8(t.b, []byte("?"))))
	if s == "" {
		return ""
	}
	lines := strings.Split(s, "\n")
	if len(lines) > 10 {
		lines = lines[len(lines)-10:]
	}
	return "; stderr: " + strings.Join(lines, " | ")
}

// SplitArgs splits a command line into arguments with simple shell-like
// quoting: blanks separate words; '...' quotes everything literally; "..."
// quotes with backslash escaping only \ " $ and `; outside quotes a backslash
// quotes the next character. Nothing else is special (no $VAR, no globs, no
// ; | & > <): the words are passed to the program as they are.
func SplitArgs(s string) ([]string, error) {
	var args []string
	var cur strings.Builder
	inWord := false
	for i := 0; i < len(s); i++ {
		ch := s[i]
		switch {
		case ch == ' ' || ch == '\t' || ch == '\n':
			if inWord {
				args = append(args, cur.String())
				cur.Reset()
				inWord = false
			}
		case ch == '\'':
			j := strings.IndexByte(s[i+1:], '\'')
			if j < 0 {
				return nil, fmt.Errorf("unterminated single quote at offset %d", i)
			}
			cur.WriteString(s[i+1 : i+1+j])
			i += j + 1
			inWord = true
		case ch == '"':
			start := i
			inWord = true
			for i++; ; i++ {
				if i >= len(s) {
					return nil, fmt.Errorf("unterminated double quote at offset %d", start)
				}
				if s[i] == '"' {
					break
				}
				if s[i] == '\\' && i+1 < len(s) && strings.IndexByte("\\\"$`", s[i+1]) >= 0 {
					i++
				}
				cur.WriteByte(s[i])
			}
		case ch == '\\':
			if i+1 >= len(s) {
				return nil, fmt.Errorf("trailing backslash")
			}
			i++
			cur.WriteByte(s[i])
			inWord = true
		default:
			cur.WriteByte(ch)
			inWord = true
		}
	}
	if inWord {
		args = append(args, cur.String())
	}
	return args, nil
}
