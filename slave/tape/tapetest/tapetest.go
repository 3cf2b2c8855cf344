// Package tapetest is the conformance suite of tape.Library and tape.Drive:
// every implementation (the file library, real drives, object storage,
// the in-memory MemLibrary) must pass Run.
package tapetest

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"github.com/abs-backup/abs/slave/tape"
)

// Harness is what Run needs to know about an implementation.
type Harness struct {
	// New returns a new library with the given drives and capacity per
	// cartridge, holding at least Blanks blank cartridges and nothing else.
	New func(t *testing.T, drives int, capacity int64) tape.Library
	// Reopen returns a new handle on lib's cartridges, as a restarted
	// process would open them. Run unloads lib's drives first.
	Reopen func(t *testing.T, lib tape.Library) tape.Library
	// Tear damages the last file of cartridge name (not loaded) as a crash
	// while writing it would: its trailer and part of its payload are lost.
	Tear func(t *testing.T, lib tape.Library, name string)
}

// Blanks is the number of blank cartridges Harness.New must provide.
const Blanks = 4

// Run runs the suite. Subtests run in parallel, each on its own library.
func Run(t *testing.T, h Harness) {
	for _, tc := range []struct {
		name string
		fn   func(*testing.T, Harness)
	}{
		{"BlankLabelAppendRead", testBlankLabelAppendRead},
		{"LabelNeverOverwritten", testLabelNeverOverwritten},
		{"EndOfTape", testEndOfTape},
		{"SpanThreeCartridges", testSpan},
		{"TornFileRecovered", testTorn},
		{"AbandonedWriterLeavesTornFile", testAbandoned},
		{"ExclusiveLoads", testExclusive},
		{"ConcurrentDrives", testConcurrent},
		{"Reopen", testReopen},
		{"Refusals", testRefusals},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			tc.fn(t, h)
		})
	}
}

var created = time.Date(2026, 3, 1, 12, 0, 0, 500, time.UTC)

// Data returns n deterministic pseudo-random bytes for seed.
func Data(seed uint64, n int) []byte {
	r := rand.New(rand.NewPCG(seed, 0x7a9e))
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}

func testLabel(i int) tape.Label {
	return tape.Label{Label: fmt.Sprintf("athena-7f3a-%06d", i), Realm: "athena", Origin: "7f3a0c1e", Created: created}
}

func header(vol string) tape.FileHeader {
	return tape.FileHeader{Job: "K7Q2", Volume: vol, Server: "afs1.example.org", Partition: "/vicepa",
		DumpDate: created.Add(time.Hour), IncrementDate: created.Add(-24 * time.Hour)}
}

func blanks(t *testing.T, lib tape.Library) []string {
	t.Helper()
	names, err := lib.Cartridges()
	if err != nil {
		t.Fatal(err)
	}
	if len(names) < Blanks {
		t.Fatalf("library has %d cartridges, the harness must give %d", len(names), Blanks)
	}
	return names
}

func load(t *testing.T, lib tape.Library, drive int, name string) tape.Drive {
	t.Helper()
	d, err := lib.Load(drive, name)
	if err != nil {
		t.Fatalf("Load(%d, %s): %v", drive, name, err)
	}
	return d
}

func labeled(t *testing.T, lib tape.Library, drive int, name string, i int) tape.Drive {
	t.Helper()
	d := load(t, lib, drive, name)
	if err := d.WriteLabel(testLabel(i)); err != nil {
		t.Fatalf("WriteLabel on %s: %v", name, err)
	}
	return d
}

func unload(t *testing.T, d tape.Drive) {
	t.Helper()
	if err := d.Unload(); err != nil {
		t.Fatalf("Unload %s: %v", d.Name(), err)
	}
}

func sum(b []byte) string { s := sha256.Sum256(b); return hex.EncodeToString(s[:]) }

