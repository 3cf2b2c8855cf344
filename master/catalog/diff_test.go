package catalog

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/abs-backup/abs/statemachine"
)

func TestDiff(t *testing.T) {
	a, b := openMem(t), openMem(t)
	recs := []statemachine.Record{
		job("x-1", 2), job("x-2", 3), dump("fs1", "vicepa", "v", 1, 2),
		statemachine.Tape{Label: "L1", State: statemachine.TapeValid},
		statemachine.Slave{Name: "s1", Addr: "a"},
		statemachine.Volume{Server: "fs1", Partition: "vicepa", Name: "v"},
		statemachine.Master{Epoch: 1, Node: "n"},
	}
	// Same records, committed differently: other applied indices, other
	// batching, and snapshots only in a. Meta and snapshots are ignored.
	commit(t, a, 2, recs[:3]...)
	ba := a.NewBatch()
	for _, r := range recs[3:] {
		ba.Put(r)
	}
	ba.SetApplied(testJournal, 9)
	ba.SetSnapshot(9, []byte("state"))
	if err := ba.Commit(); err != nil {
		t.Fatal(err)
	}
	bb := b.NewBatch()
	for _, r := range recs {
		bb.Put(r)
	}
	bb.SetApplied(testJournal, 4)
	if err := bb.Commit(); err != nil {
		t.Fatal(err)
	}
	diff := func(max int) []string {
		t.Helper()
		d, err := a.Diff(b, max)
		if err != nil {
			t.Fatal(err)
		}
		return d
	}
	if d := diff(0); len(d) != 0 {
		t.Fatalf("equal catalogs differ: %v", d)
	}

	// A changed value, a key only in a, a key only in b.
	commit(t, a, 10, statemachine.Tape{Label: "L1", State: statemachine.TapeExpired}, statemachine.Slave{Name: "s0", Addr: "a"})
	commit(t, b, 5, job("x-3", 5), statemachine.Master{Epoch: 2, Node: "n"})
	want := []string{
		"only in b: job/x-3",
		"only in b: jobq/00000000000000000005/x-3",
		"only in b: master/00000000000000000002",
		"only in a: slave/s0",
		"differs: tape/L1",
	}
	if d := diff(0); !reflect.DeepEqual(d, want) {
		t.Fatalf("Diff =\n%s\nwant\n%s", strings.Join(d, "\n"), strings.Join(want, "\n"))
	}
	if d := diff(2); !reflect.DeepEqual(d, want[:2]) {
		t.Fatalf("Diff(max 2) = %v", d)
	}
	d, err := b.Diff(a, 0)
	if err != nil || len(d) != 5 || d[0] != "only in a: job/x-3" || d[4] != "differs: tape/L1" {
		t.Fatalf("reverse Diff = %v, %v", d, err)
	}
}

