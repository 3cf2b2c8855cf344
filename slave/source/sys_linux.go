package source

import (
	"os"
	"syscall"
	"time"
	"unsafe"
)

const atSymlinkNofollow = 0x100

// lchtimes sets the times of the symlink base inside dir (opened through the
// test's own directory) without following it.
func lchtimes(dir *os.File, base string, atime, mtime time.Time) error {
	p, err := syscall.BytePtrFromString(base)
	if err != nil {
		return err
	}
	ts := [2]syscall.Timespec{syscall.NsecToTimespec(atime.UnixNano()), syscall.NsecToTimespec(mtime.UnixNano())}
	rc, err := dir.SyscallConn()
	if err != nil {
		return err
	}
	var errno syscall.Errno
	if err := rc.Control(func(fd uintptr) {
		_, _, errno = syscall.Syscall6(syscall.SYS_UTIMENSAT, fd, uintptr(unsafe.Pointer(p)),
			uintptr(unsafe.Pointer(&ts[0])), atSymlinkNofollow, 0, 0)
	}); err != nil {
		return err
	}
	if errno != 0 {
		return &os.PathError{Op: "utimensat", Path: base, Err: errno}
	}
	return nil
}

const haveLchtimes = true
