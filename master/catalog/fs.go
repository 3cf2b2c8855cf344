package catalog

import (
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/cockroachdb/pebble/v2/vfs"
)

// errReadOnlyFS is returned by readOnlyFS for any operation that would
// change the directory. Pebble's read-only mode is not expected to attempt
// one; if a future pebble did, Open fails loudly instead of modifying a
// catalog that `abs journal verify` promised not to touch.
var errReadOnlyFS = errors.New("catalog: read-only open attempted to modify the catalog")

// errLocked is returned by lockShared when another process holds the
// catalog's LOCK for writing.
var errLocked = errors.New("catalog: locked")

// readOnlyFS is the file system of a ReadOnly catalog: reads pass through,
// every mutation is refused, and Lock takes a shared lock on the existing
// LOCK file instead of pebble's, which creates and truncates it (changing
// its mtime) and takes an exclusive lock.
type readOnlyFS struct{ vfs.FS }

func refuse(op, name string) error { return fmt.Errorf("%w: %s %s", errReadOnlyFS, op, name) }

func (readOnlyFS) Create(name string, _ vfs.DiskWriteCategory) (vfs.File, error) {
	return nil, refuse("create", name)
}
func (readOnlyFS) Link(oldname, _ string) error { return refuse("link", oldname) }
func (readOnlyFS) OpenReadWrite(name string, _ vfs.DiskWriteCategory, _ ...vfs.OpenOption) (vfs.File, error) {
	return nil, refuse("open for writing", name)
}
func (readOnlyFS) Remove(name string) error                 { return refuse("remove", name) }
func (readOnlyFS) RemoveAll(name string) error              { return refuse("remove", name) }
func (readOnlyFS) Rename(oldname, _ string) error           { return refuse("rename", oldname) }
func (readOnlyFS) MkdirAll(dir string, _ os.FileMode) error { return refuse("mkdir", dir) }
func (readOnlyFS) ReuseForWrite(oldname, _ string, _ vfs.DiskWriteCategory) (vfs.File, error) {
	return nil, refuse("reuse", oldname)
}

// Lock read-locks name (pebble's LOCK file), which must exist. The lock
// conflicts with a writer's, in this process or another: a read-only open
// fails while a master has the catalog open, and a master cannot open it
// while it is being verified.
func (readOnlyFS) Lock(name string) (io.Closer, error) {
	f, err := os.Open(name)
	if err != nil {
		return nil, err
	}
	if err := lockShared(f); err != nil {
		f.Close()
		return nil, err
	}
	return f, nil
}
