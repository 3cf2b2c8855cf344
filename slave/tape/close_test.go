package tape

import (
	"errors"
	"io"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// TestCloseVerifiesUnreadPayload: a reader that stops early (as a tar reader
// does at the archive's end marker) still learns at Close that the payload
// was damaged.
func TestCloseVerifiesUnreadPayload(t *testing.T) {
	dir := t.TempDir()
	names, err := NewCartridges(dir, 1, "A")
	if err != nil {
		t.Fatal(err)
	}
	l, err := OpenLibrary(dir, 1, 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	d, err := l.Load(0, names[0])
	if err != nil {
		t.Fatal(err)
	}
	when := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	if err := d.WriteLabel(Label{Label: "t-1", Realm: "athena", Created: when}); err != nil {
		t.Fatal(err)
	}
	w, err := d.Append(FileHeader{Job: "j", Volume: "v", Server: "s", Partition: "p", DumpDate: when}, nil)
	if err != nil {
		t.Fatal(err)
	}
	payload := make([]byte, 4000)
	for i := range payload {
		payload[i] = byte(i)
	}
	w.Write(payload)
	if _, _, err := w.Close(false); err != nil {
		t.Fatal(err)
	}
	d.Unload()
	path := filepath.Join(dir, names[0]+Suffix)
	b, _ := os.ReadFile(path)
	b[2*BlockSize+3000] ^= 1 // deep in the payload, past what the reader reads
	os.WriteFile(path, b, 0o644)

	_, r, err := OpenFile(path, 1)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.ReadFull(r, make([]byte, 100)); err != nil {
		t.Fatal(err)
	}
	if err := r.Close(); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("Close after a partial read of a damaged payload: %v, want ErrCorrupt", err)
	}
}
