package journal

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// lockName is the lock file inside the journal directory. wal ignores it
// (its name is not a 20-digit index).
const lockName = "LOCK"

// dirLock is a held flock on dir/LOCK. The lock belongs to the open file
// description, so a second open of the file in the same process conflicts
// like another process does, and the kernel drops it when the process dies.
type dirLock struct {
	f *os.File
}

// lockDir takes the lock without blocking. create says whether to create the
// LOCK file if it is missing; if it is missing and create is false, lockDir
// returns an error wrapping fs.ErrNotExist and creates nothing.
func lockDir(dir string, create bool) (*dirLock, error) {
	flags := os.O_RDWR
	if create {
		flags |= os.O_CREATE
	}
	f, err := os.OpenFile(filepath.Join(dir, lockName), flags, 0o640)
	if err != nil {
		return nil, err
	}
	for {
		err = unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB)
		if err != unix.EINTR {
			break
		}
	}
	if err != nil {
		f.Close()
		if errors.Is(err, unix.EWOULDBLOCK) {
			return nil, &LockedError{Dir: dir, PID: lockHolder(dir)}
		}
		return nil, fmt.Errorf("journal: lock %s: %w", dir, err)
	}
	return &dirLock{f: f}, nil
}

// lockHolder reads the pid a holder wrote into LOCK; 0 if unknown or dead.
func lockHolder(dir string) int {
	b, err := os.ReadFile(filepath.Join(dir, lockName))
	if err != nil {
		return 0
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || pid <= 0 {
		return 0
	}
	// A pid left by an earlier holder that has died (the current holder has
	// not written its own yet) would mislead: report unknown instead.
	if err := unix.Kill(pid, 0); err == unix.ESRCH {
		return 0
	}
	return pid
}

// writePID records the holder. It is informational (for LockedError), so it
// is not fsynced.
func (l *dirLock) writePID() error {
	s := strconv.Itoa(os.Getpid()) + "\n"
	if err := l.f.Truncate(0); err != nil {
		return err
	}
	_, err := l.f.WriteAt([]byte(s), 0)
	return err
}

// release drops the lock (closing the descriptor releases the flock).
func (l *dirLock) release() {
	if l != nil && l.f != nil {
		l.f.Close()
		l.f = nil
	}
}

// syncDir fsyncs a directory so that entries created or removed in it are
// durable.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("fsync directory %s: %w", dir, err)
	}
	return nil
}

// mkdirAllDurable is os.MkdirAll followed by an fsync of the parent of every
// directory it created, so the new path survives a crash. It returns whether
// it created anything, and errors from the fsyncs separately (those are
// fatal, the others are not).
func mkdirAllDurable(dir string) (syncErr, err error) {
	dir = filepath.Clean(dir)
	// Find the deepest existing ancestor.
	var created []string
	for p := dir; ; {
		if _, err := os.Stat(p); err == nil {
			break
		} else if !errors.Is(err, fs.ErrNotExist) {
			return nil, err
		}
		created = append(created, p)
		parent := filepath.Dir(p)
		if parent == p {
			break
		}
		p = parent
	}
	if len(created) == 0 {
		return nil, nil
	}
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return nil, err
	}
	// Shallowest first: the entry of each new directory lives in its parent.
	for i := len(created) - 1; i >= 0; i-- {
		if err := syncDir(filepath.Dir(created[i])); err != nil {
			return err, nil
		}
	}
	return nil, nil
}
