package source

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// streamEntry is what the tests compare of one entry of a dump stream.
type streamEntry struct {
	name     string
	typ      byte
	mode     int64
	uid, gid int
	mtime    time.Time
	size     int64
	link     string
	sum      [32]byte
}

func (e streamEntry) String() string {
	return fmt.Sprintf("%s %c mode=%o uid=%d gid=%d mtime=%s size=%d link=%q sum=%x",
		e.name, e.typ, e.mode, e.uid, e.gid, e.mtime.Format(time.RFC3339Nano), e.size, e.link, e.sum[:6])
}

// streamEntries lists the entries between the header and the trailer.
func streamEntries(t *testing.T, stream []byte) []streamEntry {
	t.Helper()
	tr := tar.NewReader(bytes.NewReader(stream))
	var out []streamEntry
	for i := 0; ; i++ {
		h, err := tr.Next()
		if err == io.EOF {
			return out
		}
		if err != nil {
			t.Fatal(err)
		}
		if i == 0 || h.Typeflag == tar.TypeXGlobalHeader {
			continue // the header entry and the trailer
		}
		b, err := io.ReadAll(tr)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, streamEntry{name: h.Name, typ: h.Typeflag, mode: h.Mode, uid: h.Uid, gid: h.Gid,
			mtime: h.ModTime, size: h.Size, link: h.Linkname, sum: sha256.Sum256(b)})
	}
}

