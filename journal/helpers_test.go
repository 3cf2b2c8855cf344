package journal

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"sync/atomic"
	"testing"
	"time"
)

// testIdentity is a fixed identity (golden files depend on it).
var testIdentity = Identity{JournalID: "00112233445566778899aabbccddeeff", Realm: "test", Mode: ModeNormal, Created: 1_700_000_000_000_000_000}

// fatalRecorder is a non-exiting Options.Fatal that counts calls.
type fatalRecorder struct {
	calls atomic.Int32
	last  atomic.Pointer[error]
}

func (f *fatalRecorder) fatal(err error) {
	f.calls.Add(1)
	f.last.Store(&err)
}

// testOptions returns options whose Fatal fails the test (no write error is
// expected unless the test injects one).
func testOptions(t testing.TB, segSize int) Options {
	return Options{SegmentSize: segSize, Fatal: func(err error) {
		t.Errorf("unexpected Fatal: %v", err)
	}}
}

func payloadFor(i uint64) []byte {
	return fmt.Appendf(nil, "payload-%06d-%s", i, bytes.Repeat([]byte{byte('a' + i%26)}, int(i%40)))
}

func eventsEntry(i uint64) Entry {
	return Entry{Type: TypeEvents, Epoch: 7, Time: int64(1_700_000_000_000_000_000 + i), Payload: payloadFor(i)}
}

// buildJournal creates a journal in dir with records 2..n carrying
// payloadFor(index), appended one by one, and closes it.
func buildJournal(t testing.TB, dir string, segSize int, n uint64) {
	t.Helper()
	j, err := Create(dir, testIdentity, testOptions(t, segSize))
	if err != nil {
		t.Fatal(err)
	}
	for i := uint64(2); i <= n; i++ {
		idx, err := j.Append(eventsEntry(i))
		if err != nil {
			t.Fatal(err)
		}
		if idx != i {
			t.Fatalf("append got index %d, want %d", idx, i)
		}
	}
	if err := j.Close(); err != nil {
		t.Fatal(err)
	}
}

// checkRecords scans dir with a Reader and checks that records 1..last are
// there with payloadFor(index) for events.
func checkRecords(t testing.TB, dir string, last uint64) {
	t.Helper()
	r, err := OpenReader(dir)
	if err != nil {
		t.Fatal(err)
	}
	if r.LastIndex() != last {
		t.Fatalf("reader LastIndex = %d, want %d", r.LastIndex(), last)
	}
	want := uint64(1)
	err = r.Scan(1, func(rec Record) error {
		if rec.Index != want {
			return fmt.Errorf("got index %d, want %d", rec.Index, want)
		}
		if rec.Index > 1 && !bytes.Equal(rec.Payload, payloadFor(rec.Index)) {
			return fmt.Errorf("index %d: payload %q", rec.Index, rec.Payload)
		}
		want++
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if want != last+1 {
		t.Fatalf("scan stopped at %d, want %d", want-1, last)
	}
}

type fileState struct {
	mode  fs.FileMode
	size  int64
	mtime time.Time
	sum   [32]byte
}

// snapshotDir records every file and directory under dir: mode, size, mtime
// and content hash.
func snapshotDir(t testing.TB, dir string) map[string]fileState {
	t.Helper()
	m := map[string]fileState{}
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		st := fileState{mode: fi.Mode(), size: fi.Size(), mtime: fi.ModTime()}
		if !d.IsDir() {
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			st.sum = sha256.Sum256(b)
		}
		rel, _ := filepath.Rel(dir, p)
		m[rel] = st
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func diffSnapshots(a, b map[string]fileState) string {
	var diffs []string
	for k, va := range a {
		vb, ok := b[k]
		if !ok {
			diffs = append(diffs, k+" removed")
		} else if va != vb {
			diffs = append(diffs, fmt.Sprintf("%s changed: %+v -> %+v", k, va, vb))
		}
	}
	for k := range b {
		if _, ok := a[k]; !ok {
			diffs = append(diffs, k+" added")
		}
	}
	sort.Strings(diffs)
	return fmt.Sprint(diffs)
}

func copyDir(t testing.TB, src, dst string) {
	t.Helper()
	err := filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, p)
		target := filepath.Join(dst, rel)
		if d.IsDir() {
			return os.MkdirAll(target, 0o750)
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		return os.WriteFile(target, b, 0o640)
	})
	if err != nil {
		t.Fatal(err)
	}
}

// segmentFiles lists the segment names in dir.
func segmentFiles(t testing.TB, dir string) []string {
	t.Helper()
	segs, err := listSegments(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, s := range segs {
		names = append(names, s.name)
	}
	return names
}

// entryPos is where a WAL entry sits in a segment file.
type entryPos struct {
	off   int64 // of the uvarint
	hdr   int   // uvarint length
	size  int   // record length
	index uint64
}

// entriesOf parses the entry boundaries of a (clean) segment file.
func entriesOf(t testing.TB, file string) []entryPos {
	t.Helper()
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	first, err := parseSegmentName(filepath.Base(file))
	if err != nil {
		t.Fatal(err)
	}
	var es []entryPos
	for off := 0; off < len(b); {
		size, n := binary.Uvarint(b[off:])
		if n <= 0 || int(size) > len(b)-off-n {
			t.Fatalf("%s: bad entry at %d", file, off)
		}
		es = append(es, entryPos{off: int64(off), hdr: n, size: int(size), index: first + uint64(len(es))})
		off += n + int(size)
	}
	return es
}

func parseSegmentName(name string) (uint64, error) {
	var v uint64
	if len(name) != segNameLen {
		return 0, errors.New("not a segment name")
	}
	_, err := fmt.Sscanf(name, "%d", &v)
	return v, err
}

func mustRead(t testing.TB, p string) []byte {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func mustWrite(t testing.TB, p string, b []byte) {
	t.Helper()
	if err := os.WriteFile(p, b, 0o640); err != nil {
		t.Fatal(err)
	}
}
