package source

import (
	"archive/tar"
	"bytes"
	"context"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// ent is one entry of a hand-built stream.
type ent struct {
	typ  byte
	name string
	link string
	data string
	pax  map[string]string
}

// buildStream writes an abs header (full, or incremental after `after`) whose
// manifest lists every entry name that is clean, then the entries.
func buildStream(t testing.TB, full bool, dumpDate, since time.Time, ents ...ent) []byte {
	t.Helper()
	var man bytes.Buffer
	for _, e := range ents {
		mt := byte('f')
		switch e.typ {
		case tar.TypeDir:
			mt = 'd'
		case tar.TypeSymlink:
			mt = 'l'
		}
		if n, err := cleanName(e.name, mt == 'd'); err == nil {
			man.WriteString(string(mt) + " " + n + "\x00")
		}
	}
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	h := streamHeader{source: sourceDir, volume: "v", full: full, dumpDate: dumpDate, since: since}
	must := func(err error) {
		if err != nil {
			t.Fatal(err)
		}
	}
	must(tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: HeaderName, Size: int64(man.Len()), PAXRecords: h.records("s", "p"), Format: tar.FormatPAX}))
	tw.Write(man.Bytes())
	for _, e := range ents {
		if e.typ == tar.TypeXGlobalHeader {
			must(tw.WriteHeader(&tar.Header{Typeflag: e.typ, Name: e.name, PAXRecords: e.pax, Format: tar.FormatPAX}))
			continue
		}
		must(tw.WriteHeader(&tar.Header{Typeflag: e.typ, Name: e.name, Linkname: e.link, Size: int64(len(e.data)), Mode: 0o644, ModTime: baseTime, PAXRecords: e.pax, Format: tar.FormatPAX}))
		tw.Write([]byte(e.data))
	}
	must(writeTrailer(tw, len(ents)))
	must(tw.Close())
	return buf.Bytes()
}

// arena is a base directory holding the restore target and an "outside"
// sibling with a secret; everything but the target must stay unchanged.
type arena struct {
	base, target, outside string
}

func newArena(t testing.TB) arena {
	base := t.TempDir()
	a := arena{base: base, target: filepath.Join(base, "target"), outside: filepath.Join(base, "outside")}
	os.MkdirAll(filepath.Join(a.outside, "sub"), 0o755)
	os.WriteFile(filepath.Join(a.outside, "secret"), []byte("secret"), 0o644)
	return a
}

// outsideState describes everything under base except the target tree.
func (a arena) outsideState(t testing.TB) map[string]node {
	s := snapshot(t, a.base)
	for p := range s {
		if p == "target" || strings.HasPrefix(p, "target/") || p == "." {
			delete(s, p)
		}
	}
	return s
}

