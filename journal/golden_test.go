package journal

import (
	"bytes"
	"encoding/binary"
	"flag"
	"fmt"
	"hash/crc32"
	"os"
	"path/filepath"
	"testing"

	"github.com/vmihailenco/msgpack/v5"
)

var update = flag.Bool("update", false, "rewrite the golden journal in testdata/golden")

const goldenDir = "testdata/golden"

// goldenEntries are the events of the golden journal: fixed values only.
func goldenEntries() []Entry {
	var es []Entry
	for i := range 8 {
		es = append(es, Entry{
			Type:    TypeEvents,
			Epoch:   uint64(1 + i/4),
			Time:    1_700_000_000_000_000_000 + int64(i)*1_000_000,
			Payload: fmt.Appendf(nil, "golden event %d", i),
		})
	}
	return es
}

func writeGolden(t *testing.T, dir string) {
	j, err := Create(dir, testIdentity, testOptions(t, 256))
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range goldenEntries() {
		if _, err := j.Append(e); err != nil {
			t.Fatal(err)
		}
	}
	if err := j.Close(); err != nil {
		t.Fatal(err)
	}
}

// TestGolden checks that the format is stable: a journal written from fixed
// values is byte-identical to the committed one (regenerate with -update
// only when the format version changes), and the committed files decode,
// both through Reader and through an independent decoder written from the
// package documentation alone.
func TestGolden(t *testing.T) {
	tmp := t.TempDir()
	writeGolden(t, tmp)
	names := segmentFiles(t, tmp)
	if len(names) < 2 {
		t.Fatalf("golden journal should span segments, has %d", len(names))
	}
	if *update {
		os.RemoveAll(goldenDir)
		if err := os.MkdirAll(goldenDir, 0o755); err != nil {
			t.Fatal(err)
		}
		for _, n := range names {
			mustWrite(t, filepath.Join(goldenDir, n), mustRead(t, filepath.Join(tmp, n)))
		}
	}
	golden := segmentFiles(t, goldenDir)
	if fmt.Sprint(golden) != fmt.Sprint(names) {
		t.Fatalf("segments %v, golden %v", names, golden)
	}
	for _, n := range names {
		if got, want := mustRead(t, filepath.Join(tmp, n)), mustRead(t, filepath.Join(goldenDir, n)); !bytes.Equal(got, want) {
			t.Fatalf("%s differs from golden:\n got %x\nwant %x", n, got, want)
		}
	}

	// Reader over the committed files (read-only, so safe on testdata).
	r, err := OpenReader(goldenDir)
	if err != nil {
		t.Fatal(err)
	}
	es := goldenEntries()
	if r.Identity() != testIdentity || r.LastIndex() != uint64(len(es)+1) {
		t.Fatalf("golden identity %+v last %d", r.Identity(), r.LastIndex())
	}
	err = r.Scan(2, func(rec Record) error {
		e := es[rec.Index-2]
		if rec.Type != e.Type || rec.Epoch != e.Epoch || rec.Time != e.Time || !bytes.Equal(rec.Payload, e.Payload) {
			return fmt.Errorf("golden record %d: %+v, want %+v", rec.Index, rec, e)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}

	// Independent decoder, from the documentation.
	var prev uint32
	index := uint64(1)
	table := crc32.MakeTable(crc32.Castagnoli)
	for _, n := range names {
		if n != fmt.Sprintf("%020d", index) {
			t.Fatalf("segment %s, expected next index %d", n, index)
		}
		b := mustRead(t, filepath.Join(goldenDir, n))
		for len(b) > 0 {
			size, k := binary.Uvarint(b)
			rec := b[k : k+int(size)]
			b = b[k+int(size):]
			plen := binary.BigEndian.Uint32(rec[32:36])
			if string(rec[0:2]) != "AJ" || rec[2] != 1 || int(plen)+40 != len(rec) ||
				binary.BigEndian.Uint64(rec[4:12]) != index || binary.BigEndian.Uint32(rec[28:32]) != prev ||
				crc32.Checksum(rec[:36+plen], table) != binary.BigEndian.Uint32(rec[36+plen:]) {
				t.Fatalf("independent decode of index %d failed: %x", index, rec)
			}
			payload := rec[36 : 36+plen]
			if index == 1 {
				var m map[string]any
				if rec[3] != 1 || msgpack.Unmarshal(payload, &m) != nil || m["id"] != testIdentity.JournalID || m["mode"] != "normal" {
					t.Fatalf("identity payload %x", payload)
				}
			} else if rec[3] != 2 || !bytes.Equal(payload, es[index-2].Payload) {
				t.Fatalf("record %d payload %q", index, payload)
			}
			prev = binary.BigEndian.Uint32(rec[36+plen:])
			index++
		}
	}
	if index != uint64(len(es)+2) {
		t.Fatalf("independent decoder saw %d records", index-1)
	}
}