// writeFile writes data as one complete tape file.
func writeFile(t *testing.T, d tape.Drive, h tape.FileHeader, data []byte) tape.FileInfo {
	t.Helper()
	w, err := d.Append(h, nil)
	if err != nil {
		t.Fatalf("Append on %s: %v", d.Name(), err)
	}
	// Several writes of odd sizes, to cross block and buffer boundaries.
	for rest := data; len(rest) > 0; {
		n := min(len(rest), 1+len(rest)/3)
		if m, err := w.Write(rest[:n]); err != nil || m != n {
			t.Fatalf("Write: %d, %v; want %d", m, err, n)
		}
		rest = rest[n:]
	}
	fi, cont, err := w.Close(false)
	if err != nil {
		t.Fatalf("Close: %v", err)
	}
	if cont != nil {
		t.Fatalf("Close(false) returned a continuation %+v", cont)
	}
	if !fi.Complete || fi.Size != int64(len(data)) || fi.SHA256 != sum(data) || fi.Continues ||
		fi.TotalSize != int64(len(data)) || fi.TotalSHA256 != sum(data) || fi.Part != 1 {
		t.Fatalf("Close returned %+v for %d bytes with SHA-256 %s", fi, len(data), sum(data))
	}
	return fi
}

func readFile(t *testing.T, d tape.Drive, n int) []byte {
	t.Helper()
	rc, err := d.Open(n)
	if err != nil {
		t.Fatalf("Open(%d) on %s: %v", n, d.Name(), err)
	}
	b, err := io.ReadAll(rc)
	if err != nil {
		t.Fatalf("read file %d of %s: %v", n, d.Name(), err)
	}
	if err := rc.Close(); err != nil {
		t.Fatalf("close file %d of %s: %v", n, d.Name(), err)
	}
	return b
}

func files(t *testing.T, d tape.Drive) []tape.FileInfo {
	t.Helper()
	fs, err := d.Files()
	if err != nil {
		t.Fatalf("Files of %s: %v", d.Name(), err)
	}
	return fs
}

func sameHeader(a, b tape.FileHeader) bool {
	return a.Number == b.Number && a.Job == b.Job && a.Volume == b.Volume && a.Server == b.Server &&
		a.Partition == b.Partition && a.DumpDate.Equal(b.DumpDate) && a.IncrementDate.Equal(b.IncrementDate) &&
		a.Part == b.Part && a.PrevLabel == b.PrevLabel
}

func sameLabel(a, b tape.Label) bool {
	return a.Label == b.Label && a.Realm == b.Realm && a.Origin == b.Origin && a.Created.Equal(b.Created)
}

func testBlankLabelAppendRead(t *testing.T, h Harness) {
	lib := h.New(t, 1, 1<<20)
	name := blanks(t, lib)[0]
	d := load(t, lib, 0, name)
	if d.Name() != name {
		t.Errorf("Name() = %q, want %q", d.Name(), name)
	}
	if _, err := d.Label(); !errors.Is(err, tape.ErrBlank) {
		t.Fatalf("Label of a blank cartridge: %v, want ErrBlank", err)
	}
	if _, err := d.Append(header("v"), nil); !errors.Is(err, tape.ErrBlank) {
		t.Fatalf("Append on a blank cartridge: %v, want ErrBlank", err)
	}
	if err := d.WriteLabel(testLabel(1)); err != nil {
		t.Fatal(err)
	}
	if l, err := d.Label(); err != nil || !sameLabel(l, testLabel(1)) {
		t.Fatalf("Label() = %+v, %v; want %+v", l, err, testLabel(1))
	}
	if fs := files(t, d); len(fs) != 0 {
		t.Fatalf("a new label has files: %+v", fs)
	}
	sizes := []int{0, 1, 511, 512, 513, 100_000}
	var want [][]byte
	for i, n := range sizes {
		data := Data(uint64(i), n)
		hd := header(fmt.Sprintf("user.v%d", i))
		hd.IncrementDate = time.Time{} // a full dump
		fi := writeFile(t, d, hd, data)
		if fi.Number != i+1 {
			t.Fatalf("file %d got number %d", i+1, fi.Number)
		}
		want = append(want, data)
	}
	check := func(d tape.Drive) {
		t.Helper()
		fs := files(t, d)
		if len(fs) != len(sizes) {
			t.Fatalf("%d files, want %d", len(fs), len(sizes))
		}
		for i, fi := range fs {
			hd := header(fmt.Sprintf("user.v%d", i))
			hd.IncrementDate, hd.Number, hd.Part = time.Time{}, i+1, 1
			if !sameHeader(fi.FileHeader, hd) || !fi.IncrementDate.IsZero() {
				t.Errorf("file %d header %+v, want %+v", i+1, fi.FileHeader, hd)
			}
			if !fi.Complete || fi.Size != int64(sizes[i]) || fi.SHA256 != sum(want[i]) || fi.Damage != "" {
				t.Errorf("file %d: %+v", i+1, fi)
			}
			if got := readFile(t, d, i+1); !bytes.Equal(got, want[i]) {
				t.Errorf("file %d reads back %d bytes, differing from the %d written", i+1, len(got), len(want[i]))
			}
		}
	}
	check(d)
	unload(t, d)
	d = load(t, lib, 0, name)
	check(d)
	if l, err := d.Label(); err != nil || !sameLabel(l, testLabel(1)) {
		t.Fatalf("after reload Label() = %+v, %v", l, err)
	}
	unload(t, d)
}