// sequentialEntries is what a dump must hold, worked out the plain way: a
// sorted walk, one lstat (and one read) per path, in order.
func sequentialEntries(t *testing.T, vol string, threshold time.Time) []streamEntry {
	t.Helper()
	var out []streamEntry
	err := filepath.WalkDir(vol, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(vol, p)
		rel = filepath.ToSlash(rel)
		fi, err := os.Lstat(p)
		if err != nil {
			return err
		}
		// Owner and ctime, which os.FileInfo does not carry portably.
		dir, err := os.Open(filepath.Dir(p))
		if err != nil {
			return err
		}
		st, err := lstatAt(int(dir.Fd()), filepath.Base(p))
		dir.Close()
		if err != nil {
			return err
		}
		e := streamEntry{name: rel, mode: tarMode(fi.Mode()), uid: st.uid, gid: st.gid, mtime: fi.ModTime()}
		changed := threshold.IsZero() || !fi.ModTime().Before(threshold) || !st.ctime.Before(threshold)
		switch {
		case fi.IsDir():
			e.typ, e.name = tar.TypeDir, rel+"/"
			e.sum = sha256.Sum256(nil)
		case fi.Mode().IsRegular():
			if !changed {
				return nil
			}
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			e.typ, e.size, e.sum = tar.TypeReg, int64(len(b)), sha256.Sum256(b)
		case fi.Mode()&fs.ModeSymlink != 0:
			if !changed {
				return nil
			}
			e.typ, e.mode, e.sum = tar.TypeSymlink, 0o777, sha256.Sum256(nil)
			if e.link, err = os.Readlink(p); err != nil {
				return err
			}
		default:
			return nil
		}
		out = append(out, e)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func requireSameEntries(t *testing.T, want, got []streamEntry) {
	t.Helper()
	for i := range max(len(want), len(got)) {
		switch {
		case i >= len(want):
			t.Fatalf("entry %d: extra %v", i, got[i])
		case i >= len(got):
			t.Fatalf("entry %d: missing %v", i, want[i])
		case want[i] != got[i]:
			t.Fatalf("entry %d:\n\twant %v\n\tgot  %v", i, want[i], got[i])
		}
	}
}

// TestDumpMatchesSequentialWalk: the pipelined dump (workers reading ahead,
// files read whole or in part before the writer gets to them) writes
// exactly the entries, in the order, that a walk taking one path at a time
// finds: full and incremental, with files of every size class (empty,
// small, at the limits of reading whole and reading ahead, larger).
func TestDumpMatchesSequentialWalk(t *testing.T) {
	part, vol := newPartition(t)
	part.TimestampSlack = time.Millisecond
	rng := rand.New(rand.NewPCG(11, 12))
	randomTree(t, rng, vol, 400)
	os.Mkdir(filepath.Join(vol, "big"), 0o755)
	for i, n := range []int{0, 1, bufferedMax - 1, bufferedMax, bufferedMax + 1, prefetchMax, prefetchMax + 1, 2*prefetchMax + 12345} {
		b := make([]byte, n)
		for j := range b {
			b[j] = byte(rng.Uint32())
		}
		p := filepath.Join(vol, "big", fmt.Sprintf("f%02d", i))
		if err := os.WriteFile(p, b, 0o640); err != nil {
			t.Fatal(err)
		}
		os.Chtimes(p, baseTime, baseTime)
	}
	stream, st := dump(t, part, "vol", time.Time{})
	requireSameEntries(t, sequentialEntries(t, vol, time.Time{}), streamEntries(t, stream))
	if st.Files+st.Dirs+st.Symlinks != len(streamEntries(t, stream)) {
		t.Fatalf("stats %+v for %d entries", st, len(streamEntries(t, stream)))
	}

	time.Sleep(20 * time.Millisecond)
	mutate(t, rng, vol)
	p := filepath.Join(vol, "big", "f07")
	f, _ := os.OpenFile(p, os.O_WRONLY|os.O_APPEND, 0)
	f.Write([]byte("more"))
	f.Close()
	inc, _ := dump(t, part, "vol", st.DumpDate)
	requireSameEntries(t, sequentialEntries(t, vol, st.DumpDate.Add(-time.Millisecond)), streamEntries(t, inc))
}

// TestDumpDoesNotFollowSymlinks: a volume whose symlinks point at
// directories, inside and outside it, is dumped without descending through
// them, and a symlink to a file is stored as a symlink.
func TestDumpDoesNotFollowSymlinks(t *testing.T) {
	part, vol := newPartition(t)
	outside := t.TempDir()
	os.WriteFile(filepath.Join(outside, "secret"), []byte("secret"), 0o644)
	os.Mkdir(filepath.Join(vol, "d"), 0o755)
	os.WriteFile(filepath.Join(vol, "d", "f"), []byte("f"), 0o644)
	os.Symlink(outside, filepath.Join(vol, "out"))
	os.Symlink("d", filepath.Join(vol, "in"))
	os.Symlink(filepath.Join(outside, "secret"), filepath.Join(vol, "file"))
	stream, _ := dump(t, part, "vol", time.Time{})
	var names []string
	for _, e := range streamEntries(t, stream) {
		names = append(names, fmt.Sprintf("%c %s", e.typ, e.name))
		if bytes.Contains([]byte(e.name), []byte("secret")) || e.sum == sha256.Sum256([]byte("secret")) {
			t.Errorf("read through a symlink: %v", e)
		}
	}
	want := "5 ./,5 d/,0 d/f,2 file,2 in,2 out"
	if got := strings.Join(names, ","); got != want {
		t.Fatalf("entries %s, want %s", got, want)
	}
}

// TestRestoreSamePathTwice: a stream holding one path twice restores the
// later entry, as applying entries one at a time would, although files are
// written by several writers.
func TestRestoreSamePathTwice(t *testing.T) {
	now := time.Now()
	big := strings.Repeat("B", 3*streamChunk+7)
	stream := buildStream(t, true, now, time.Time{},
		ent{typ: tar.TypeDir, name: "./"},
		ent{typ: tar.TypeReg, name: "a", data: "first"},
		ent{typ: tar.TypeReg, name: "b", data: big},
		ent{typ: tar.TypeReg, name: "a", data: "second, longer"},
		ent{typ: tar.TypeReg, name: "b", data: "small now"},
		ent{typ: tar.TypeReg, name: "c", data: "small"},
		ent{typ: tar.TypeReg, name: "c", data: big},
	)
	target := filepath.Join(t.TempDir(), "t")
	if _, err := (DirRestorer{}).Restore(context.Background(), target, bytes.NewReader(stream), RestoreOptions{}); err != nil {
		t.Fatal(err)
	}
	for name, want := range map[string]string{"a": "second, longer", "b": "small now", "c": big} {
		if b, err := os.ReadFile(filepath.Join(target, name)); err != nil || string(b) != want {
			t.Errorf("%s: %d bytes %.20q, %v; want %d bytes", name, len(b), b, err, len(want))
		}
	}
}

// TestRestoreLargeFiles: files read whole, handed over in chunks, and at
// the limits between, restore exactly with their modes and times.
func TestRestoreLargeFiles(t *testing.T) {
	part, vol := newPartition(t)
	rng := rand.New(rand.NewPCG(5, 6))
	for i, n := range []int{0, bufferedMax, bufferedMax + 1, streamChunk*3 - 1, streamChunk * 3, streamChunk*3 + 1, restoreBuffered + 1} {
		b := make([]byte, n)
		for j := range b {
			b[j] = byte(rng.Uint32())
		}
		p := filepath.Join(vol, fmt.Sprintf("f%d", i))
		if err := os.WriteFile(p, b, 0o600); err != nil {
			t.Fatal(err)
		}
		os.Chmod(p, fileModes[i%len(fileModes)])
		os.Chtimes(p, randTime(rng), randTime(rng))
	}
	want := snapshot(t, vol)
	stream, _ := dump(t, part, "vol", time.Time{})
	target := filepath.Join(t.TempDir(), "t")
	restoreChain(t, target, stream)
	requireSameTree(t, "restore", want, snapshot(t, target))
}

// cancelAfter cancels a context once n bytes were read through it.
type cancelAfter struct {
	r      io.Reader
	n      int64
	cancel context.CancelFunc
}

func (c *cancelAfter) Read(b []byte) (int, error) {
	n, err := c.r.Read(b)
	if c.n -= int64(n); c.n <= 0 {
		c.cancel()
	}
	return n, err
}

// TestRestoreCancelled: cancelling a restore midway stops it with the
// context's error, with files still being written when it happened.
func TestRestoreCancelled(t *testing.T) {
	part, vol := newPartition(t)
	rng := rand.New(rand.NewPCG(7, 8))
	randomTree(t, rng, vol, 300)
	stream, _ := dump(t, part, "vol", time.Time{})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	target := filepath.Join(t.TempDir(), "t")
	_, err := (DirRestorer{}).Restore(ctx, target, &cancelAfter{r: bytes.NewReader(stream), n: int64(len(stream) / 2), cancel: cancel}, RestoreOptions{})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("restore cancelled midway: %v, want context.Canceled", err)
	}
}

// TestRestoreHostileWithWriters: hostile streams whose refusal depends on
// the order of entries, now that files are written by other goroutines
// than the one checking the entries. Nothing outside the target changes.
func TestRestoreHostileWithWriters(t *testing.T) {
	a0 := time.Now()
	a1 := a0.Add(time.Second)
	big := strings.Repeat("P", 3*streamChunk)
	reg := func(name, data string) ent { return ent{typ: tar.TypeReg, name: name, data: data} }
	dir := func(name string) ent { return ent{typ: tar.TypeDir, name: name} }
	sym := func(name, to string) ent { return ent{typ: tar.TypeSymlink, name: name, link: to} }
	for _, c := range []struct {
		name    string
		pre     []ent // restored first, if any
		stream  []ent
		wantErr string
	}{
		{"symlink planted, then a directory beneath it", nil,
			[]ent{dir("./"), sym("evil", "OUTSIDE"), dir("evil/sub/"), reg("evil/sub/f", "PWNED")}, `parent "evil" is a symlink`},
		{"symlink planted, then a large file through it", nil,
			[]ent{dir("./"), reg("a", "ok"), sym("evil", "OUTSIDE"), reg("evil/big", big)}, `parent "evil" is a symlink`},
		{"symlink to a directory inside, then a directory through it", nil,
			[]ent{dir("./"), dir("d/"), reg("d/f", "ok"), sym("l", "d"), dir("l/x/")}, `parent "l" is a symlink`},
		{"a file as a parent", nil,
			[]ent{dir("./"), reg("f", "ok"), reg("f/g", "PWNED")}, `parent "f" is not a directory`},
		{"files written beneath a directory that then becomes a symlink",
			[]ent{dir("./"), dir("d/"), reg("d/f", "old")},
			[]ent{dir("./"), reg("d/f", "new"), reg("d/g", big), sym("d", "OUTSIDE"), reg("d/h", "PWNED")}, `parent "d" is a symlink`},
	} {
		t.Run(c.name, func(t *testing.T) {
			a := newArena(t)
			fix := func(es []ent) []ent {
				out := append([]ent(nil), es...)
				for i := range out {
					out[i].link = strings.ReplaceAll(out[i].link, "OUTSIDE", a.outside)
				}
				return out
			}
			var after time.Time
			if c.pre != nil {
				st, err := DirRestorer{}.Restore(context.Background(), a.target, bytes.NewReader(buildStream(t, true, a0, time.Time{}, fix(c.pre)...)), RestoreOptions{})
				if err != nil {
					t.Fatalf("previous dump: %v", err)
				}
				after = st.DumpDate
			}
			stream := buildStream(t, c.pre == nil, a1, a0, fix(c.stream)...)
			if c.pre == nil {
				stream = buildStream(t, true, a1, time.Time{}, fix(c.stream)...)
			}
			before := a.outsideState(t)
			_, err := DirRestorer{}.Restore(context.Background(), a.target, bytes.NewReader(stream), RestoreOptions{After: after})
			if err == nil || !strings.Contains(err.Error(), c.wantErr) {
				t.Fatalf("error %v, want one saying %q", err, c.wantErr)
			}
			requireSameTree(t, "outside the target", before, a.outsideState(t))
			filepath.WalkDir(a.target, func(p string, d fs.DirEntry, err error) error {
				if err == nil && d.Type().IsRegular() {
					if b, _ := os.ReadFile(p); string(b) == "PWNED" {
						t.Errorf("hostile content written at %s", p)
					}
				}
				return nil
			})
		})
	}
}
