package source

import (
	"archive/tar"
	"bytes"
	"context"
	"io"
	"io/fs"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

func newPartition(t testing.TB) (*DirPartition, string) {
	t.Helper()
	base := t.TempDir()
	part := &DirPartition{ServerName: "srv", PartitionName: "p1", Path: filepath.Join(base, "part")}
	vol := filepath.Join(part.Path, "vol")
	if err := os.MkdirAll(vol, 0o755); err != nil {
		t.Fatal(err)
	}
	return part, vol
}

func restoreChain(t testing.TB, target string, streams ...[]byte) {
	t.Helper()
	var rs []io.Reader
	for _, s := range streams {
		rs = append(rs, bytes.NewReader(s))
	}
	if err := RestoreChain(context.Background(), DirRestorer{}, target, rs...); err != nil {
		t.Fatalf("restore chain of %d: %v", len(streams), err)
	}
}

func TestFullRoundTrip(t *testing.T) {
	part, vol := newPartition(t)
	rng := rand.New(rand.NewPCG(1, 2))
	randomTree(t, rng, vol, 120)
	if err := os.Mkdir(filepath.Join(vol, "empty"), 0o711); err != nil {
		t.Fatal(err)
	}
	want := snapshot(t, vol)

	stream, st := dump(t, part, "vol", time.Time{})
	if st.Files == 0 || st.Dirs < 3 || st.Symlinks == 0 || st.Listed != len(want) {
		t.Fatalf("stats %+v, tree has %d paths", st, len(want))
	}
	if again, _ := dump(t, part, "vol", time.Time{}); len(again) != len(stream) {
		t.Errorf("two full dumps of an unchanged tree differ in size: %d vs %d", len(again), len(stream))
	}
	target := filepath.Join(t.TempDir(), "restored")
	restoreChain(t, target, stream)
	requireSameTree(t, "full restore", want, snapshot(t, target))

	// The stream is plain PAX tar with clean relative names, header first.
	tr := tar.NewReader(bytes.NewReader(stream))
	var names []string
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if strings.HasPrefix(h.Name, "/") || strings.Contains("/"+h.Name+"/", "/../") {
			t.Errorf("unsafe name %q in our own dump", h.Name)
		}
		names = append(names, h.Name)
	}
	if names[0] != HeaderName || names[1] != "./" {
		t.Errorf("stream starts %q, want header then ./", names[:2])
	}
	if !slices.Contains(names[1:], ".abs/manifest") {
		t.Errorf("the volume's own .abs/manifest is not in the stream")
	}
}

func TestFullRestoreRefusesNonEmptyTarget(t *testing.T) {
	part, vol := newPartition(t)
	os.WriteFile(filepath.Join(vol, "f"), []byte("x"), 0o644)
	stream, _ := dump(t, part, "vol", time.Time{})
	target := t.TempDir()
	os.WriteFile(filepath.Join(target, "keep"), []byte("mine"), 0o644)
	_, err := DirRestorer{}.Restore(context.Background(), target, bytes.NewReader(stream), RestoreOptions{})
	if err == nil || !strings.Contains(err.Error(), "not empty") {
		t.Fatalf("restore into non-empty target: %v", err)
	}
	if b, _ := os.ReadFile(filepath.Join(target, "keep")); string(b) != "mine" {
		t.Fatal("target content touched")
	}
}

// TestIncrementalSelection checks what an incremental holds: every directory,
// only the files changed since (a chmod and an old-mtime copy count through
// the ctime), and the manifest lists everything.
func TestIncrementalSelection(t *testing.T) {
	part, vol := newPartition(t)
	part.TimestampSlack = time.Millisecond
	for _, d := range []string{"d1", "d1/d2", "d3"} {
		os.Mkdir(filepath.Join(vol, d), 0o755)
	}
	for _, f := range []string{"a", "d1/b", "d1/d2/c", "d3/e", "d3/f"} {
		os.WriteFile(filepath.Join(vol, f), []byte(f), 0o644)
		os.Chtimes(filepath.Join(vol, f), baseTime, baseTime)
	}
	time.Sleep(30 * time.Millisecond) // ctimes strictly before the dump date
	_, full := dump(t, part, "vol", time.Time{})
	time.Sleep(30 * time.Millisecond) // changes strictly after it

	if err := os.Chmod(filepath.Join(vol, "d1/b"), 0o600); err != nil { // ctime only
		t.Fatal(err)
	}
	// Content changed but mtime put back in the past (cp -p, rsync -t).
	os.WriteFile(filepath.Join(vol, "d3/e"), []byte("new"), 0o644)
	os.Chtimes(filepath.Join(vol, "d3/e"), baseTime, baseTime)
	os.Remove(filepath.Join(vol, "d3/f"))

	stream, st := dump(t, part, "vol", full.DumpDate)
	var got []string
	tr := tar.NewReader(bytes.NewReader(stream))
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if h.Typeflag == tar.TypeReg {
			got = append(got, h.Name)
		}
		if h.Name == HeaderName {
			b, _ := io.ReadAll(tr)
			if !bytes.Contains(b, []byte("f a\x00")) || bytes.Contains(b, []byte("d3/f")) {
				t.Errorf("manifest %q", b)
			}
		}
	}
	want := []string{HeaderName, "d1/b", "d3/e"}
	if !slices.Equal(got, want) {
		t.Errorf("incremental files %q, want %q", got, want)
	}
	if st.Files != 2 || st.Dirs != 4 || st.Listed != 8 {
		t.Errorf("stats %+v, want 2 files, 4 dirs, 8 listed", st)
	}
}

