//go:build !linux

package source

import (
	"os"
	"time"
)

// lchtimes is not implemented here: restored symlinks keep the restore time.
func lchtimes(dir *os.File, base string, atime, mtime time.Time) error { return nil }

const haveLchtimes = false