func testLabelNeverOverwritten(t *testing.T, h Harness) {
	lib := h.New(t, 1, 1<<20)
	name := blanks(t, lib)[0]
	d := labeled(t, lib, 0, name, 1)
	data := Data(9, 3000)
	writeFile(t, d, header("v"), data)
	if err := d.WriteLabel(testLabel(2)); !errors.Is(err, tape.ErrLabeled) {
		t.Fatalf("WriteLabel on a labeled cartridge: %v, want ErrLabeled", err)
	}
	if err := d.Erase(false); !errors.Is(err, tape.ErrLabeled) {
		t.Fatalf("Erase(expired=false) on a labeled cartridge: %v, want ErrLabeled", err)
	}
	unload(t, d)
	d = load(t, lib, 0, name)
	if l, err := d.Label(); err != nil || !sameLabel(l, testLabel(1)) {
		t.Fatalf("label after refused overwrite: %+v, %v", l, err)
	}
	if got := readFile(t, d, 1); !bytes.Equal(got, data) {
		t.Fatal("file 1 changed after a refused overwrite")
	}
	if err := d.WriteLabel(testLabel(2)); !errors.Is(err, tape.ErrLabeled) {
		t.Fatalf("WriteLabel after reload: %v, want ErrLabeled", err)
	}
	// Only an explicit Erase of an expired cartridge makes it blank.
	if err := d.Erase(true); err != nil {
		t.Fatal(err)
	}
	if _, err := d.Label(); !errors.Is(err, tape.ErrBlank) {
		t.Fatalf("after Erase: %v, want ErrBlank", err)
	}
	if err := d.WriteLabel(testLabel(3)); err != nil {
		t.Fatal(err)
	}
	if fs := files(t, d); len(fs) != 0 {
		t.Fatalf("erased and relabeled cartridge has files %+v", fs)
	}
	unload(t, d)
}

// fill writes data until the end of tape; it returns the bytes accepted.
func fill(t *testing.T, w tape.FileWriter, data []byte) int {
	t.Helper()
	n := 0
	for n < len(data) {
		m, err := w.Write(data[n:min(len(data), n+7000)])
		n += m
		if errors.Is(err, tape.ErrEndOfTape) {
			if m2, err := w.Write(data[n:]); m2 != 0 || !errors.Is(err, tape.ErrEndOfTape) {
				t.Fatalf("Write after end of tape: %d, %v", m2, err)
			}
			return n
		}
		if err != nil {
			t.Fatalf("Write: %v", err)
		}
	}
	return n
}

func testEndOfTape(t *testing.T, h Harness) {
	const capacity = 64 << 10
	lib := h.New(t, 1, capacity)
	name := blanks(t, lib)[0]
	d := labeled(t, lib, 0, name, 1)
	small := Data(1, 5000)
	writeFile(t, d, header("small"), small)
	w, err := d.Append(header("big"), nil)
	if err != nil {
		t.Fatal(err)
	}
	data := Data(2, 2*capacity)
	n := fill(t, w, data)
	// The whole cartridge holds at most capacity bytes, overhead included,
	// and an implementation may not waste more than 4 KiB of it.
	if total := n + len(small); total > capacity || total < capacity-4096 {
		t.Fatalf("end of tape after %d payload bytes on a %d-byte cartridge", total, capacity)
	}
	fi, cont, err := w.Close(true)
	if err != nil {
		t.Fatal(err)
	}
	if !fi.Complete || !fi.Continues || fi.Size != int64(n) || fi.SHA256 != sum(data[:n]) || fi.TotalSHA256 != "" || fi.TotalSize != 0 {
		t.Fatalf("part closed with continues: %+v", fi)
	}
	if cont == nil || cont.Part != 2 || cont.PrevLabel != testLabel(1).Label || cont.Size != int64(n) {
		t.Fatalf("continuation %+v", cont)
	}
	if _, err := d.Append(header("more"), nil); !errors.Is(err, tape.ErrEndOfTape) {
		t.Fatalf("Append on a full cartridge: %v, want ErrEndOfTape", err)
	}
	unload(t, d)
	d = load(t, lib, 0, name)
	fs := files(t, d)
	if len(fs) != 2 || !fs[1].Continues || fs[1].Size != int64(n) {
		t.Fatalf("files after reload: %+v", fs)
	}
	if got := readFile(t, d, 2); !bytes.Equal(got, data[:n]) {
		t.Fatal("the part cut by end of tape does not read back")
	}
	unload(t, d)
}

