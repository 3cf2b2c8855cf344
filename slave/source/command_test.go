package source

import (
	"archive/tar"
	"bytes"
	"context"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestSplitArgs(t *testing.T) {
	for _, c := range []struct {
		in   string
		want []string
		bad  bool
	}{
		{in: "vos dump {volume} -time {since}", want: []string{"vos", "dump", "{volume}", "-time", "{since}"}},
		{in: `  a  'b c'  "d \"e\" \$f \n" g\ h ''`, want: []string{"a", "b c", `d "e" $f \n`, "g h", ""}},
		{in: `x;rm -rf / $(id) | cat`, want: []string{"x;rm", "-rf", "/", "$(id)", "|", "cat"}},
		{in: `a'b'"c"d`, want: []string{"abcd"}},
		{in: `'open`, bad: true},
		{in: `"open`, bad: true},
		{in: `trailing\`, bad: true},
	} {
		got, err := SplitArgs(c.in)
		if (err != nil) != c.bad || (!c.bad && !slices.Equal(got, c.want)) {
			t.Errorf("SplitArgs(%q) = %q, %v; want %q", c.in, got, err, c.want)
		}
	}
}

func needTool(t *testing.T, name string) {
	t.Helper()
	if _, err := exec.LookPath(name); err != nil {
		t.Skipf("%s not available", name)
	}
}

// chunks returns the concatenated chunk data and the header records.
func chunks(t *testing.T, stream []byte) (string, map[string]string, int) {
	t.Helper()
	tr := tar.NewReader(bytes.NewReader(stream))
	h, err := tr.Next()
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	n := 0
	for {
		e, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if e.Typeflag == tar.TypeReg {
			out.ReadFrom(tr)
			n++
		}
	}
	return out.String(), h.PAXRecords, n
}

func TestCommandNoInjection(t *testing.T) {
	needTool(t, "printf")
	evil := "x; rm -rf / {since} $(touch pwned)"
	c := &CommandPartition{
		ServerName: "db1", PartitionName: "pg",
		DumpCommand: `printf '%s\n' {volume} "--since={since}"`,
		VolumeNames: []string{evil, "plain"},
		Dir:         t.TempDir(),
	}
	var buf bytes.Buffer
	if _, err := c.Dump(context.Background(), evil, time.Time{}, &buf, nil); err != nil {
		t.Fatal(err)
	}
	got, rec, _ := chunks(t, buf.Bytes())
	if want := evil + "\n--since=\n"; got != want {
		t.Fatalf("command saw %q, want %q (one argument, not re-expanded)", got, want)
	}
	if rec[paxVolume] != evil || rec[paxKind] != kindFull || rec[paxSource] != sourceCommand {
		t.Errorf("header records %v", rec)
	}
	if _, err := os.Stat(filepath.Join(c.Dir, "pwned")); err == nil {
		t.Fatal("volume name was run by a shell")
	}
	since := time.Date(2025, 1, 2, 3, 4, 5, 600, time.FixedZone("x", 3600))
	buf.Reset()
	if _, err := c.Dump(context.Background(), "plain", since, &buf, nil); err != nil {
		t.Fatal(err)
	}
	if got, _, _ := chunks(t, buf.Bytes()); got != "plain\n--since=2025-01-02T02:04:05Z\n" {
		t.Fatalf("incremental command saw %q", got)
	}
	if _, err := c.Dump(context.Background(), "undeclared", time.Time{}, io.Discard, nil); err == nil {
		t.Fatal("undeclared volume dumped")
	}
}

func TestCommandRoundTrip(t *testing.T) {
	needTool(t, "cat")
	needTool(t, "tee")
	dir := t.TempDir()
	data := make([]byte, 300_000)
	rng := rand.New(rand.NewPCG(5, 6))
	for i := range data {
		data[i] = byte(rng.Uint32())
	}
	os.WriteFile(filepath.Join(dir, "db.img"), data, 0o644)
	c := &CommandPartition{
		DumpCommand:    "cat {volume}.img",
		RestoreCommand: "tee {target}",
		VolumeNames:    []string{"db"},
		Dir:            dir,
		ChunkSize:      64 << 10,
	}
	var buf bytes.Buffer
	st, err := c.Dump(context.Background(), "db", time.Time{}, &buf, nil)
	if err != nil {
		t.Fatal(err)
	}
	if st.Files != 5 || st.Bytes != int64(buf.Len()) {
		t.Fatalf("stats %+v", st)
	}
	target := filepath.Join(dir, "restored.img")
	stream := buf.Bytes()
	rst, err := c.Restore(context.Background(), target, bytes.NewReader(stream), RestoreOptions{Volume: "db"})
	if err != nil {
		t.Fatal(err)
	}
	if got, _ := os.ReadFile(target); !bytes.Equal(got, data) || rst.Bytes != int64(len(data)) || rst.Files != 5 {
		t.Fatalf("restored %d bytes (stats %+v), want %d", len(got), rst, len(data))
	}
	// A stream cut at a chunk boundary is refused, not restored short.
	var short bytes.Buffer
	tr, tw := tar.NewReader(bytes.NewReader(stream)), tar.NewWriter(&short)
	for {
		h, err := tr.Next()
		if err != nil {
			break
		}
		if h.Typeflag != tar.TypeXGlobalHeader {
			tw.WriteHeader(h)
			io.Copy(tw, tr)
		}
	}
	tw.Flush() // no Close: the stream just stops at a chunk boundary
	if _, err := c.Restore(context.Background(), target, bytes.NewReader(short.Bytes()), RestoreOptions{}); err == nil || !strings.Contains(err.Error(), "truncated") {
		t.Fatalf("truncated command stream: %v", err)
	}
	// A directory dump is not a command dump.
	if _, err := (DirRestorer{}).Restore(context.Background(), filepath.Join(dir, "x"), bytes.NewReader(stream), RestoreOptions{}); err == nil {
		t.Fatal("command stream restored as a directory")
	}
}

func TestCommandFailure(t *testing.T) {
	needTool(t, "ls")
	c := &CommandPartition{
		DumpCommand:    "ls /nonexistent-abs-{volume}",
		RestoreCommand: "ls /nonexistent-abs-restore-{volume}",
		VolumeNames:    []string{"v"},
	}
	var buf bytes.Buffer
	_, err := c.Dump(context.Background(), "v", time.Time{}, &buf, nil)
	if err == nil || !strings.Contains(err.Error(), "nonexistent-abs-v") || !strings.Contains(err.Error(), "exit status") {
		t.Fatalf("failing dump: %v", err)
	}
	// Restore of a good stream through a failing command.
	ok := &CommandPartition{DumpCommand: "ls /", VolumeNames: []string{"v"}}
	buf.Reset()
	if _, err := ok.Dump(context.Background(), "v", time.Time{}, &buf, nil); err != nil {
		t.Fatal(err)
	}
	_, err = c.Restore(context.Background(), "t", &buf, RestoreOptions{})
	if err == nil || !strings.Contains(err.Error(), "nonexistent-abs-restore-v") {
		t.Fatalf("failing restore: %v", err)
	}
	bad := &CommandPartition{DumpCommand: "'unterminated", VolumeNames: []string{"v"}}
	if _, err := bad.Dump(context.Background(), "v", time.Time{}, io.Discard, nil); err == nil {
		t.Fatal("bad command line accepted")
	}
}
