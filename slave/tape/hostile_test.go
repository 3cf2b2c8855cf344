package tape_test

import (
	"bytes"
	"encoding/binary"
	"errors"
	"hash/crc32"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/abs-backup/abs/slave/tape"
	"github.com/abs-backup/abs/slave/tape/tapetest"
)

var when = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

// twoFiles makes a library with one cartridge holding two complete files
// and returns the library, the cartridge's path and the files.
func twoFiles(t *testing.T) (*tape.FileLibrary, string, []tape.FileInfo) {
	t.Helper()
	dir := t.TempDir()
	if _, err := tape.NewCartridges(dir, 1, "A"); err != nil {
		t.Fatal(err)
	}
	lib, err := tape.OpenLibrary(dir, 1, 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	d, err := lib.Load(0, "A00001")
	if err != nil {
		t.Fatal(err)
	}
	if err := d.WriteLabel(tape.Label{Label: "athena-0001", Realm: "athena", Created: when}); err != nil {
		t.Fatal(err)
	}
	for i, vol := range []string{"one", "two"} {
		w, err := d.Append(tape.FileHeader{Volume: vol, DumpDate: when}, nil)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := w.Write(tapetest.Data(uint64(i), 3000+i*1000)); err != nil {
			t.Fatal(err)
		}
		if _, _, err := w.Close(false); err != nil {
			t.Fatal(err)
		}
	}
	files, err := d.Files()
	if err != nil {
		t.Fatal(err)
	}
	if err := d.Unload(); err != nil {
		t.Fatal(err)
	}
	return lib, lib.Path("A00001"), files
}

func reseal(b []byte) {
	binary.BigEndian.PutUint32(b[508:], crc32.Checksum(b[:508], crc32.MakeTable(crc32.Castagnoli)))
}

func trailerOff(fi tape.FileInfo) int64 { return fi.Offset + 512 + (fi.Size+511)/512*512 }

// TestDamagedCartridges: each kind of damage gives a clear error from List,
// Load or Append, never a panic, and valid files are never cut.
func TestDamagedCartridges(t *testing.T) {
	for _, tc := range []struct {
		name   string
		damage func(t *testing.T, b []byte, files []tape.FileInfo) []byte
		// list is a substring of List's error; "" means List succeeds.
		list string
		// load is a substring of Load's error; "" means Load succeeds.
		load string
		// appendErr is a substring of Append's error; "" means Append
		// succeeds (after cutting a torn tail, if cut).
		appendErr string
		cut       bool // Append cuts a torn tail (a .broken copy appears)
		files     int  // complete files after Append (when it succeeds)
	}{
		{name: "truncated mid-payload", damage: func(t *testing.T, b []byte, fs []tape.FileInfo) []byte {
			return b[:fs[1].Offset+512+1234]
		}, list: "file has no trailer (torn)", cut: true, files: 2},
		{name: "partial header block", damage: func(t *testing.T, b []byte, fs []tape.FileInfo) []byte {
			return b[:fs[1].Offset+100]
		}, list: "partial block", cut: true, files: 2},
		{name: "zeroed tail", damage: func(t *testing.T, b []byte, fs []tape.FileInfo) []byte {
			return append(b, make([]byte, 4096)...)
		}, list: "no valid file header", cut: true, files: 3},
		{name: "flipped payload byte", damage: func(t *testing.T, b []byte, fs []tape.FileInfo) []byte {
			b[fs[0].Offset+512+77] ^= 0x20
			return b
		}, list: "payload SHA-256 is", files: 3},
		{name: "bad label CRC", damage: func(t *testing.T, b []byte, fs []tape.FileInfo) []byte {
			b[20] ^= 1
			return b
		}, list: "label record: CRC-32C", load: "label record: CRC-32C"},
		{name: "torn label", damage: func(t *testing.T, b []byte, fs []tape.FileInfo) []byte {
			return b[:100]
		}, list: "torn label write", load: "torn label write"},
		{name: "garbage", damage: func(t *testing.T, b []byte, fs []tape.FileInfo) []byte {
			return tapetest.Data(7, 10_000)
		}, list: "magic is", load: "magic is"},
		{name: "future version", damage: func(t *testing.T, b []byte, fs []tape.FileInfo) []byte {
			b[11] = 9
			reseal(b[:512])
			return b
		}, list: "format version 9", load: "format version 9"},
		{name: "trailer claims absurd size", damage: func(t *testing.T, b []byte, fs []tape.FileInfo) []byte {
			tr := b[trailerOff(fs[1]):]
			binary.BigEndian.PutUint64(tr[32:], 1<<61)
			binary.BigEndian.PutUint64(tr[40:], 1<<61)
			reseal(tr[:512])
			return b
		}, list: "does not end at the trailer", appendErr: "does not end at the trailer"},
		{name: "trailer claims impossible size", damage: func(t *testing.T, b []byte, fs []tape.FileInfo) []byte {
			tr := b[trailerOff(fs[1]):]
			binary.BigEndian.PutUint64(tr[32:], 1<<63)
			reseal(tr[:512])
			return b
		}, list: "file has no trailer", cut: true, files: 2},
		{name: "header with absurd file number", damage: func(t *testing.T, b []byte, fs []tape.FileInfo) []byte {
			h := b[fs[1].Offset:]
			binary.BigEndian.PutUint32(h[8:], 0xffffffff)
			reseal(h[:512])
			return b
		}, list: "no valid file header", appendErr: "valid records follow"},
		{name: "damaged trailer before a valid file", damage: func(t *testing.T, b []byte, fs []tape.FileInfo) []byte {
			b[trailerOff(fs[0])+40] ^= 1
			return b
		}, list: "not cut automatically", appendErr: "not cut automatically"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			lib, path, files := twoFiles(t)
			b, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(path, tc.damage(t, b, files), 0o640); err != nil {
				t.Fatal(err)
			}
			_, _, err = tape.List(path)
			if !errors.Is(err, tape.ErrCorrupt) || !strings.Contains(err.Error(), tc.list) || !strings.Contains(err.Error(), path) {
				t.Fatalf("List: %v; want ErrCorrupt naming %s and %q", err, path, tc.list)
			}
			d, err := lib.Load(0, "A00001")
			if tc.load != "" {
				if !errors.Is(err, tape.ErrCorrupt) || !strings.Contains(err.Error(), tc.load) || !strings.Contains(err.Error(), path) {
					t.Fatalf("Load: %v; want ErrCorrupt naming %s and %q", err, path, tc.load)
				}
				return
			}
			if err != nil {
				t.Fatalf("Load: %v", err)
			}
			defer d.Unload()
			before, _ := os.ReadFile(path)
			w, err := d.Append(tape.FileHeader{Volume: "three", DumpDate: when}, nil)
			if tc.appendErr != "" {
				if !errors.Is(err, tape.ErrCorrupt) || !strings.Contains(err.Error(), tc.appendErr) {
					t.Fatalf("Append: %v; want ErrCorrupt with %q", err, tc.appendErr)
				}
				if after, _ := os.ReadFile(path); !bytes.Equal(before, after) {
					t.Fatal("a refused Append changed the cartridge")
				}
				return
			}
			if err != nil {
				t.Fatalf("Append: %v", err)
			}
			if _, _, err := w.Close(false); err != nil {
				t.Fatal(err)
			}
			broken, _ := filepath.Glob(filepath.Join(lib.Dir(), tape.BrokenDir, "A00001.*.broken"))
			if tc.cut != (len(broken) == 1) {
				t.Fatalf("cut %v, but broken copies: %v", tc.cut, broken)
			}
			fs, err := d.Files()
			if err != nil || len(fs) != tc.files || !fs[len(fs)-1].Complete {
				t.Fatalf("after Append: %d files %+v, %v; want %d", len(fs), fs, err, tc.files)
			}
		})
	}
}

