//go:build linux || darwin || freebsd || openbsd || netbsd

package source

import (
	"errors"
	"io/fs"
	"os"
	"runtime"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// The filesystem primitives of dumps and restores. Every path they take is a
// single name inside a directory held open as a descriptor (never a path
// with a "/"), and nothing follows a symlink: directories are opened with
// O_DIRECTORY|O_NOFOLLOW from their parent's descriptor, starting at the
// volume or the restore target, so a symlink anywhere, planted by an archive
// or swapped in during a dump, fails the open instead of being followed.

func statFromSys(st *unix.Stat_t) statInfo {
	m := fs.FileMode(st.Mode & 0o777)
	switch uint32(st.Mode) & unix.S_IFMT {
	case unix.S_IFBLK:
		m |= fs.ModeDevice
	case unix.S_IFCHR:
		m |= fs.ModeDevice | fs.ModeCharDevice
	case unix.S_IFDIR:
		m |= fs.ModeDir
	case unix.S_IFIFO:
		m |= fs.ModeNamedPipe
	case unix.S_IFLNK:
		m |= fs.ModeSymlink
	case unix.S_IFSOCK:
		m |= fs.ModeSocket
	}
	if st.Mode&unix.S_ISGID != 0 {
		m |= fs.ModeSetgid
	}
	if st.Mode&unix.S_ISUID != 0 {
		m |= fs.ModeSetuid
	}
	if st.Mode&unix.S_ISVTX != 0 {
		m |= fs.ModeSticky
	}
	return statInfo{mode: m, size: st.Size,
		mtime: time.Unix(int64(st.Mtim.Sec), int64(st.Mtim.Nsec)),
		ctime: time.Unix(int64(st.Ctim.Sec), int64(st.Ctim.Nsec)),
		uid:   int(st.Uid), gid: int(st.Gid)}
}

func retry(f func() error) error {
	for {
		if err := f(); err != syscall.EINTR {
			return err
		}
	}
}

// lstatAt lstats name in directory dirfd. An empty name stats dirfd itself.
func lstatAt(dirfd int, name string) (statInfo, error) {
	var st unix.Stat_t
	var err error
	if name == "" {
		err = retry(func() error { return unix.Fstat(dirfd, &st) })
	} else {
		err = retry(func() error { return unix.Fstatat(dirfd, name, &st, unix.AT_SYMLINK_NOFOLLOW) })
	}
	if err != nil {
		return statInfo{}, err
	}
	return statFromSys(&st), nil
}

// openRootDir opens the volume or restore target directory itself.
func openRootDir(path string) (int, error) {
	var fd int
	err := retry(func() (err error) {
		fd, err = unix.Open(path, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
		return err
	})
	return fd, err
}

// openDirAt opens directory name of dirfd, refusing a symlink.
func openDirAt(dirfd int, name string) (int, error) {
	var fd int
	err := retry(func() (err error) {
		fd, err = unix.Openat(dirfd, name, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
		return err
	})
	return fd, err
}

// openReadAt opens name of dirfd for reading, refusing a symlink, and
// without blocking on a fifo swapped in since it was listed (the caller
// checks the type with fstat).
func openReadAt(dirfd int, name string) (int, error) {
	var fd int
	err := retry(func() (err error) {
		fd, err = unix.Openat(dirfd, name, unix.O_RDONLY|unix.O_NOFOLLOW|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
		return err
	})
	return fd, err
}

// createAt creates regular file name in dirfd afresh (it must not exist),
// writable by the owner only, never through a symlink.
func createAt(dirfd int, name string) (int, error) {
	var fd int
	err := retry(func() (err error) {
		fd, err = unix.Openat(dirfd, name, unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o600)
		return err
	})
	return fd, err
}

func closeFD(fd int) { unix.Close(fd) }

func mkdirAt(dirfd int, name string, perm uint32) error {
	return retry(func() error { return unix.Mkdirat(dirfd, name, perm) })
}

func symlinkAt(target string, dirfd int, name string) error {
	return retry(func() error { return unix.Symlinkat(target, dirfd, name) })
}

// unlinkAt removes a non-directory name of dirfd.
func unlinkAt(dirfd int, name string) error {
	return retry(func() error { return unix.Unlinkat(dirfd, name, 0) })
}

// rmdirAt removes an empty directory name of dirfd.
func rmdirAt(dirfd int, name string) error {
	return retry(func() error { return unix.Unlinkat(dirfd, name, unix.AT_REMOVEDIR) })
}

// lchownAt changes the owner of name in dirfd, not following a symlink.
func lchownAt(dirfd int, name string, uid, gid int) error {
	return retry(func() error { return unix.Fchownat(dirfd, name, uid, gid, unix.AT_SYMLINK_NOFOLLOW) })
}

// lchtimesAt sets the times of name in dirfd, not following a symlink.
func lchtimesAt(dirfd int, name string, atime, mtime time.Time) error {
	ts := []unix.Timespec{unix.NsecToTimespec(atime.UnixNano()), unix.NsecToTimespec(mtime.UnixNano())}
	return retry(func() error { return unix.UtimesNanoAt(dirfd, name, ts, unix.AT_SYMLINK_NOFOLLOW) })
}

func fchown(fd, uid, gid int) error {
	return retry(func() error { return unix.Fchown(fd, uid, gid) })
}

func fchmod(fd int, m fs.FileMode) error {
	return retry(func() error { return unix.Fchmod(fd, sysMode(m)) })
}

// sysMode converts permission and setuid/setgid/sticky bits for chmod.
func sysMode(m fs.FileMode) uint32 {
	v := uint32(m.Perm())
	if m&fs.ModeSetuid != 0 {
		v |= unix.S_ISUID
	}
	if m&fs.ModeSetgid != 0 {
		v |= unix.S_ISGID
	}
	if m&fs.ModeSticky != 0 {
		v |= unix.S_ISVTX
	}
	return v
}

// readlinkAt reads the target of symlink name of dirfd.
func readlinkAt(dirfd int, name string) (string, error) {
	for size := 256; ; size *= 2 {
		b := make([]byte, size)
		var n int
		err := retry(func() (err error) {
			n, err = unix.Readlinkat(dirfd, name, b)
			return err
		})
		if err != nil {
			return "", err
		}
		if n < size {
			return string(b[:n]), nil
		}
	}
}

// readFD reads into b from fd until b is full or the file ends; it returns
// how many bytes it read.
func readFD(fd int, b []byte) (int, error) {
	n := 0
	for n < len(b) {
		m, err := unix.Read(fd, b[n:])
		if err == syscall.EINTR {
			continue
		}
		if err != nil {
			return n, err
		}
		if m == 0 {
			break
		}
		n += m
	}
	return n, nil
}

// writeFD writes all of b to fd.
func writeFD(fd int, b []byte) error {
	for len(b) > 0 {
		m, err := unix.Write(fd, b)
		if err == syscall.EINTR {
			continue
		}
		if err != nil {
			return err
		}
		b = b[m:]
	}
	return nil
}

// readDir lists directory fd, whose path (for messages) is name. The
// descriptor stays open.
func readDir(fd int, name string) ([]fs.DirEntry, error) {
	nfd, err := unix.Dup(fd)
	if err != nil {
		return nil, pathErr("readdir", name, err)
	}
	unix.CloseOnExec(nfd)
	f := os.NewFile(uintptr(nfd), name)
	defer f.Close()
	ents, err := f.ReadDir(-1)
	if err != nil {
		return nil, err
	}
	return ents, nil
}

// vanished says whether err, from opening or lstat'ing a path listed
// earlier, means the path is gone or is no longer what it was (replaced by
// a symlink or a non-directory), rather than unreadable.
func vanished(err error) bool {
	return errors.Is(err, unix.ENOENT) || errors.Is(err, unix.ENOTDIR) || isSymlinkRefused(err)
}

// isSymlinkRefused says whether err is what opening a symlink with
// O_NOFOLLOW gives: ELOOP, or EMLINK on FreeBSD.
func isSymlinkRefused(err error) bool {
	return errors.Is(err, unix.ELOOP) || runtime.GOOS == "freebsd" && errors.Is(err, unix.EMLINK)
}

// notSymlink says whether err is what readlink gives for a path that is not
// a symlink (any more).
func notSymlink(err error) bool { return errors.Is(err, unix.EINVAL) }
