package source

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io/fs"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"
)

// node is what a tree comparison looks at for one path.
type node struct {
	typ   string // "d", "f", "l"
	mode  fs.FileMode
	size  int64
	sum   string
	mtime int64 // UnixNano; PAX keeps nanoseconds
	link  string
}

func (n node) String() string {
	return fmt.Sprintf("%s %v size=%d sha=%.12s mtime=%d link=%q", n.typ, n.mode, n.size, n.sum, n.mtime, n.link)
}

// snapshot describes every path under dir ("." is dir itself).
func snapshot(t testing.TB, dir string) map[string]node {
	t.Helper()
	out := map[string]node{}
	err := filepath.WalkDir(dir, func(p string, e fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		fi, err := os.Lstat(p)
		if err != nil {
			return err
		}
		n := node{mode: fi.Mode() & (fs.ModePerm | fs.ModeSetuid | fs.ModeSetgid | fs.ModeSticky), mtime: fi.ModTime().UnixNano()}
		switch {
		case fi.IsDir():
			n.typ = "d"
		case fi.Mode().IsRegular():
			n.typ, n.size = "f", fi.Size()
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			s := sha256.Sum256(b)
			n.sum = hex.EncodeToString(s[:])
		case fi.Mode()&fs.ModeSymlink != 0:
			n.typ, n.mode = "l", 0
			if n.link, err = os.Readlink(p); err != nil {
				return err
			}
			if !haveLchtimes {
				n.mtime = 0
			}
		default:
			n.typ = "other"
		}
		out[filepath.ToSlash(rel)] = n
		return nil
	})
	if err != nil {
		t.Fatalf("snapshot: %v", err)
	}
	return out
}

// diffTrees lists the differences between want and got, sorted.
func diffTrees(want, got map[string]node) []string {
	var d []string
	for p, w := range want {
		g, ok := got[p]
		switch {
		case !ok:
			d = append(d, fmt.Sprintf("missing %s (%v)", p, w))
		case g != w:
			d = append(d, fmt.Sprintf("differs %s:\n\twant %v\n\tgot  %v", p, w, g))
		}
	}
	for p, g := range got {
		if _, ok := want[p]; !ok {
			d = append(d, fmt.Sprintf("extra %s (%v)", p, g))
		}
	}
	sort.Strings(d)
	return d
}

func requireSameTree(t testing.TB, what string, want, got map[string]node) {
	t.Helper()
	if d := diffTrees(want, got); len(d) > 0 {
		if len(d) > 20 {
			d = append(d[:20], "...")
		}
		t.Fatalf("%s: trees differ:\n%s", what, strings.Join(d, "\n"))
	}
}

var baseTime = time.Date(2024, 5, 6, 7, 8, 9, 123456789, time.UTC)

func randTime(rng *rand.Rand) time.Time {
	return baseTime.Add(time.Duration(rng.Int64N(int64(300 * 24 * time.Hour))))
}

func randContent(rng *rand.Rand) []byte {
	var n int
	switch rng.IntN(6) {
	case 0:
		n = 0
	case 1:
		n = 1<<20 + rng.IntN(1000) // ~1 MiB
	case 2:
		n = 512 * (1 + rng.IntN(4)) // block boundaries
	default:
		n = rng.IntN(5000)
	}
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(rng.Uint32())
	}
	return b
}

var fileModes = []fs.FileMode{0o600, 0o755, 0o444, 0o640, 0o4755}

func randName(rng *rand.Rand) string {
	names := []string{"a", "b", "c", "data", "x y", "ünï", ".hidden", "-dash", "long" + strings.Repeat("n", 120)}
	return fmt.Sprintf("%s%d", names[rng.IntN(len(names))], rng.IntN(50))
}

func writeFile(t testing.TB, rng *rand.Rand, p string, mtime time.Time) {
	t.Helper()
	if err := os.WriteFile(p, randContent(rng), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(p, fileModes[rng.IntN(len(fileModes))]); err != nil {
		t.Fatal(err)
	}
	if err := os.Chtimes(p, mtime, mtime); err != nil {
		t.Fatal(err)
	}
}

func makeSymlink(t testing.TB, rng *rand.Rand, p string) {
	t.Helper()
	targets := []string{"a1", "../b2", "nowhere/dangling", "/etc/hostname", ".", "..", "sub/" + randName(rng)}
	if err := os.Symlink(targets[rng.IntN(len(targets))], p); err != nil {
		t.Fatal(err)
	}
	tm := randTime(rng)
	if err := lchtimesPath(p, tm); err != nil {
		t.Fatal(err)
	}
}

func lchtimesPath(p string, tm time.Time) error {
	d, err := os.Open(filepath.Dir(p))
	if err != nil {
		return err
	}
	defer d.Close()
	return lchtimes(d, filepath.Base(p), tm, tm)
}

// randomTree fills dir with about n entries: files of varied sizes and modes,
// nested and empty directories, relative, absolute and dangling symlinks, and
// a ".abs/manifest" of its own.
func randomTree(t testing.TB, rng *rand.Rand, dir string, n int) {
	t.Helper()
	dirs := []string{dir}
	for i := 0; i < n; i++ {
		parent := dirs[rng.IntN(len(dirs))]
		p := filepath.Join(parent, randName(rng))
		if _, err := os.Lstat(p); err == nil {
			continue
		}
		switch r := rng.IntN(10); {
		case r < 6:
			writeFile(t, rng, p, randTime(rng))
		case r < 8:
			if err := os.Mkdir(p, []fs.FileMode{0o755, 0o700, 0o750}[rng.IntN(3)]); err != nil {
				t.Fatal(err)
			}
			dirs = append(dirs, p)
		default:
			makeSymlink(t, rng, p)
		}
	}
	// A volume may hold what looks like our header entry.
	if err := os.MkdirAll(filepath.Join(dir, ".abs"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, ".abs", "manifest"), []byte("d .\x00f evil\x00"), 0o644); err != nil {
		t.Fatal(err)
	}
	setDirTimes(t, rng, dir)
}

// setDirTimes gives every directory a random mtime (deepest first, since
// nothing changes a directory's mtime but its own entries).
func setDirTimes(t testing.TB, rng *rand.Rand, dir string) {
	t.Helper()
	var ds []string
	filepath.WalkDir(dir, func(p string, e fs.DirEntry, err error) error {
		if err == nil && e.IsDir() {
			ds = append(ds, p)
		}
		return nil
	})
	for i := len(ds) - 1; i >= 0; i-- {
		tm := randTime(rng)
		if err := os.Chtimes(ds[i], tm, tm); err != nil {
			t.Fatal(err)
		}
	}
}

func dump(t testing.TB, p *DirPartition, vol string, since time.Time) ([]byte, DumpStats) {
	t.Helper()
	var buf bytes.Buffer
	st, err := p.Dump(context.Background(), vol, since, &buf, nil)
	if err != nil {
		t.Fatalf("dump %s since %v: %v", vol, since, err)
	}
	if st.Bytes != int64(buf.Len()) {
		t.Fatalf("DumpStats.Bytes = %d, stream has %d", st.Bytes, buf.Len())
	}
	return buf.Bytes(), st
}