func TestRemove(t *testing.T) {
	root := t.TempDir()
	dir := filepath.Join(root, "catalog")
	c, err := Open(dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	commit(t, c, 2, job("x-1", 2))
	if err := Remove(dir); !errors.Is(err, ErrInUse) {
		t.Fatalf("Remove of an open catalog: %v, want ErrInUse", err)
	}
	c.Close()

	// A leftover from an interrupted Remove goes too.
	trash := dir + trashSuffix
	copyDir(t, dir, trash)
	if err := Remove(dir); err != nil {
		t.Fatal(err)
	}
	for _, d := range []string{dir, trash} {
		if _, err := os.Stat(d); !os.IsNotExist(err) {
			t.Fatalf("%s still exists: %v", d, err)
		}
	}
	if err := Remove(dir); err != nil {
		t.Fatalf("Remove of a missing catalog: %v", err)
	}
	c, err = Open(dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if m, _ := c.Meta(); m != (Meta{}) {
		t.Fatalf("catalog after Remove has meta %+v", m)
	}
	c.Close()

	// Directories that are not catalogs are left alone.
	notes := filepath.Join(dir, "notes.txt")
	os.WriteFile(notes, []byte("mine"), 0o644)
	sub := filepath.Join(root, "withsub")
	os.MkdirAll(filepath.Join(sub, "archive"), 0o755)
	file := filepath.Join(root, "file")
	os.WriteFile(file, nil, 0o644)
	for _, d := range []string{dir, sub, file} {
		err := Remove(d)
		if err == nil {
			t.Errorf("Remove(%s) succeeded", d)
		} else if !strings.Contains(err.Error(), d) {
			t.Errorf("Remove(%s): %v does not name the directory", d, err)
		}
		if _, err := os.Stat(d); err != nil {
			t.Errorf("Remove(%s) deleted it: %v", d, err)
		}
	}
	if _, err := os.Stat(notes); err != nil {
		t.Errorf("refused Remove deleted a file: %v", err)
	}
}

func TestPebbleFile(t *testing.T) {
	for name, want := range map[string]bool{
		"LOCK": true, "CURRENT": true, "MANIFEST-000001": true, "OPTIONS-000003": true,
		"000002.log": true, "000005.sst": true, "000007.blob": true,
		"marker.manifest.000001.MANIFEST-000001": true, "marker.format-version.000001.024": true,
		"CURRENT.000003.dbtmp": true, "notes.txt": false, "MANIFEST-": false, "x.sst": false,
		".log": false, "journal": false, "LOCK2": false,
	} {
		if got := pebbleFile(name); got != want {
			t.Errorf("pebbleFile(%q) = %v", name, got)
		}
	}
	// Every file pebble actually writes is recognised.
	dir := t.TempDir()
	c, err := Open(dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	for i := uint64(2); i < 5; i++ {
		commit(t, c, i, job(fmt.Sprint("x-", i), i))
		c.db.Flush()
	}
	c.Close()
	if err := looksLikeCatalog(dir); err != nil {
		t.Fatal(err)
	}
}

func TestKeys(t *testing.T) {
	for _, v := range []int64{0, 1, 42, 1_700_000_000_000_000_000, 1<<63 - 1, -1, -123, -1 << 63} {
		if got, want := string(appendDate(nil, v)), fmt.Sprintf("%020d", v); got != want {
			t.Errorf("appendDate(%d) = %q, want %q", v, got, want)
		}
	}
	for _, v := range []uint64{0, 7, 1 << 40, ^uint64(0)} {
		s := appendIndex(nil, v)
		if want := fmt.Sprintf("%020d", v); string(s) != want {
			t.Errorf("appendIndex(%d) = %q", v, s)
		}
		if got, ok := parseIndex(s); !ok || got != v {
			t.Errorf("parseIndex(%q) = %d, %v", s, got, ok)
		}
	}
	for _, s := range []string{"", "1", "0000000000000000000x", "99999999999999999999"} {
		if _, ok := parseIndex([]byte(s)); ok {
			t.Errorf("parseIndex(%q) accepted", s)
		}
	}
	if got := string(appendPart(nil, "a/b%c")); got != "a%2Fb%25c" {
		t.Errorf("appendPart = %q", got)
	}
	if got := string(dumpKey(nil, "fs1", "vicepa", "user.alice", 5, 7)); got != "dump/fs1/vicepa/user.alice/00000000000000000005/00000000000000000007" {
		t.Errorf("dumpKey = %q", got)
	}
	for _, tc := range []struct {
		s, p, v, prefix string
		exact           bool
	}{
		{"", "", "", "dump/", true},
		{"fs1", "", "", "dump/fs1/", true},
		{"fs1", "p", "v", "dump/fs1/p/v/", true},
		{"", "p", "", "dump/", false},
		{"fs1", "", "v", "dump/fs1/", false},
	} {
		p, exact := dumpPrefix(nil, tc.s, tc.p, tc.v)
		if string(p) != tc.prefix || exact != tc.exact {
			t.Errorf("dumpPrefix(%q,%q,%q) = %q, %v", tc.s, tc.p, tc.v, p, exact)
		}
	}
}