func TestFlippedPayloadByteFailsRead(t *testing.T) {
	lib, path, files := twoFiles(t)
	b, _ := os.ReadFile(path)
	b[files[0].Offset+512+5] ^= 0xff
	if err := os.WriteFile(path, b, 0o640); err != nil {
		t.Fatal(err)
	}
	_, listed, err := tape.List(path)
	var ce *tape.CorruptError
	if !errors.As(err, &ce) || ce.File != 1 || ce.Offset != files[0].Offset+512 {
		t.Fatalf("List: %v; want a CorruptError for file 1 at offset %d", err, files[0].Offset+512)
	}
	if len(listed) != 2 || !strings.Contains(listed[0].Damage, "SHA-256") || listed[1].Damage != "" {
		t.Fatalf("List marks %+v", listed)
	}
	fi, rc, err := tape.OpenFile(path, 1)
	if err != nil || fi.Number != 1 {
		t.Fatalf("OpenFile: %+v, %v", fi, err)
	}
	if _, err := io.ReadAll(rc); !errors.Is(err, tape.ErrCorrupt) {
		t.Fatalf("reading a damaged payload: %v, want ErrCorrupt", err)
	}
	if err := rc.Close(); !errors.Is(err, tape.ErrCorrupt) {
		t.Fatalf("Close after a damaged payload: %v, want ErrCorrupt", err)
	}
	// File 2 is intact and reads fine, through OpenFile and a drive.
	_, rc, err = tape.OpenFile(path, 2)
	if err != nil {
		t.Fatal(err)
	}
	if got, err := io.ReadAll(rc); err != nil || !bytes.Equal(got, tapetest.Data(1, 4000)) {
		t.Fatalf("file 2: %v", err)
	}
	rc.Close()
	d, err := lib.Load(0, "A00001")
	if err != nil {
		t.Fatal(err)
	}
	defer d.Unload()
	rc, err = d.Open(1)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.ReadAll(rc); !errors.Is(err, tape.ErrCorrupt) {
		t.Fatalf("Drive.Open read: %v, want ErrCorrupt", err)
	}
	if _, _, err := tape.OpenFile(path, 3); !errors.Is(err, tape.ErrNoSuchFile) {
		t.Fatalf("OpenFile(3): %v, want ErrNoSuchFile", err)
	}
}

