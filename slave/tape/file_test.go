package tape_test

import (
	"os"
	"testing"

	"github.com/abs-backup/abs/slave/tape"
	"github.com/abs-backup/abs/slave/tape/tapetest"
)

// fileHarness runs the conformance suite on FileLibrary; Tear truncates the
// cartridge file in the middle of its last payload.
var fileHarness = tapetest.Harness{
	New: func(t *testing.T, drives int, capacity int64) tape.Library {
		dir := t.TempDir()
		if _, err := tape.NewCartridges(dir, tapetest.Blanks, "A"); err != nil {
			t.Fatal(err)
		}
		lib, err := tape.OpenLibrary(dir, drives, capacity)
		if err != nil {
			t.Fatal(err)
		}
		return lib
	},
	Reopen: func(t *testing.T, lib tape.Library) tape.Library {
		l := lib.(*tape.FileLibrary)
		lib2, err := tape.OpenLibrary(l.Dir(), l.Drives(), l.Capacity())
		if err != nil {
			t.Fatal(err)
		}
		return lib2
	},
	Tear: func(t *testing.T, lib tape.Library, name string) {
		path := lib.(*tape.FileLibrary).Path(name)
		_, files, err := tape.List(path)
		if err != nil || len(files) == 0 {
			t.Fatalf("tear %s: %v, %d files", path, err, len(files))
		}
		last := files[len(files)-1]
		if err := os.Truncate(path, last.Offset+tape.BlockSize+last.Size/2); err != nil {
			t.Fatal(err)
		}
	},
}

func TestFileLibrary(t *testing.T) { tapetest.Run(t, fileHarness) }
