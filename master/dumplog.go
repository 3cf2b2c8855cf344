package master

import (
	"cmp"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/abs-backup/abs/master/catalog"
	"github.com/abs-backup/abs/statemachine"
)

// DumpLogFile is the crippled master's dump log, in its data directory.
const DumpLogFile = "dumplog"

// ReportLine formats a dump as one line of the volume report and of the
// crippled-mode dump log (the same format, so grep works on both), without
// the newline: tab-separated volume, dump date, tapes (comma-separated, in
// order), increment date (0 for a full dump), server, partition, tape file,
// bytes, SHA-256; dates RFC 3339 UTC.
func ReportLine(d statemachine.Dump) string {
	incr := "0"
	if d.IncrementDate != 0 {
		incr = time.Unix(0, d.IncrementDate).UTC().Format(time.RFC3339)
	}
	return strings.Join([]string{d.Volume, time.Unix(0, d.DumpDate).UTC().Format(time.RFC3339), strings.Join(d.Tapes, ","),
		incr, d.Server, d.Partition, fmt.Sprint(d.File), fmt.Sprint(d.Bytes), d.SHA256}, "\t")
}

// dumpLog is the crippled master's text projection: one line per dump
// recorded, appended and fsynced before the checkpoint that recorded it is
// acknowledged. Like the catalog it is rebuilt from the journal at start,
// so a crash between the journal's fsync and the log's loses no line and
// duplicates none.
type dumpLog struct {
	path string
	f    *os.File
}

// openDumpLog writes the dump log of every dump in cat (in journal order)
// to a new file, fsyncs it, renames it over path, and opens it for appends.
func openDumpLog(path string, cat *catalog.Catalog) (*dumpLog, error) {
	var dumps []statemachine.DumpRecord
	if err := cat.Dumps("", "", "", func(d statemachine.DumpRecord) bool {
		dumps = append(dumps, d)
		return true
	}); err != nil {
		return nil, err
	}
	slices.SortFunc(dumps, func(a, b statemachine.DumpRecord) int { return cmp.Compare(a.Index, b.Index) })
	var b strings.Builder
	for _, d := range dumps {
		b.WriteString(ReportLine(d.Dump))
		b.WriteByte('\n')
	}
	tmp := path + ".new"
	if err := writeSynced(tmp, []byte(b.String())); err != nil {
		return nil, fmt.Errorf("dump log: %w", err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return nil, fmt.Errorf("dump log: %w", err)
	}
	if err := syncDir(filepath.Dir(path)); err != nil {
		return nil, fmt.Errorf("dump log: %w", err)
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, fmt.Errorf("dump log: %w", err)
	}
	return &dumpLog{path: path, f: f}, nil
}

// append writes the lines of the dumps among records and fsyncs them.
func (l *dumpLog) append(records []statemachine.Record) error {
	var b strings.Builder
	for _, r := range records {
		if d, ok := r.(statemachine.DumpRecord); ok {
			b.WriteString(ReportLine(d.Dump))
			b.WriteByte('\n')
		}
	}
	if b.Len() == 0 {
		return nil
	}
	if _, err := l.f.WriteString(b.String()); err != nil {
		return fmt.Errorf("dump log %s: %w", l.path, err)
	}
	if err := l.f.Sync(); err != nil {
		return fmt.Errorf("dump log %s: fsync: %w", l.path, err)
	}
	return nil
}

func (l *dumpLog) close() error { return l.f.Close() }

func writeSynced(path string, data []byte) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}
