package tapetest

import (
	"testing"

	"github.com/abs-backup/abs/slave/tape"
)

func TestMemLibrary(t *testing.T) {
	Run(t, Harness{
		New: func(t *testing.T, drives int, capacity int64) tape.Library {
			return NewMemLibrary(drives, capacity, Blanks)
		},
		Reopen: func(t *testing.T, lib tape.Library) tape.Library { return lib.(*MemLibrary).Reopen() },
		Tear: func(t *testing.T, lib tape.Library, name string) {
			if err := lib.(*MemLibrary).Tear(name); err != nil {
				t.Fatal(err)
			}
		},
	})
}
