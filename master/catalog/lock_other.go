//go:build !linux

package catalog

import (
	"errors"
	"os"
	"syscall"
)

// lockShared does nothing outside Linux: a read-only open there does not
// exclude a running master (abs targets Linux; this keeps the package
// building elsewhere).
func lockShared(*os.File) error { return nil }

// lockConflict reports whether err from pebble's own lock means another
// process holds it.
func lockConflict(err error) bool {
	return errors.Is(err, syscall.EAGAIN) || errors.Is(err, errLocked)
}
