package source

import "golang.org/x/sys/unix"

// readAhead asks the kernel to start reading the first n bytes of the file
// open as fd, without waiting for them.
func readAhead(fd int, n int64) {
	_ = unix.Fadvise(fd, 0, n, unix.FADV_WILLNEED)
}