func testSpan(t *testing.T, h Harness) {
	const capacity = 64 << 10
	lib := h.New(t, 2, capacity)
	names := blanks(t, lib)
	data := Data(3, 150_000) // needs three 64 KiB cartridges
	var cont *tape.Continuation
	var last tape.FileInfo
	off := 0
	for i := 0; off < len(data); i++ {
		if i == 3 {
			t.Fatalf("%d bytes do not fit on 3 cartridges of %d bytes; %d written", len(data), capacity, off)
		}
		d := labeled(t, lib, i%2, names[i], i+1)
		w, err := d.Append(header("big.volume"), cont)
		if err != nil {
			t.Fatal(err)
		}
		n := fill(t, w, data[off:])
		off += n
		var next *tape.Continuation
		last, next, err = w.Close(off < len(data))
		if err != nil {
			t.Fatal(err)
		}
		if last.Part != i+1 || (i > 0 && last.PrevLabel != testLabel(i).Label) || (i == 0 && last.PrevLabel != "") {
			t.Fatalf("part %d: header %+v", i+1, last.FileHeader)
		}
		if (next != nil) != (off < len(data)) {
			t.Fatalf("part %d: continuation %+v with %d bytes left", i+1, next, len(data)-off)
		}
		cont = next
		unload(t, d)
	}
	if last.Part != 3 {
		t.Fatalf("dump took %d parts, want 3", last.Part)
	}
	if last.Continues || last.TotalSize != int64(len(data)) || last.TotalSHA256 != sum(data) {
		t.Fatalf("final part %+v: want total %d bytes, SHA-256 %s", last, len(data), sum(data))
	}
	// Reassemble from the cartridges alone, following PrevLabel.
	var got []byte
	prev := ""
	for i := range 3 {
		d := load(t, lib, 1, names[i])
		fs := files(t, d)
		if len(fs) != 1 || fs[0].Part != i+1 || fs[0].PrevLabel != prev || fs[0].Continues != (i < 2) {
			t.Fatalf("cartridge %d: %+v", i+1, fs)
		}
		l, _ := d.Label()
		prev = l.Label
		got = append(got, readFile(t, d, 1)...)
		if i == 2 && (fs[0].TotalSHA256 != sum(got) || fs[0].TotalSize != int64(len(got))) {
			t.Fatalf("total in the trailer %+v does not match the reassembled dump", fs[0])
		}
		unload(t, d)
	}
	if !bytes.Equal(got, data) {
		t.Fatalf("reassembled %d bytes differ from the %d dumped", len(got), len(data))
	}
}

// checkRecovers checks a cartridge whose file 2 is torn: listed as
// incomplete, not openable, and cut by the next Append.
func checkRecovers(t *testing.T, lib tape.Library, name string, first []byte) {
	t.Helper()
	d := load(t, lib, 0, name)
	defer unload(t, d)
	fs := files(t, d)
	if len(fs) != 2 || !fs[0].Complete || fs[1].Complete || fs[1].Number != 2 || fs[1].Damage == "" {
		t.Fatalf("torn cartridge lists %+v; want file 1 complete and file 2 torn", fs)
	}
	if _, err := d.Open(2); !errors.Is(err, tape.ErrNoSuchFile) {
		t.Fatalf("Open of a torn file: %v, want ErrNoSuchFile", err)
	}
	third := Data(33, 7777)
	fi := writeFile(t, d, header("after.crash"), third)
	if fi.Number != 2 {
		t.Fatalf("the file appended after a torn one is number %d, want 2", fi.Number)
	}
	fs = files(t, d)
	if len(fs) != 2 || !fs[1].Complete || fs[1].Volume != "after.crash" {
		t.Fatalf("after recovery: %+v", fs)
	}
	if !bytes.Equal(readFile(t, d, 1), first) || !bytes.Equal(readFile(t, d, 2), third) {
		t.Fatal("files differ after recovery")
	}
}

