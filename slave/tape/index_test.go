package tape_test

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/abs-backup/abs/slave/tape"
	"github.com/abs-backup/abs/slave/tape/tapetest"
)

// TestReloadKnowsTheCartridge: loading a cartridge again in the library
// that wrote it gives the same files as a library opening it afresh (which
// scans it), and appending goes on after them.
func TestReloadKnowsTheCartridge(t *testing.T) {
	lib, path, files := twoFiles(t)
	d, err := lib.Load(0, "A00001")
	if err != nil {
		t.Fatal(err)
	}
	again, err := d.Files()
	if err != nil || fmt.Sprint(again) != fmt.Sprint(files) {
		t.Fatalf("Files after reload: %+v, %v; want %+v", again, err, files)
	}
	w, err := d.Append(tape.FileHeader{Volume: "three", DumpDate: when}, nil)
	if err != nil {
		t.Fatal(err)
	}
	w.Write(tapetest.Data(3, 5000))
	if _, _, err := w.Close(false); err != nil {
		t.Fatal(err)
	}
	d.Unload()

	fresh, err := tape.OpenLibrary(lib.Dir(), 1, 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	d2, err := fresh.Load(0, "A00001")
	if err != nil {
		t.Fatal(err)
	}
	scanned, err := d2.Files()
	if err != nil || len(scanned) != 3 {
		t.Fatalf("fresh library: %+v, %v", scanned, err)
	}
	d2.Unload()
	// The first library still knows it: reading it in another changed
	// nothing.
	d3, err := lib.Load(0, "A00001")
	if err != nil {
		t.Fatal(err)
	}
	defer d3.Unload()
	if again, err := d3.Files(); err != nil || fmt.Sprint(again) != fmt.Sprint(scanned) {
		t.Fatalf("Files: %+v, %v; want %+v", again, err, scanned)
	}
	if _, _, err := tape.List(path); err != nil {
		t.Fatalf("List: %v", err)
	}
}

// TestReloadNoticesChanges: a cartridge changed behind the library's back
// since a drive of the library last held it is scanned again, so the change
// is seen: a torn tail added, a trailer damaged, the file replaced.
func TestReloadNoticesChanges(t *testing.T) {
	for _, tc := range []struct {
		name   string
		change func(t *testing.T, path string, files []tape.FileInfo)
		check  func(t *testing.T, d tape.Drive, lib *tape.FileLibrary)
	}{
		{"garbage appended", func(t *testing.T, path string, files []tape.FileInfo) {
			f, _ := os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0)
			f.Write(make([]byte, 700))
			f.Close()
		}, func(t *testing.T, d tape.Drive, lib *tape.FileLibrary) {
			w, err := d.Append(tape.FileHeader{Volume: "three", DumpDate: when}, nil)
			if err != nil {
				t.Fatal(err)
			}
			w.Close(false)
			if broken, _ := filepath.Glob(filepath.Join(lib.Dir(), tape.BrokenDir, "*.broken")); len(broken) != 1 {
				t.Fatalf("the torn tail was not cut: broken copies %v", broken)
			}
		}},
		{"last trailer damaged in place", func(t *testing.T, path string, files []tape.FileInfo) {
			f, _ := os.OpenFile(path, os.O_WRONLY, 0)
			f.WriteAt([]byte{0xff}, trailerOff(files[1])+40)
			f.Close()
		}, func(t *testing.T, d tape.Drive, lib *tape.FileLibrary) {
			fs, _ := d.Files()
			if len(fs) != 2 || fs[1].Complete {
				t.Fatalf("file 2 with a damaged trailer listed as %+v", fs)
			}
		}},
		{"first trailer damaged in place", func(t *testing.T, path string, files []tape.FileInfo) {
			f, _ := os.OpenFile(path, os.O_WRONLY, 0)
			f.WriteAt([]byte{0xff}, trailerOff(files[0])+40)
			f.Close()
		}, func(t *testing.T, d tape.Drive, lib *tape.FileLibrary) {
			if _, err := d.Append(tape.FileHeader{Volume: "three", DumpDate: when}, nil); !errors.Is(err, tape.ErrCorrupt) {
				t.Fatalf("Append after damage: %v, want ErrCorrupt", err)
			}
		}},
		{"replaced by a blank cartridge", func(t *testing.T, path string, files []tape.FileInfo) {
			os.Remove(path)
			os.WriteFile(path, nil, 0o640)
		}, func(t *testing.T, d tape.Drive, lib *tape.FileLibrary) {
			if _, err := d.Files(); !errors.Is(err, tape.ErrBlank) {
				t.Fatalf("Files of a blank cartridge: %v", err)
			}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			lib, path, files := twoFiles(t)
			tc.change(t, path, files)
			d, err := lib.Load(0, "A00001")
			if err != nil {
				t.Fatal(err)
			}
			defer d.Unload()
			tc.check(t, d, lib)
		})
	}
}