func TestHostileArchives(t *testing.T) {
	a0 := time.Now()
	a1 := a0.Add(time.Second)
	full := func(e ...ent) []byte { return buildStream(t, true, a0, time.Time{}, e...) }
	reg := func(name string) ent { return ent{typ: tar.TypeReg, name: name, data: "PWNED"} }
	dir := func(name string) ent { return ent{typ: tar.TypeDir, name: name} }
	sym := func(name, to string) ent { return ent{typ: tar.TypeSymlink, name: name, link: to} }

	garbage := make([]byte, 3000)
	rng := rand.New(rand.NewPCG(7, 7))
	for i := range garbage {
		garbage[i] = byte(rng.Uint32())
	}
	good := full(dir("./"), reg("a"), reg("b"))
	truncated := good[:len(good)/2] // cut inside the entries
	// Cut just before the trailer: valid tar, but the trailer is missing.
	boundary := bytes.LastIndex(good, []byte("PWNED")) + 512

	type tc struct {
		name    string
		pre     []byte // a stream restored first (the previous dump)
		stream  []byte
		wantErr string
	}
	cases := []tc{
		{"dotdot", nil, full(dir("./"), reg("../escape")), `"../escape"`},
		{"dotdot outside", nil, full(dir("./"), reg("../outside/secret")), `"../outside/secret"`},
		{"absolute", nil, full(dir("./"), reg("/outside/pwned")), `absolute`},
		{"absolute real", nil, full(dir("./"), reg("OUTSIDE/pwned")), `absolute`},
		{"unclean dotdot", nil, full(dir("./"), dir("a/"), reg("a/../../x")), `"a/../../x"`},
		{"symlink out then through", nil, full(dir("./"), sym("evil", "OUTSIDE"), reg("evil/file")), `parent "evil" is a symlink`},
		{"symlink dotdot then through", nil, full(dir("./"), sym("up", ".."), reg("up/outside/pwned")), `parent "up" is a symlink`},
		{"symlink dir inside then through", nil, full(dir("./"), dir("d/"), sym("l", "d"), reg("l/f")), `parent "l" is a symlink`},
		{"symlink replaces dir then write beneath", full(dir("./"), dir("d/"), reg("d/f")),
			buildStream(t, false, a1, a0, dir("./"), sym("d", "OUTSIDE"), reg("d/f")), `parent "d" is a symlink`},
		{"hard link outside", nil, full(dir("./"), ent{typ: tar.TypeLink, name: "hl", link: "../outside/secret"}), `hard links`},
		{"hard link absolute", nil, full(dir("./"), ent{typ: tar.TypeLink, name: "hl", link: "OUTSIDE/secret"}), `hard links`},
		{"fifo", nil, full(dir("./"), ent{typ: tar.TypeFifo, name: "p"}), `unsupported entry type`},
		{"char device", nil, full(dir("./"), ent{typ: tar.TypeChar, name: "c"}), `unsupported entry type`},
		{"missing parent", nil, full(dir("./"), reg("nodir/f")), `does not exist`},
		{"not in manifest", nil, append(full(dir("./"))[:0:0], good...), ""}, // control: must succeed
		{"abs record later", nil, full(dir("./"), ent{typ: tar.TypeReg, name: "x", pax: map[string]string{"ABS.format": "1"}}), `abs record`},
		{"truncated", nil, truncated, `unexpected EOF`},
		{"truncated at entry boundary", nil, good[:boundary], `truncated after entry "b"`},
		{"global header", nil, full(dir("./"), ent{typ: tar.TypeXGlobalHeader, name: "g", pax: map[string]string{"comment": "x"}}), `unsupported entry type`},
		{"trailer count", nil, bytes.Replace(full(dir("./"), reg("a")), []byte("ABS.end=2"), []byte("ABS.end=3"), 1), `trailer counts 3`},
		{"garbage", nil, garbage, `not an abs dump`},
		{"plain tar", nil, func() []byte {
			var b bytes.Buffer
			tw := tar.NewWriter(&b)
			tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: "../escape", Size: 5})
			tw.Write([]byte("PWNED"))
			tw.Close()
			return b.Bytes()
		}(), `not an abs dump`},
		{"empty", nil, nil, `not an abs dump`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			a := newArena(t)
			fix := func(b []byte) []byte {
				return bytes.ReplaceAll(b, []byte("OUTSIDE"), []byte(a.outside))
			}
			stream := fix(c.stream)
			if len(c.stream) > 0 && bytes.Contains(c.stream, []byte("OUTSIDE")) {
				// Names changed length: rebuild is simpler than patching tar.
				stream = rebuildWith(t, c.stream, a.outside)
			}
			var after time.Time
			if c.pre != nil {
				st, err := DirRestorer{}.Restore(context.Background(), a.target, bytes.NewReader(c.pre), RestoreOptions{})
				if err != nil {
					t.Fatalf("previous dump: %v", err)
				}
				after = st.DumpDate
			}
			before := a.outsideState(t)
			_, err := DirRestorer{}.Restore(context.Background(), a.target, bytes.NewReader(stream), RestoreOptions{After: after})
			switch {
			case c.wantErr == "" && err != nil:
				t.Fatalf("control stream refused: %v", err)
			case c.wantErr != "" && err == nil:
				t.Fatal("hostile stream accepted")
			case c.wantErr != "" && !strings.Contains(err.Error(), c.wantErr):
				t.Fatalf("error %q does not say %q", err, c.wantErr)
			}
			t.Log(err)
			requireSameTree(t, "outside the target", before, a.outsideState(t))
			// Nothing hostile landed in the target either.
			if _, err := os.Lstat(a.target); err != nil {
				return // refused before the target was created
			}
			for p, n := range snapshot(t, a.target) {
				if n.typ == "f" && n.size == 5 && c.wantErr != "" {
					b, _ := os.ReadFile(filepath.Join(a.target, p))
					if string(b) == "PWNED" && p != "a" && p != "b" {
						t.Errorf("hostile content written at %s", p)
					}
				}
			}
		})
	}
}

// rebuildWith re-encodes a stream with OUTSIDE replaced in names and links.
func rebuildWith(t testing.TB, b []byte, outside string) []byte {
	tr := tar.NewReader(bytes.NewReader(b))
	var out bytes.Buffer
	tw := tar.NewWriter(&out)
	for {
		h, err := tr.Next()
		if err != nil {
			break
		}
		data := new(bytes.Buffer)
		data.ReadFrom(tr)
		h.Name = strings.ReplaceAll(h.Name, "OUTSIDE", outside)
		h.Linkname = strings.ReplaceAll(h.Linkname, "OUTSIDE", outside)
		tw.WriteHeader(h)
		tw.Write(data.Bytes())
	}
	tw.Close()
	return out.Bytes()
}

func FuzzRestore(f *testing.F) {
	part, vol := newPartition(f)
	rng := rand.New(rand.NewPCG(3, 4))
	randomTree(f, rng, vol, 15)
	s, _ := dump(f, part, "vol", time.Time{})
	f.Add(s, false)
	now := time.Now()
	f.Add(buildStream(f, true, now, time.Time{}, ent{typ: tar.TypeDir, name: "./"}, ent{typ: tar.TypeSymlink, name: "up", link: ".."}, ent{typ: tar.TypeReg, name: "up/outside/x", data: "PWNED"}), false)
	f.Add(buildStream(f, false, now, now.Add(-time.Hour), ent{typ: tar.TypeDir, name: "./"}, ent{typ: tar.TypeReg, name: "../outside/x", data: "PWNED"}), true)
	f.Add([]byte("garbage"), false)
	f.Fuzz(func(t *testing.T, data []byte, incremental bool) {
		a := newArena(t)
		before := a.outsideState(t)
		opts := RestoreOptions{}
		if incremental {
			// Restore onto an existing target, as an incremental would.
			os.MkdirAll(filepath.Join(a.target, "d"), 0o755)
			os.WriteFile(filepath.Join(a.target, "d", "f"), []byte("x"), 0o644)
			opts.After = time.Now()
		}
		DirRestorer{}.Restore(context.Background(), a.target, bytes.NewReader(data), opts)
		if d := diffTrees(before, a.outsideState(t)); len(d) > 0 {
			t.Fatalf("restore wrote outside the target: %q", d)
		}
	})
}
