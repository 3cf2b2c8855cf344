package tape

import (
	"archive/tar"
	"bytes"
	"encoding/binary"
	"flag"
	"hash/crc32"
	"io"
	"os"
	"strings"
	"testing"
	"time"
)

var update = flag.Bool("update", false, "rewrite testdata/golden.tape")

const goldenPath = "testdata/golden.tape"

// countingReader yields 0, 1, 2, …: fixed nonces for the golden cartridge.
type countingReader struct{ n byte }

func (r *countingReader) Read(p []byte) (int, error) {
	for i := range p {
		p[i] = r.n
		r.n++
	}
	return len(p), nil
}

var goldenTime = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

// goldenTar is a PAX tar stream of two small files, from fixed values.
func goldenTar(t *testing.T) []byte {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, f := range []struct{ name, body string }{
		{"home/alice/notes.txt", "remember the milk\n"},
		{"home/alice/ünïcode.txt", "PAX headers carry non-ASCII names\n"},
	} {
		hdr := &tar.Header{Name: f.name, Mode: 0o644, Size: int64(len(f.body)), ModTime: goldenTime,
			Typeflag: tar.TypeReg, Format: tar.FormatPAX, Uname: "alice", Gname: "staff"}
		if err := tw.WriteHeader(hdr); err != nil {
			t.Fatal(err)
		}
		if _, err := io.WriteString(tw, f.body); err != nil {
			t.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// writeGolden writes the golden cartridge from fixed inputs into dir and
// returns its path: file 1 a full dump (a tar stream), file 2 part 1 of a
// dump that continues elsewhere.
func writeGolden(t *testing.T, dir string) string {
	if _, err := NewCartridges(dir, 1, "A"); err != nil {
		t.Fatal(err)
	}
	lib, err := OpenLibrary(dir, 1, 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	lib.rand = &countingReader{}
	d, err := lib.Load(0, "A00001")
	if err != nil {
		t.Fatal(err)
	}
	if err := d.WriteLabel(Label{Label: "athena-7f3a-000012", Realm: "athena", Origin: "7f3a0c1e9b2d4f60", Created: goldenTime}); err != nil {
		t.Fatal(err)
	}
	w, err := d.Append(FileHeader{Job: "K7Q2", Volume: "user.alice", Server: "afs1.example.org", Partition: "/vicepa",
		DumpDate: goldenTime.Add(time.Hour)}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.Write(goldenTar(t)); err != nil {
		t.Fatal(err)
	}
	if _, _, err := w.Close(false); err != nil {
		t.Fatal(err)
	}
	w, err = d.Append(FileHeader{Job: "K7Q2", Volume: "user.bob", Server: "afs1.example.org", Partition: "/vicepb",
		DumpDate: goldenTime.Add(2 * time.Hour), IncrementDate: goldenTime.Add(-24 * time.Hour)}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.Write([]byte("the first part of a dump that continues on another cartridge")); err != nil {
		t.Fatal(err)
	}
	if _, _, err := w.Close(true); err != nil {
		t.Fatal(err)
	}
	if err := d.Unload(); err != nil {
		t.Fatal(err)
	}
	return lib.Path("A00001")
}

// TestGolden checks the format is stable: the cartridge written from fixed
// inputs is byte-identical to the committed one (regenerate with -update
// only when the format version changes), and the committed one lists.
func TestGolden(t *testing.T) {
	got, err := os.ReadFile(writeGolden(t, t.TempDir()))
	if err != nil {
		t.Fatal(err)
	}
	if *update {
		if err := os.WriteFile(goldenPath, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(goldenPath)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("the cartridge format changed: %d bytes written, %s has %d (run with -update only if the format version changed)", len(got), goldenPath, len(want))
	}
	l, files, err := List(goldenPath)
	if err != nil {
		t.Fatal(err)
	}
	if l.Label != "athena-7f3a-000012" || len(files) != 2 || !files[1].Continues || files[0].Offset != 512 {
		t.Fatalf("golden lists %+v %+v", l, files)
	}
}

// TestGoldenStandardTools reads the golden cartridge the way doc.go tells a
// human to, without this package: the label and header by offsets, and the
// payload of file 1 with archive/tar after seeking to block 2.
func TestGoldenStandardTools(t *testing.T) {
	b, err := os.ReadFile(goldenPath)
	if err != nil {
		t.Fatal(err)
	}
	castagnoli := crc32.MakeTable(0x82F63B78)
	for _, off := range []int{0, 512} {
		rec := b[off : off+512]
		if crc32.Checksum(rec[:508], castagnoli) != binary.BigEndian.Uint32(rec[508:]) {
			t.Fatalf("record at %d: CRC-32C mismatch", off)
		}
	}
	cstr := func(b []byte) string { return strings.TrimRight(string(b), "\x00") }
	if string(b[0:8]) != "ABSLABEL" || binary.BigEndian.Uint32(b[8:12]) != 1 ||
		cstr(b[12:76]) != "athena-7f3a-000012" || cstr(b[76:140]) != "athena" || cstr(b[204:236]) != "2026-03-01T12:00:00Z" {
		t.Fatalf("label record does not match doc.go: %q", b[:236])
	}
	h := b[512:1024]
	if string(h[0:8]) != "ABSFILE1" || binary.BigEndian.Uint32(h[8:12]) != 1 || binary.BigEndian.Uint32(h[12:16]) != 1 ||
		cstr(h[80:192]) != "user.alice" || cstr(h[368:400]) != "2026-03-01T13:00:00Z" || cstr(h[400:432]) != "" {
		t.Fatalf("header record does not match doc.go: %q", h)
	}
	f, err := os.Open(goldenPath)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.Seek(2*512, io.SeekStart); err != nil { // dd bs=512 skip=2
		t.Fatal(err)
	}
	tr := tar.NewReader(f)
	var names []string
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		body, err := io.ReadAll(tr)
		if err != nil {
			t.Fatal(err)
		}
		names = append(names, hdr.Name+"="+string(body))
	}
	want := "home/alice/notes.txt=remember the milk\n home/alice/ünïcode.txt=PAX headers carry non-ASCII names\n"
	if got := strings.Join(names, " "); got != want {
		t.Fatalf("tar at block 2 reads %q, want %q", got, want)
	}
	// The trailer of file 1 is where doc.go says: after the padded payload.
	size := int64(len(goldenTar(t)))
	toff := 1024 + padded(size)
	tr1 := b[toff : toff+512]
	if string(tr1[:8]) != "ABSTRAIL" || int64(binary.BigEndian.Uint64(tr1[32:40])) != size || !bytes.Equal(tr1[16:32], h[16:32]) {
		t.Fatalf("trailer of file 1 not at offset %d", toff)
	}
}

func TestGoldenWithoutTmpFiles(t *testing.T) {
	dir := t.TempDir()
	writeGolden(t, dir)
	ents, _ := os.ReadDir(dir)
	if len(ents) != 1 {
		t.Fatalf("library holds %d entries after labeling, want only the cartridge", len(ents))
	}
}
