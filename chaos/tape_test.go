package chaos

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/abs-backup/abs/fixtures"
	"github.com/abs-backup/abs/slave/source"
	"github.com/abs-backup/abs/slave/tape"
)

// TestTapeLastResort: cartridges made by `abs tape new`, written with a full
// and an incremental dump of a generated volume, are listed by `abs tape ls`
// and restored by `abs tape extract` with no daemon at all, identical to the
// live volume; a damaged payload is reported (exit 65) and refused.
func TestTapeLastResort(t *testing.T) {
	dir := t.TempDir()
	lib := filepath.Join(dir, "tapes")
	res := mustRun(t, nil, "tape", "new", "--library", lib, "--count", "3")
	if !strings.Contains(res.Stdout, "A00001 … A00003") {
		t.Fatalf("tape new: %s", res.Stdout)
	}

	partition := filepath.Join(dir, "vicepa")
	vols, err := fixtures.GenerateVolumes(partition, 1, fixtures.TreeOptions{Seed: 7, Files: 60, Dirs: 12, Large: 1, LargeSize: 1 << 20})
	if err != nil {
		t.Fatal(err)
	}
	vol := filepath.Base(vols[0])
	p := &source.DirPartition{ServerName: "fs1", PartitionName: "vicepa", Path: partition}
	l, err := tape.OpenLibrary(lib, 1, 64<<20)
	if err != nil {
		t.Fatal(err)
	}
	d, err := l.Load(0, "A00001")
	if err != nil {
		t.Fatal(err)
	}
	if err := d.WriteLabel(tape.Label{Label: "athena-test-000001", Realm: "athena", Created: time.Now()}); err != nil {
		t.Fatal(err)
	}
	dump := func(since time.Time) time.Time {
		w, err := d.Append(tape.FileHeader{Job: "test-1", Volume: vol, Server: "fs1", Partition: "vicepa", DumpDate: time.Now(), IncrementDate: since}, nil)
		if err != nil {
			t.Fatal(err)
		}
		st, err := p.Dump(context.Background(), vol, since, w, nil)
		if err != nil {
			t.Fatal(err)
		}
		if _, _, err := w.Close(false); err != nil {
			t.Fatal(err)
		}
		return st.DumpDate
	}
	full := dump(time.Time{})
	if _, err := fixtures.Mutate(vols[0], 3, 25, full.Add(2*time.Second)); err != nil {
		t.Fatal(err)
	}
	dump(full)
	if err := d.Unload(); err != nil {
		t.Fatal(err)
	}
	cart := l.Path("A00001")

	var listing struct {
		Label string
		Files []map[string]any
	}
	out := mustRun(t, nil, "tape", "ls", cart, "--json").Stdout
	if err := json.Unmarshal([]byte(out), &listing); err != nil || len(listing.Files) != 2 {
		t.Fatalf("tape ls --json: %v\n%s", err, out)
	}
	if listing.Label != "athena-test-000001" || listing.Files[0]["increment_date"] != "0" || listing.Files[1]["increment_date"] == "0" || listing.Files[0]["volume"] != vol {
		t.Fatalf("tape ls --json: %s", out)
	}
	if out := mustRun(t, nil, "tape", "ls", cart).Stdout; !strings.Contains(out, "FILE") || !strings.Contains(out, vol) {
		t.Fatalf("tape ls:\n%s", out)
	}

	// An incremental alone is refused with guidance.
	if res := Run(t, nil, "tape", "extract", cart, "--file", "2", "--to", filepath.Join(dir, "x")); res.Code != 2 || !strings.Contains(res.Stderr, "give its full dump first") {
		t.Fatalf("extract of an incremental alone: exit %d\n%s", res.Code, res.Stderr)
	}
	target := filepath.Join(dir, "restored")
	mustRun(t, nil, "tape", "extract", cart, "--file", "1", "--file", "2", "--to", target)
	live, err := fixtures.Scan(vols[0])
	if err != nil {
		t.Fatal(err)
	}
	got, err := fixtures.Scan(target)
	if err != nil {
		t.Fatal(err)
	}
	if diff := live.Diff(got, fixtures.DiffOptions{MTimePrecision: time.Second}); len(diff) > 0 {
		t.Fatalf("extract differs from the live volume:\n%s", strings.Join(diff, "\n"))
	}

	// A flipped byte in file 1's payload: ls says DAMAGED (exit 65), extract refuses.
	b, err := os.ReadFile(cart)
	if err != nil {
		t.Fatal(err)
	}
	b[3*tape.BlockSize+100] ^= 0xff
	bad := filepath.Join(dir, "bad.tape")
	os.WriteFile(bad, b, 0o644)
	if res := Run(t, nil, "tape", "ls", bad); res.Code != 65 || !strings.Contains(res.Stdout, "DAMAGED") {
		t.Fatalf("ls of a damaged cartridge: exit %d\n%s%s", res.Code, res.Stdout, res.Stderr)
	}
	if res := Run(t, nil, "tape", "extract", bad, "--file", "1", "--to", filepath.Join(dir, "bad-out")); res.Code == 0 {
		t.Fatalf("extract of a damaged file succeeded:\n%s", res.Stdout)
	}
}
