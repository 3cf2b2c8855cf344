package journal

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
)

func TestReaderReadAndScanFrom(t *testing.T) {
	dir := t.TempDir()
	buildJournal(t, dir, 512, 100)
	r, err := OpenReader(dir)
	if err != nil {
		t.Fatal(err)
	}
	if r.Identity() != testIdentity || r.LastIndex() != 100 || r.TailDamage() != nil {
		t.Fatalf("reader: %+v %d %v", r.Identity(), r.LastIndex(), r.TailDamage())
	}
	for _, i := range []uint64{1, 2, 17, 50, 99, 100} {
		rec, err := r.Read(i)
		if err != nil || rec.Index != i {
			t.Fatalf("Read(%d): %+v %v", i, rec, err)
		}
		if i > 1 && (!bytes.Equal(rec.Payload, payloadFor(i)) || rec.Epoch != 7 || rec.Time != eventsEntry(i).Time || rec.Type != TypeEvents) {
			t.Fatalf("Read(%d): %+v", i, rec)
		}
	}
	for _, i := range []uint64{0, 101, 1 << 40} {
		if _, err := r.Read(i); !errors.Is(err, ErrNotExist) {
			t.Fatalf("Read(%d): %v", i, err)
		}
	}
	for _, from := range []uint64{0, 1, 2, 33, 100, 101} {
		want := max(from, 1)
		err := r.Scan(from, func(rec Record) error {
			if rec.Index != want {
				return fmt.Errorf("got %d want %d", rec.Index, want)
			}
			want++
			return nil
		})
		if err != nil || want != 101 {
			t.Fatalf("Scan(%d): %v, ended at %d", from, err, want)
		}
	}
	boom := errors.New("boom")
	if err := r.Scan(1, func(Record) error { return boom }); err != boom {
		t.Fatalf("fn error not returned as is: %v", err)
	}
}

// TestReaderNeverModifies runs every Reader method on a journal with a torn
// tail and checks that no file, size or mtime changed.
func TestReaderNeverModifies(t *testing.T) {
	dir := t.TempDir()
	buildJournal(t, dir, 512, 60)
	segs := segmentFiles(t, dir)
	last := filepath.Join(dir, segs[len(segs)-1])
	mustWrite(t, last, append(mustRead(t, last), 0x50, 'A', 'J', 1, 2, 3))
	before := snapshotDir(t, dir)
	r, err := OpenReader(dir)
	if err != nil {
		t.Fatal(err)
	}
	td := r.TailDamage()
	if td == nil || td.CutBytes != 6 || td.Broken != "" {
		t.Fatalf("TailDamage %+v", td)
	}
	if r.LastIndex() != 60 {
		t.Fatalf("LastIndex %d", r.LastIndex())
	}
	if _, err := r.Read(30); err != nil {
		t.Fatal(err)
	}
	if err := r.Scan(1, func(Record) error { return nil }); err != nil {
		t.Fatal(err)
	}
	rep, err := r.Verify()
	if err != nil || rep.Records != 60 || rep.Tail == nil || rep.Segments != len(segs) {
		t.Fatalf("Verify: %+v %v", rep, err)
	}
	if err := r.Refresh(); err != nil {
		t.Fatal(err)
	}
	if d := diffSnapshots(before, snapshotDir(t, dir)); d != "[]" {
		t.Fatalf("reader changed the directory: %s", d)
	}
	if _, err := os.Stat(filepath.Join(dir, "broken")); !os.IsNotExist(err) {
		t.Fatal("reader created broken/")
	}
}

// TestReaderBesideWriter scans concurrently (many goroutines, one Reader
// each plus a shared one) while a writer appends across segments; run it
// with -race. Every scan must see a contiguous, verified prefix.
func TestReaderBesideWriter(t *testing.T) {
	dir := t.TempDir()
	j, err := Create(dir, testIdentity, testOptions(t, 2048))
	if err != nil {
		t.Fatal(err)
	}
	const total = 3000
	shared, err := OpenReader(dir)
	if err != nil {
		t.Fatal(err)
	}
	var done atomic.Bool
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		defer done.Store(true)
		var fs []*Future
		for i := uint64(2); i <= total; i++ {
			fs = append(fs, j.Submit(eventsEntry(i)))
			if len(fs) == 7 {
				for _, f := range fs {
					if _, err := f.Wait(); err != nil {
						t.Error(err)
						return
					}
				}
				fs = fs[:0]
			}
		}
		for _, f := range fs {
			f.Wait()
		}
	}()
	scan := func(r *Reader, exact bool) uint64 {
		want := uint64(1)
		err := r.Scan(1, func(rec Record) error {
			if rec.Index != want || rec.Index > 1 && !bytes.Equal(rec.Payload, payloadFor(rec.Index)) {
				return fmt.Errorf("record %d: %+v", want, rec)
			}
			want++
			return nil
		})
		if err != nil {
			t.Error(err)
		}
		if exact && want-1 != r.LastIndex() || want-1 > r.LastIndex() {
			t.Errorf("scan ended at %d, LastIndex %d", want-1, r.LastIndex())
		}
		return want - 1
	}
	for g := range 6 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var prev uint64
			for !done.Load() {
				var r *Reader
				var err error
				if g%2 == 0 {
					r = shared
					if err := r.Refresh(); err != nil {
						t.Error(err)
						return
					}
				} else if r, err = OpenReader(dir); err != nil {
					t.Error(err)
					return
				}
				n := scan(r, g%2 == 1)
				if g%2 == 1 && n < prev {
					t.Errorf("reader went backwards: %d after %d", n, prev)
				}
				prev = n
			}
		}()
	}
	wg.Wait()
	j.Close()
	if err := shared.Refresh(); err != nil {
		t.Fatal(err)
	}
	if n := scan(shared, true); n != total {
		t.Fatalf("final scan saw %d records", n)
	}
	if rep, err := shared.Verify(); err != nil || rep.Tail != nil {
		t.Fatalf("verify: %+v %v", rep, err)
	}
}
