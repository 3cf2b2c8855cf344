package catalog

import (
	"errors"
	"fmt"
	"io"
	"os"

	"golang.org/x/sys/unix"
)

// lockShared takes a shared open-file-description lock (F_OFD_SETLK) on f.
// OFD locks conflict with pebble's POSIX write lock, even within one
// process, but belong to the descriptor: closing f releases only this lock.
func lockShared(f *os.File) error {
	lk := unix.Flock_t{Type: unix.F_RDLCK, Whence: io.SeekStart}
	if err := unix.FcntlFlock(f.Fd(), unix.F_OFD_SETLK, &lk); err != nil {
		if errors.Is(err, unix.EAGAIN) || errors.Is(err, unix.EACCES) {
			return fmt.Errorf("%w: %s is locked for writing", errLocked, f.Name())
		}
		return fmt.Errorf("catalog: lock %s: %w", f.Name(), err)
	}
	return nil
}

// lockConflict reports whether err from pebble's own (exclusive) lock means
// another process holds the lock.
func lockConflict(err error) bool {
	return errors.Is(err, unix.EAGAIN) || errors.Is(err, errLocked)
}
