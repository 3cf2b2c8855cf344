package source

import (
	"io/fs"
	"time"
)

// statInfo is what an lstat tells a dump or a restore.
type statInfo struct {
	mode         fs.FileMode
	size         int64
	mtime, ctime time.Time
	uid, gid     int
}

func (s statInfo) isDir() bool     { return s.mode.IsDir() }
func (s statInfo) isRegular() bool { return s.mode.IsRegular() }
func (s statInfo) isSymlink() bool { return s.mode&fs.ModeSymlink != 0 }

// pathErr names the operation and the path (relative to the volume or the
// target) in an error, as os does.
func pathErr(op, name string, err error) error {
	if err == nil {
		return nil
	}
	return &fs.PathError{Op: op, Path: name, Err: err}
}
