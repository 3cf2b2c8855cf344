//go:build !linux

package source

import (
	"io/fs"
	"os"
	"time"
)

// ctime falls back to the mtime where the inode change time is not wired up:
// a chmod or rename alone is then not seen by an incremental.
func ctime(fi fs.FileInfo) time.Time { return fi.ModTime() }

// lchtimes is not implemented here: restored symlinks keep the restore time.
func lchtimes(dir *os.File, base string, atime, mtime time.Time) error { return nil }

const haveLchtimes = false