func TestBlankCartridge(t *testing.T) {
	dir := t.TempDir()
	names, err := tape.NewCartridges(dir, 1, "A")
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, names[0]+tape.Suffix)
	if _, _, err := tape.List(path); !errors.Is(err, tape.ErrBlank) {
		t.Fatalf("List of a blank cartridge: %v, want ErrBlank", err)
	}
	f, _ := os.Open(path)
	defer f.Close()
	if _, err := tape.ReadLabel(f); !errors.Is(err, tape.ErrBlank) {
		t.Fatalf("ReadLabel of a blank cartridge: %v, want ErrBlank", err)
	}
}

// TestEndOfTapeExact pins the capacity rule of doc.go for the file format.
func TestEndOfTapeExact(t *testing.T) {
	dir := t.TempDir()
	if _, err := tape.NewCartridges(dir, 1, "A"); err != nil {
		t.Fatal(err)
	}
	const capacity = 64<<10 + 300 // not a whole number of blocks: rounded down
	lib, err := tape.OpenLibrary(dir, 1, capacity)
	if err != nil {
		t.Fatal(err)
	}
	d, _ := lib.Load(0, "A00001")
	defer d.Unload()
	if err := d.WriteLabel(tape.Label{Label: "x"}); err != nil {
		t.Fatal(err)
	}
	w, err := d.Append(tape.FileHeader{Volume: "v"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	n, err := w.Write(make([]byte, 100_000))
	if want := 64<<10 - 3*512; n != want || !errors.Is(err, tape.ErrEndOfTape) {
		t.Fatalf("Write: %d, %v; want %d, ErrEndOfTape", n, err, want)
	}
	if _, _, err := w.Close(true); err != nil {
		t.Fatal(err)
	}
	if st, _ := os.Stat(lib.Path("A00001")); st.Size() != 64<<10 {
		t.Fatalf("full cartridge is %d bytes, want %d", st.Size(), 64<<10)
	}
}

func TestNewCartridges(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "A00007.tape"), []byte("keep me"), 0o640); err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(dir, "B00100.tape"), nil, 0o640)
	names, err := tape.NewCartridges(dir, 3, "A")
	if err != nil || strings.Join(names, ",") != "A00008,A00009,A00010" {
		t.Fatalf("NewCartridges: %v, %v", names, err)
	}
	if b, _ := os.ReadFile(filepath.Join(dir, "A00007.tape")); string(b) != "keep me" {
		t.Fatal("an existing cartridge was changed")
	}
	for _, bad := range []string{"", "A/", "../A", "A1", "ÄB"} {
		if _, err := tape.NewCartridges(dir, 1, bad); err == nil {
			t.Errorf("prefix %q accepted", bad)
		}
	}
	lib, err := tape.OpenLibrary(dir, 1, 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	got, _ := lib.Cartridges()
	if strings.Join(got, ",") != "A00007,A00008,A00009,A00010,B00100" {
		t.Fatalf("Cartridges: %v", got)
	}
	if _, err := tape.OpenLibrary(dir, 0, 1<<20); err == nil {
		t.Error("a library without drives opened")
	}
	if _, err := tape.OpenLibrary(dir, 1, 100); err == nil {
		t.Error("a library with 100-byte cartridges opened")
	}
}

