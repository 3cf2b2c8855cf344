package tape

import (
	"os"
	"syscall"

	"golang.org/x/sys/unix"
)

// startWriteback asks the kernel to start writing back n bytes of f from
// off, without waiting: the payload then reaches the disk while the dump
// goes on, and the fsync that makes it durable has little left to do. It
// changes nothing about durability (Close still fsyncs); errors are
// ignored, as the fsync reports any that matter.
func startWriteback(f *os.File, off, n int64) {
	rc, err := f.SyscallConn()
	if err != nil {
		return
	}
	rc.Control(func(fd uintptr) {
		_ = unix.SyncFileRange(int(fd), off, n, unix.SYNC_FILE_RANGE_WRITE)
	})
}

// ctimeOf is the inode change time of fi, in nanoseconds.
func ctimeOf(fi os.FileInfo) int64 {
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		return st.Ctim.Nano()
	}
	return 0
}