func testTorn(t *testing.T, h Harness) {
	lib := h.New(t, 1, 1<<20)
	name := blanks(t, lib)[0]
	d := labeled(t, lib, 0, name, 1)
	first := Data(31, 4000)
	writeFile(t, d, header("one"), first)
	writeFile(t, d, header("two"), Data(32, 9000))
	unload(t, d)
	h.Tear(t, lib, name)
	checkRecovers(t, lib, name, first)
}

func testAbandoned(t *testing.T, h Harness) {
	lib := h.New(t, 1, 1<<20)
	name := blanks(t, lib)[0]
	d := labeled(t, lib, 0, name, 1)
	first := Data(41, 4000)
	writeFile(t, d, header("one"), first)
	w, err := d.Append(header("two"), nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.Write(Data(42, 3000)); err != nil {
		t.Fatal(err)
	}
	unload(t, d) // with the writer open: it is abandoned
	if _, err := w.Write([]byte("x")); err == nil {
		t.Fatal("Write after Unload succeeded")
	}
	if _, _, err := w.Close(false); err == nil {
		t.Fatal("Close after Unload succeeded")
	}
	checkRecovers(t, lib, name, first)
}

func testExclusive(t *testing.T, h Harness) {
	lib := h.New(t, 2, 1<<20)
	names := blanks(t, lib)
	d := load(t, lib, 0, names[0])
	if _, err := lib.Load(1, names[0]); !errors.Is(err, tape.ErrInUse) {
		t.Fatalf("loading a loaded cartridge: %v, want ErrInUse", err)
	}
	if _, err := lib.Load(0, names[1]); !errors.Is(err, tape.ErrInUse) {
		t.Fatalf("loading into a full drive: %v, want ErrInUse", err)
	}
	if _, err := lib.Load(1, "no-such-cartridge"); !errors.Is(err, tape.ErrNoSuchCartridge) {
		t.Fatalf("loading an unknown cartridge: %v, want ErrNoSuchCartridge", err)
	}
	for _, drive := range []int{-1, lib.Drives()} {
		if _, err := lib.Load(drive, names[2]); err == nil {
			t.Fatalf("Load into drive %d of %d succeeded", drive, lib.Drives())
		}
	}
	unload(t, d)
	if err := d.Unload(); !errors.Is(err, tape.ErrUnloaded) {
		t.Fatalf("second Unload: %v, want ErrUnloaded", err)
	}
	if _, err := d.Label(); !errors.Is(err, tape.ErrUnloaded) {
		t.Fatalf("Label after Unload: %v, want ErrUnloaded", err)
	}
	d = load(t, lib, 1, names[0])
	unload(t, d)
}

func testConcurrent(t *testing.T, h Harness) {
	const drives = 3
	lib := h.New(t, drives, 1<<20)
	names := blanks(t, lib)
	var wg sync.WaitGroup
	errs := make(chan error, drives)
	for i := range drives {
		wg.Go(func() {
			errs <- func() error {
				d, err := lib.Load(i, names[i])
				if err != nil {
					return err
				}
				defer d.Unload()
				if err := d.WriteLabel(testLabel(i)); err != nil {
					return err
				}
				for j := range 5 {
					data := Data(uint64(100*i+j), 10_000+j)
					w, err := d.Append(header("v"), nil)
					if err != nil {
						return err
					}
					if _, err := w.Write(data); err != nil {
						return err
					}
					if _, _, err := w.Close(false); err != nil {
						return err
					}
					rc, err := d.Open(j + 1)
					if err != nil {
						return err
					}
					got, err := io.ReadAll(rc)
					if err != nil {
						return err
					}
					if !bytes.Equal(got, data) {
						return fmt.Errorf("drive %d file %d differs", i, j+1)
					}
				}
				return nil
			}()
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Error(err)
		}
	}
}

func testReopen(t *testing.T, h Harness) {
	lib := h.New(t, 2, 1<<20)
	names := blanks(t, lib)
	d0 := labeled(t, lib, 0, names[0], 1)
	d1 := labeled(t, lib, 1, names[1], 2)
	a, b := Data(51, 12345), Data(52, 54321)
	fa := writeFile(t, d0, header("a"), a)
	fb := writeFile(t, d1, header("b"), b)
	unload(t, d0)
	unload(t, d1)
	lib2 := h.Reopen(t, lib)
	got, err := lib2.Cartridges()
	if err != nil || fmt.Sprint(got) != fmt.Sprint(names) {
		t.Fatalf("reopened library has %v, %v; want %v", got, err, names)
	}
	for i, c := range []struct {
		data []byte
		fi   tape.FileInfo
	}{{a, fa}, {b, fb}} {
		d := load(t, lib2, 0, names[i])
		if l, err := d.Label(); err != nil || !sameLabel(l, testLabel(i+1)) {
			t.Fatalf("reopened %s: label %+v, %v", names[i], l, err)
		}
		fs := files(t, d)
		if len(fs) != 1 || !sameHeader(fs[0].FileHeader, c.fi.FileHeader) || fs[0].SHA256 != c.fi.SHA256 || fs[0].Size != c.fi.Size {
			t.Fatalf("reopened %s: files %+v, want %+v", names[i], fs, c.fi)
		}
		if !bytes.Equal(readFile(t, d, 1), c.data) {
			t.Fatalf("reopened %s: file 1 differs", names[i])
		}
		unload(t, d)
	}
	d := load(t, lib2, 1, names[2])
	if _, err := d.Label(); !errors.Is(err, tape.ErrBlank) {
		t.Fatalf("reopened blank cartridge: %v, want ErrBlank", err)
	}
	unload(t, d)
}

func testRefusals(t *testing.T, h Harness) {
	lib := h.New(t, 1, 1<<20)
	names := blanks(t, lib)
	d := load(t, lib, 0, names[0])
	defer unload(t, d)
	if err := d.WriteLabel(tape.Label{}); err == nil {
		t.Fatal("an empty label was written")
	}
	if _, err := d.Label(); !errors.Is(err, tape.ErrBlank) {
		t.Fatalf("after a refused label: %v, want ErrBlank", err)
	}
	if err := d.WriteLabel(testLabel(1)); err != nil {
		t.Fatal(err)
	}
	writeFile(t, d, header("v"), []byte("hello"))
	for _, n := range []int{0, -1, 2} {
		if _, err := d.Open(n); !errors.Is(err, tape.ErrNoSuchFile) {
			t.Errorf("Open(%d): %v, want ErrNoSuchFile", n, err)
		}
	}
	bad := []tape.FileHeader{
		{Volume: ""},                           // no volume
		{Volume: "v", Number: 7},               // wrong number
		{Volume: "v", Part: 2, PrevLabel: "x"}, // part 2 without a continuation
		{Volume: string(make([]byte, 10_000))}, // too long
	}
	for _, hd := range bad {
		if _, err := d.Append(hd, nil); err == nil {
			t.Errorf("Append(%+v) succeeded", hd)
		}
	}
	w, err := d.Append(header("v2"), nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := d.Files(); !errors.Is(err, tape.ErrBusy) {
		t.Errorf("Files while writing: %v, want ErrBusy", err)
	}
	if _, err := d.Open(1); !errors.Is(err, tape.ErrBusy) {
		t.Errorf("Open while writing: %v, want ErrBusy", err)
	}
	if _, err := d.Append(header("v3"), nil); !errors.Is(err, tape.ErrBusy) {
		t.Errorf("second Append while writing: %v, want ErrBusy", err)
	}
	if _, _, err := w.Close(false); err != nil {
		t.Fatal(err)
	}
	if _, err := w.Write([]byte("late")); err == nil {
		t.Error("Write after Close succeeded")
	}
	if _, _, err := w.Close(false); err == nil {
		t.Error("second Close succeeded")
	}
	if fs := files(t, d); len(fs) != 2 || fs[1].Size != 0 || fs[1].SHA256 != sum(nil) {
		t.Errorf("empty file: %+v", fs)
	}
}