// TestPayloadReader: the reader of Drive.Open and OpenFile reads ahead;
// it still returns exactly the payload, through Read and io.Copy, stops
// cleanly when closed early, refuses reads after Close, and reports a
// cartridge cut short.
func TestPayloadReader(t *testing.T) {
	dir := t.TempDir()
	tape.NewCartridges(dir, 1, "A")
	lib, _ := tape.OpenLibrary(dir, 1, 64<<20)
	d, _ := lib.Load(0, "A00001")
	if err := d.WriteLabel(tape.Label{Label: "l", Created: when}); err != nil {
		t.Fatal(err)
	}
	payload := tapetest.Data(9, 5<<20+123)
	w, _ := d.Append(tape.FileHeader{Volume: "v", DumpDate: when}, nil)
	for b := payload; len(b) > 0; b = b[min(len(b), 70000):] {
		if _, err := w.Write(b[:min(len(b), 70000)]); err != nil {
			t.Fatal(err)
		}
	}
	if _, _, err := w.Close(false); err != nil {
		t.Fatal(err)
	}

	rc, _ := d.Open(1)
	var got bytes.Buffer
	buf := make([]byte, 777)
	for {
		n, err := rc.Read(buf)
		got.Write(buf[:n])
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	if !bytes.Equal(got.Bytes(), payload) || rc.Close() != nil {
		t.Fatalf("Read: %d bytes, want %d", got.Len(), len(payload))
	}

	rc, _ = d.Open(1)
	got.Reset()
	if _, err := io.Copy(&got, rc); err != nil || !bytes.Equal(got.Bytes(), payload) {
		t.Fatalf("io.Copy: %d bytes, %v", got.Len(), err)
	}
	rc.Close()

	rc, _ = d.Open(1)
	if _, err := io.ReadFull(rc, buf); err != nil {
		t.Fatal(err)
	}
	if err := rc.Close(); err != nil {
		t.Fatalf("Close of a payload read in part: %v", err)
	}
	if _, err := rc.Read(buf); err == nil {
		t.Fatal("Read after Close succeeded")
	}
	files, _ := d.Files()
	d.Unload()

	path := lib.Path("A00001")
	if err := os.Truncate(path, files[0].Offset+512+4<<20); err != nil {
		t.Fatal(err)
	}
	_, rc, err := tape.OpenFile(path, 1)
	if err == nil {
		_, err = io.Copy(io.Discard, rc)
		rc.Close()
	}
	if err == nil {
		t.Fatal("a cartridge cut short read without error")
	}
}

// TestListBlockBoundaries: List hashes payloads while it scans for their
// trailers; payload sizes at and around block and batch boundaries verify,
// and a byte flipped in a last, partial block is caught.
func TestListBlockBoundaries(t *testing.T) {
	sizes := []int{0, 1, 511, 512, 513, 1024, 64 << 10, 64<<10 + 511, 64<<10 + 512, 64<<10 + 513, 200_000}
	dir := t.TempDir()
	tape.NewCartridges(dir, 1, "A")
	lib, _ := tape.OpenLibrary(dir, 1, 64<<20)
	d, _ := lib.Load(0, "A00001")
	d.WriteLabel(tape.Label{Label: "l", Created: when})
	for i, n := range sizes {
		w, err := d.Append(tape.FileHeader{Volume: fmt.Sprint("v", i), DumpDate: when}, nil)
		if err != nil {
			t.Fatal(err)
		}
		w.Write(tapetest.Data(uint64(i), n))
		if _, _, err := w.Close(false); err != nil {
			t.Fatal(err)
		}
	}
	files, _ := d.Files()
	d.Unload()
	path := lib.Path("A00001")
	if _, listed, err := tape.List(path); err != nil || len(listed) != len(sizes) {
		t.Fatalf("List: %d files, %v", len(listed), err)
	}
	b, _ := os.ReadFile(path)
	victim := files[4] // 513 bytes: its second block holds one byte of payload
	b[victim.Offset+512+512] ^= 1
	os.WriteFile(path, b, 0o640)
	_, listed, err := tape.List(path)
	if !errors.Is(err, tape.ErrCorrupt) || !strings.Contains(listed[4].Damage, "SHA-256") {
		t.Fatalf("List after a flipped byte in file 5: %v", err)
	}
	for i, fi := range listed {
		if i != 4 && fi.Damage != "" {
			t.Errorf("file %d: damage %q", i+1, fi.Damage)
		}
	}
}