func TestChainChecks(t *testing.T) {
	part, vol := newPartition(t)
	os.WriteFile(filepath.Join(vol, "f"), []byte("x"), 0o644)
	full, st0 := dump(t, part, "vol", time.Time{})
	inc1, st1 := dump(t, part, "vol", st0.DumpDate)
	inc2, _ := dump(t, part, "vol", st1.DumpDate)
	ctx := context.Background()
	for name, streams := range map[string][][]byte{
		"incremental first":  {inc1},
		"gap":                {full, inc2},
		"full in the middle": {full, full},
		"out of order":       {full, inc1, inc1},
	} {
		t.Run(name, func(t *testing.T) {
			var rs []io.Reader
			for _, s := range streams {
				rs = append(rs, bytes.NewReader(s))
			}
			if err := RestoreChain(ctx, DirRestorer{}, filepath.Join(t.TempDir(), "t"), rs...); err == nil {
				t.Fatal("chain accepted")
			} else {
				t.Log(err)
			}
		})
	}
	restoreChain(t, filepath.Join(t.TempDir(), "ok"), full, inc1, inc2)
}

// mutate applies a few random changes to the tree at dir: modify, add,
// delete files and whole directories, chmod, file↔directory replacement,
// symlink retargeting, touch (to new and to old times) and rename.
func mutate(t testing.TB, rng *rand.Rand, dir string) {
	t.Helper()
	list := func(keep func(fs.FileMode) bool) []string {
		var out []string
		filepath.WalkDir(dir, func(p string, e fs.DirEntry, err error) error {
			if err == nil && p != dir && keep(e.Type()) {
				out = append(out, p)
			}
			return nil
		})
		return out
	}
	pick := func(keep func(fs.FileMode) bool) string {
		l := list(keep)
		if len(l) == 0 {
			return ""
		}
		return l[rng.IntN(len(l))]
	}
	isFile := func(m fs.FileMode) bool { return m.IsRegular() }
	isDir := func(m fs.FileMode) bool { return m.IsDir() }
	isLink := func(m fs.FileMode) bool { return m&fs.ModeSymlink != 0 }
	anyDir := func() string {
		if d := pick(isDir); d != "" && rng.IntN(3) > 0 {
			return d
		}
		return dir
	}
	// Times both before and after the increment date: the ctime must catch
	// a change whatever mtime it ends up with.
	when := func() time.Time {
		if rng.IntN(2) == 0 {
			return time.Now().Add(time.Duration(rng.IntN(1000)) * time.Second)
		}
		return randTime(rng)
	}
	for range 4 + rng.IntN(6) {
		switch rng.IntN(12) {
		case 0: // modify
			if p := pick(isFile); p != "" {
				os.Chmod(p, 0o644)
				writeFile(t, rng, p, when())
			}
		case 1: // add file
			p := filepath.Join(anyDir(), randName(rng))
			if _, err := os.Lstat(p); err != nil {
				writeFile(t, rng, p, when())
			}
		case 2: // delete file
			if p := pick(isFile); p != "" {
				os.Remove(p)
			}
		case 3: // delete whole directory
			if p := pick(isDir); p != "" {
				os.RemoveAll(p)
			}
		case 4: // chmod
			if p := pick(isFile); p != "" {
				os.Chmod(p, fileModes[rng.IntN(len(fileModes))])
			}
		case 5: // file → dir
			if p := pick(isFile); p != "" {
				os.Remove(p)
				os.Mkdir(p, 0o750)
				writeFile(t, rng, filepath.Join(p, "inner"), when())
			}
		case 6: // dir → file
			if p := pick(isDir); p != "" {
				os.RemoveAll(p)
				writeFile(t, rng, p, when())
			}
		case 7: // retarget symlink
			if p := pick(isLink); p != "" {
				os.Remove(p)
				makeSymlink(t, rng, p)
			}
		case 8: // touch
			if p := pick(isFile); p != "" {
				tm := when()
				os.Chtimes(p, tm, tm)
			}
		case 9: // add empty dir or symlink
			p := filepath.Join(anyDir(), randName(rng))
			if _, err := os.Lstat(p); err != nil {
				if rng.IntN(2) == 0 {
					os.Mkdir(p, 0o700)
				} else {
					makeSymlink(t, rng, p)
				}
			}
		case 10: // rename a file, keeping its old mtime
			if p := pick(isFile); p != "" {
				q := filepath.Join(anyDir(), randName(rng))
				if _, err := os.Lstat(q); err != nil {
					os.Rename(p, q)
				}
			}
		case 11: // dir → symlink
			if p := pick(isDir); p != "" {
				os.RemoveAll(p)
				makeSymlink(t, rng, p)
			}
		}
	}
	if rng.IntN(2) == 0 {
		setDirTimes(t, rng, dir)
	}
}