func TestOpenLibraryRemovesLabelTmp(t *testing.T) {
	dir := t.TempDir()
	tmp := filepath.Join(dir, ".A00001.tape.label-tmp")
	os.WriteFile(tmp, []byte("half a label"), 0o640)
	if _, err := tape.OpenLibrary(dir, 1, 1<<20); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(tmp); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("leftover label temp file: %v", err)
	}
}

func TestParseSize(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want int64
		err  string
	}{
		{"4096", 4096, ""},
		{"512MiB", 512 << 20, ""},
		{"10GiB", 10 << 30, ""},
		{"1.5GB", 1_500_000_000, ""},
		{"1.5 kib", 1536, ""},
		{"7B", 7, ""},
		{"2TB", 2e12, ""},
		{"", 0, "no number"},
		{"GiB", 0, "no number"},
		{"-1", 0, "not a decimal number"},
		{"1.2.3", 0, "not a decimal number"},
		{"0.3B", 0, "whole number"},
		{"12 parsecs", 0, "not a decimal number or unit"},
		{"1e3", 0, "not a decimal number"},
		{"100000000PiB", 0, "too large"},
	} {
		got, err := tape.ParseSize(tc.in)
		if tc.err == "" && (err != nil || got != tc.want) {
			t.Errorf("ParseSize(%q) = %d, %v; want %d", tc.in, got, err, tc.want)
		}
		if tc.err != "" && (err == nil || !strings.Contains(err.Error(), tc.err)) {
			t.Errorf("ParseSize(%q) = %d, %v; want an error with %q", tc.in, got, err, tc.err)
		}
	}
}

// FuzzList: List and OpenFile on arbitrary bytes never panic, and what List
// calls complete and undamaged reads back without error.
func FuzzList(f *testing.F) {
	golden, err := os.ReadFile("testdata/golden.tape")
	if err != nil {
		f.Fatal(err)
	}
	f.Add(golden)
	f.Add([]byte{})
	f.Add(golden[:512])
	f.Add(golden[:1500])
	f.Add(append(append([]byte{}, golden...), make([]byte, 700)...))
	flipped := append([]byte{}, golden...)
	flipped[1030] ^= 1
	f.Add(flipped)
	fuzzDir := f.TempDir()
	f.Fuzz(func(t *testing.T, b []byte) {
		path := filepath.Join(fuzzDir, "F00001.tape")
		if err := os.WriteFile(path, b, 0o640); err != nil {
			t.Fatal(err)
		}
		_, files, err := tape.List(path)
		if err != nil && !errors.Is(err, tape.ErrCorrupt) && !errors.Is(err, tape.ErrBlank) {
			t.Fatalf("List: an error that is neither ErrCorrupt nor ErrBlank: %v", err)
		}
		for _, fi := range files {
			_, rc, err := tape.OpenFile(path, fi.Number)
			if !fi.Complete {
				if !errors.Is(err, tape.ErrNoSuchFile) {
					t.Fatalf("OpenFile of torn file %d: %v", fi.Number, err)
				}
				continue
			}
			if err != nil {
				t.Fatalf("OpenFile(%d): %v", fi.Number, err)
			}
			_, rerr := io.ReadAll(rc)
			rc.Close()
			if (rerr == nil) != (fi.Damage == "") {
				t.Fatalf("file %d: read error %v, List damage %q", fi.Number, rerr, fi.Damage)
			}
		}
	})
}
