//go:build !(linux || darwin || freebsd || openbsd || netbsd)

package source

import (
	"errors"
	"io/fs"
	"time"
)

// Directory dumps and restores use the descriptor-relative calls of
// fsys_unix.go; this platform does not have them all.
var errUnsupported = errors.New("source: directory dumps and restores are not supported on this platform")

func lstatAt(dirfd int, name string) (statInfo, error)                { return statInfo{}, errUnsupported }
func openRootDir(path string) (int, error)                            { return -1, errUnsupported }
func openDirAt(dirfd int, name string) (int, error)                   { return -1, errUnsupported }
func openReadAt(dirfd int, name string) (int, error)                  { return -1, errUnsupported }
func createAt(dirfd int, name string) (int, error)                    { return -1, errUnsupported }
func closeFD(fd int)                                                  {}
func mkdirAt(dirfd int, name string, perm uint32) error               { return errUnsupported }
func symlinkAt(target string, dirfd int, name string) error           { return errUnsupported }
func unlinkAt(dirfd int, name string) error                           { return errUnsupported }
func rmdirAt(dirfd int, name string) error                            { return errUnsupported }
func lchownAt(dirfd int, name string, uid, gid int) error             { return errUnsupported }
func lchtimesAt(dirfd int, name string, atime, mtime time.Time) error { return errUnsupported }
func fchown(fd, uid, gid int) error                                   { return errUnsupported }
func fchmod(fd int, m fs.FileMode) error                              { return errUnsupported }
func readlinkAt(dirfd int, name string) (string, error)               { return "", errUnsupported }
func readFD(fd int, b []byte) (int, error)                            { return 0, errUnsupported }
func writeFD(fd int, b []byte) error                                  { return errUnsupported }
func readDir(fd int, name string) ([]fs.DirEntry, error)              { return nil, errUnsupported }
func vanished(err error) bool                                         { return false }
func notSymlink(err error) bool                                       { return false }