// TestIncrementalProperty: across random mutations and many incrementals,
// restoring the full dump plus the first k incrementals always reproduces
// the tree as it was at dump k.
func TestIncrementalProperty(t *testing.T) {
	rounds := 7
	for _, seed := range []uint64{1, 2, 3} {
		t.Run("seed"+string(rune('0'+seed)), func(t *testing.T) {
			t.Parallel()
			rng := rand.New(rand.NewPCG(seed, 99))
			part, vol := newPartition(t)
			part.TimestampSlack = 5 * time.Millisecond
			randomTree(t, rng, vol, 60)

			var streams [][]byte
			var trees []map[string]node
			var since time.Time
			for k := 0; k <= rounds; k++ {
				if k > 0 {
					// Mutations happen strictly after the previous dump date
					// (the coarse kernel clock can lag a few ms behind).
					time.Sleep(20 * time.Millisecond)
					mutate(t, rng, vol)
				}
				s, st := dump(t, part, "vol", since)
				since = st.DumpDate
				streams = append(streams, s)
				trees = append(trees, snapshot(t, vol))
			}
			// The whole chain into one target, stream by stream, comparing
			// after each: every prefix equals the tree of its time.
			target := filepath.Join(t.TempDir(), "r")
			var after time.Time
			for k, s := range streams {
				st, err := DirRestorer{}.Restore(context.Background(), target, bytes.NewReader(s), RestoreOptions{After: after, Volume: "vol"})
				if err != nil {
					t.Fatalf("restore stream %d: %v", k, err)
				}
				after = st.DumpDate
				requireSameTree(t, "after stream "+string(rune('0'+k)), trees[k], snapshot(t, target))
			}
			// And a fresh prefix chain through RestoreChain.
			mid := len(streams) / 2
			target2 := filepath.Join(t.TempDir(), "r2")
			restoreChain(t, target2, streams[:mid+1]...)
			requireSameTree(t, "prefix chain", trees[mid], snapshot(t, target2))
		})
	}
}

func TestVolumes(t *testing.T) {
	part, _ := newPartition(t)
	os.Mkdir(filepath.Join(part.Path, "b"), 0o755)
	os.WriteFile(filepath.Join(part.Path, "file"), nil, 0o644)
	os.Symlink("b", filepath.Join(part.Path, "link"))
	v, err := part.Volumes(context.Background())
	if err != nil || !slices.Equal(v, []string{"b", "vol"}) {
		t.Fatalf("Volumes = %q, %v", v, err)
	}
	for _, bad := range []string{"", "..", ".", "a/b", "link"} {
		if _, err := part.Dump(context.Background(), bad, time.Time{}, io.Discard, nil); err == nil {
			t.Errorf("Dump(%q) accepted", bad)
		}
	}
}

type countProgress struct{ n int64 }

func (c *countProgress) Add(n int64) { c.n += n }

func TestProgress(t *testing.T) {
	part, vol := newPartition(t)
	os.WriteFile(filepath.Join(vol, "f"), make([]byte, 10000), 0o644)
	var buf bytes.Buffer
	var p countProgress
	st, err := part.Dump(context.Background(), "vol", time.Time{}, &buf, &p)
	if err != nil || p.n != int64(buf.Len()) || st.Bytes != p.n {
		t.Fatalf("progress %d, stream %d, stats %d, err %v", p.n, buf.Len(), st.Bytes, err)
	}
	var rp countProgress
	rst, err := DirRestorer{}.Restore(context.Background(), filepath.Join(t.TempDir(), "t"), &buf, RestoreOptions{Progress: &rp})
	if err != nil || rp.n == 0 || rst.Bytes != 10000 || rst.Files != 1 {
		t.Fatalf("restore progress %d stats %+v err %v", rp.n, rst, err)
	}
}
