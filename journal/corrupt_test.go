package journal

import (
	"bytes"
	"encoding/binary"
	"errors"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// corruptBase is a closed journal of corruptRecords records over several
// segments, built once per test binary run.
const corruptRecords = 50

func corruptBase(t *testing.T) string {
	dir := t.TempDir()
	buildJournal(t, dir, 1024, corruptRecords)
	segs := segmentFiles(t, dir)
	if len(segs) < 4 {
		t.Fatalf("base journal has only %d segments", len(segs))
	}
	if n := len(entriesOf(t, filepath.Join(dir, segs[len(segs)-1]))); n < 3 {
		t.Fatalf("last segment has only %d entries", n)
	}
	return dir
}

// layout describes the base journal for the mutations.
type layout struct {
	dir  string
	segs []string // names
	last string   // path of the last segment
	ents map[string][]entryPos
}

func (l *layout) path(name string) string { return filepath.Join(l.dir, name) }

func (l *layout) lastEnts() []entryPos { return l.ents[filepath.Base(l.last)] }

// rewrite re-encodes the record of entry e in file with f applied, keeping
// its own CRC valid (so only its index, chain or type is wrong).
func (l *layout) rewrite(t *testing.T, file string, e entryPos, f func(*Record)) {
	b := mustRead(t, file)
	rb := b[e.off+int64(e.hdr) : e.off+int64(e.hdr)+int64(e.size)]
	r, err := DecodeRecord(rb)
	if err != nil {
		t.Fatal(err)
	}
	r.Payload = append([]byte(nil), r.Payload...)
	f(&r)
	enc := EncodeRecord(nil, r)
	if len(enc) != len(rb) {
		t.Fatal("rewrite changed the size")
	}
	copy(rb, enc)
	mustWrite(t, file, b)
}

type corruptCase struct {
	name   string
	mutate func(t *testing.T, l *layout)
	// For a repair: the last index kept and the offset cut at (-1: the
	// size of the last segment before mutation).
	repairLast uint64
	repairOff  func(l *layout) int64
	// For a refusal: where the CorruptError must point.
	file   func(l *layout) string
	offset func(l *layout) int64
	index  func(l *layout) uint64
	reason string // substring
	// plain refusal with no position to check (wal truncation files)
	anyCorrupt bool
}

func TestCorruptions(t *testing.T) {
	base := corruptBase(t)
	bl := &layout{dir: base, segs: segmentFiles(t, base), ents: map[string][]entryPos{}}
	for _, s := range bl.segs {
		bl.ents[s] = entriesOf(t, bl.path(s))
	}
	bl.last = bl.path(bl.segs[len(bl.segs)-1])
	lastEnts := bl.lastEnts()
	final := lastEnts[len(lastEnts)-1]
	older := lastEnts[0] // first record of the last segment: records follow it
	mid := lastEnts[1]
	seg2 := bl.segs[1]
	seg2Ents := bl.ents[seg2]
	rnd := rand.New(rand.NewPCG(1, 2))
	garbage := func(n int) []byte {
		b := make([]byte, n)
		for i := range b {
			b[i] = byte(rnd.Uint32())
		}
		return b
	}
	lastFile := func(l *layout) string { return l.last }
	endOf := func(e entryPos) int64 { return e.off + int64(e.hdr) + int64(e.size) }
	atOff := func(o int64) func(*layout) int64 { return func(*layout) int64 { return o } }
	atIdx := func(i uint64) func(*layout) uint64 { return func(*layout) uint64 { return i } }

	cases := []corruptCase{
		{
			name: "cut mid final record",
			mutate: func(t *testing.T, l *layout) {
				os.Truncate(l.last, final.off+int64(final.hdr)+int64(final.size/2))
			},
			repairLast: final.index - 1, repairOff: atOff(final.off),
		},
		{
			name: "cut inside final record header",
			mutate: func(t *testing.T, l *layout) {
				os.Truncate(l.last, final.off+int64(final.hdr)+5)
			},
			repairLast: final.index - 1, repairOff: atOff(final.off),
		},
		{
			name: "zeroed tail",
			mutate: func(t *testing.T, l *layout) {
				mustWrite(t, l.last, append(mustRead(t, l.last), make([]byte, 4096)...))
			},
			repairLast: final.index, repairOff: atOff(endOf(final)),
		},
		{
			name: "garbage tail",
			mutate: func(t *testing.T, l *layout) {
				mustWrite(t, l.last, append(mustRead(t, l.last), garbage(3000)...))
			},
			repairLast: final.index, repairOff: atOff(endOf(final)),
		},
		{
			name: "garbage final record with valid length",
			mutate: func(t *testing.T, l *layout) {
				b := mustRead(t, l.last)
				copy(b[final.off+int64(final.hdr):], garbage(final.size))
				mustWrite(t, l.last, b)
			},
			repairLast: final.index - 1, repairOff: atOff(final.off),
		},
		{
			name: "zeroed final record",
			mutate: func(t *testing.T, l *layout) {
				b := mustRead(t, l.last)
				clear(b[final.off:])
				mustWrite(t, l.last, b)
			},
			repairLast: final.index - 1, repairOff: atOff(final.off),
		},
		{
			name: "partial record after a zeroed hole",
			mutate: func(t *testing.T, l *layout) {
				// A torn batch: zeros, then the first half of a record.
				b := mustRead(t, l.last)
				rec := EncodeRecord(nil, Record{Index: final.index + 1, Type: TypeEvents, Payload: []byte("torn")})
				b = append(b, make([]byte, 100)...)
				b = append(b, rec[:len(rec)/2]...)
				mustWrite(t, l.last, b)
			},
			repairLast: final.index, repairOff: atOff(endOf(final)),
		},
		{
			name: "torn first record of the last segment",
			mutate: func(t *testing.T, l *layout) {
				os.Truncate(l.last, older.off+int64(older.hdr)+10)
			},
			repairLast: older.index - 1, repairOff: atOff(0), // leaves the segment empty
		},
		{
			name: "flipped byte in an older record of the last segment",
			mutate: func(t *testing.T, l *layout) {
				b := mustRead(t, l.last)
				b[older.off+int64(older.hdr)+HeaderSize+1] ^= 0x20
				mustWrite(t, l.last, b)
			},
			file: lastFile, offset: atOff(older.off), index: atIdx(older.index), reason: "crc mismatch",
		},
		{
			name: "flipped length prefix of an older record",
			mutate: func(t *testing.T, l *layout) {
				b := mustRead(t, l.last)
				b[mid.off] ^= 0x04
				mustWrite(t, l.last, b)
			},
			file: lastFile, offset: atOff(mid.off), index: atIdx(mid.index), reason: "valid record",
		},
		{
			name: "flipped byte in a non-last segment",
			mutate: func(t *testing.T, l *layout) {
				e := seg2Ents[1]
				b := mustRead(t, l.path(seg2))
				b[e.off+int64(e.hdr)+offEpoch] ^= 1
				mustWrite(t, l.path(seg2), b)
			},
			file: func(l *layout) string { return l.path(seg2) }, offset: atOff(seg2Ents[1].off), index: atIdx(seg2Ents[1].index), reason: "not the last segment",
		},
		{
			name: "torn final record of a non-last segment",
			mutate: func(t *testing.T, l *layout) {
				e := seg2Ents[len(seg2Ents)-1]
				os.Truncate(l.path(seg2), e.off+3)
			},
			file: func(l *layout) string { return l.path(seg2) }, offset: atOff(seg2Ents[len(seg2Ents)-1].off), index: atIdx(seg2Ents[len(seg2Ents)-1].index),
		},
		{
			name: "missing middle segment",
			mutate: func(t *testing.T, l *layout) {
				os.Remove(l.path(seg2))
			},
			file: func(l *layout) string { return l.path(l.segs[2]) }, offset: atOff(0), index: atIdx(seg2Ents[0].index), reason: "missing",
		},
		{
			name: "missing first segment",
			mutate: func(t *testing.T, l *layout) {
				os.Remove(l.path(l.segs[0]))
			},
			file: func(l *layout) string { return l.path(seg2) }, offset: atOff(0), index: atIdx(1),
		},
		{
			name: "broken chain in the last segment",
			mutate: func(t *testing.T, l *layout) {
				l.rewrite(t, l.last, mid, func(r *Record) { r.Prev ^= 0x100 })
			},
			file: lastFile, offset: atOff(mid.off), index: atIdx(mid.index), reason: "chain broken",
		},
		{
			name: "broken chain in the final record",
			mutate: func(t *testing.T, l *layout) {
				l.rewrite(t, l.last, final, func(r *Record) { r.Prev++ })
			},
			file: lastFile, offset: atOff(final.off), index: atIdx(final.index), reason: "chain broken",
		},
		{
			name: "broken chain across segments",
			mutate: func(t *testing.T, l *layout) {
				l.rewrite(t, l.last, older, func(r *Record) { r.Prev = 0 })
			},
			file: lastFile, offset: atOff(older.off), index: atIdx(older.index), reason: "chain broken",
		},
		{
			name: "record at the wrong index",
			mutate: func(t *testing.T, l *layout) {
				l.rewrite(t, l.last, mid, func(r *Record) { r.Index++ })
			},
			file: lastFile, offset: atOff(mid.off), index: atIdx(mid.index), reason: "claims index",
		},
		{
			name: "duplicated final record",
			mutate: func(t *testing.T, l *layout) {
				b := mustRead(t, l.last)
				mustWrite(t, l.last, append(b, b[final.off:]...))
			},
			file: lastFile, offset: atOff(endOf(final)), index: atIdx(final.index + 1), reason: "claims index",
		},
		{
			name: "first record not an identity",
			mutate: func(t *testing.T, l *layout) {
				l.rewrite(t, l.path(l.segs[0]), l.ents[l.segs[0]][0], func(r *Record) { r.Type = TypeEvents })
			},
			file: func(l *layout) string { return l.path(l.segs[0]) }, offset: atOff(0), index: atIdx(1), reason: "not identity",
		},
		{
			name: "identity record torn",
			mutate: func(t *testing.T, l *layout) {
				for _, s := range l.segs[1:] {
					os.Remove(l.path(s))
				}
				os.Truncate(l.path(l.segs[0]), 20)
			},
			file: func(l *layout) string { return l.path(l.segs[0]) }, offset: atOff(0), index: atIdx(1), reason: "identity",
		},
		{
			name: "empty entry in the middle",
			mutate: func(t *testing.T, l *layout) {
				b := mustRead(t, l.last)
				nb := append(append(append([]byte(nil), b[:final.off]...), 0), b[final.off:]...)
				mustWrite(t, l.last, nb)
			},
			file: lastFile, offset: atOff(final.off), index: atIdx(final.index), reason: "empty WAL entry",
		},
		{
			name: "wal .START file",
			mutate: func(t *testing.T, l *layout) {
				mustWrite(t, l.path(l.segs[2]+".START"), mustRead(t, l.path(l.segs[2])))
			},
			anyCorrupt: true,
		},
		{
			name: "wal .END file",
			mutate: func(t *testing.T, l *layout) {
				mustWrite(t, l.last+".END", nil)
			},
			anyCorrupt: true,
		},
	}
	for _, c := range cases {
		t.Run(strings.ReplaceAll(c.name, " ", "_"), func(t *testing.T) {
			dir := t.TempDir()
			copyDir(t, base, dir)
			l := &layout{dir: dir, segs: bl.segs, ents: bl.ents, last: filepath.Join(dir, filepath.Base(bl.last))}
			c.mutate(t, l)
			before := snapshotDir(t, dir)
			lastBefore, _ := os.ReadFile(l.last)

			// The reader sees the same thing as Open, and writes nothing.
			r, rerr := OpenReader(dir)
			var verr error
			var vrep VerifyReport
			if rerr == nil {
				vrep, verr = r.Verify()
				r.TailDamage()
				r.Scan(1, func(Record) error { return nil })
			}
			if d := diffSnapshots(before, snapshotDir(t, dir)); d != "[]" {
				t.Fatalf("reader changed the directory: %s", d)
			}

			j, err := Open(dir, testOptions(t, 1024))
			if c.repairOff == nil {
				if err == nil {
					j.Close()
					t.Fatal("Open accepted a corrupt journal")
				}
				var ce *CorruptError
				if !errors.As(err, &ce) {
					t.Fatalf("Open: %v, want *CorruptError", err)
				}
				t.Logf("refused: %v", err)
				if !c.anyCorrupt {
					if ce.File != c.file(l) || ce.Offset != c.offset(l) || ce.Index != c.index(l) {
						t.Fatalf("CorruptError names %s offset %d index %d, want %s %d %d",
							ce.File, ce.Offset, ce.Index, c.file(l), c.offset(l), c.index(l))
					}
					if !strings.Contains(ce.Reason, c.reason) {
						t.Fatalf("reason %q lacks %q", ce.Reason, c.reason)
					}
				}
				if rerr == nil && verr == nil {
					t.Fatalf("reader verified a journal Open refuses: %+v", vrep)
				}
				if d := diffSnapshots(before, snapshotDir(t, dir)); d != "[]" {
					t.Fatalf("refused Open changed the directory: %s", d)
				}
				// And the lock was released.
				if _, err := lockDir(dir, false); err != nil {
					t.Fatalf("lock after refusal: %v", err)
				}
				return
			}

			if err != nil {
				t.Fatalf("Open: %v, want a repair", err)
			}
			if rerr != nil || verr != nil || vrep.Tail == nil || vrep.Tail.Offset != c.repairOff(l) {
				t.Fatalf("reader before repair: %v %v %+v", rerr, verr, vrep.Tail)
			}
			rep := j.Repaired()
			if rep == nil || rep.File != l.last || rep.Offset != c.repairOff(l) || rep.CutBytes != int64(len(lastBefore))-rep.Offset {
				t.Fatalf("repair report %+v, want cut of %s at %d", rep, l.last, c.repairOff(l))
			}
			t.Logf("repaired: %v", rep)
			if j.LastIndex() != c.repairLast {
				t.Fatalf("LastIndex %d after repair, want %d", j.LastIndex(), c.repairLast)
			}
			if filepath.Dir(rep.Broken) != filepath.Join(dir, "broken") || !bytes.Equal(mustRead(t, rep.Broken), lastBefore) {
				t.Fatalf("broken copy %s missing or wrong", rep.Broken)
			}
			if fileSize(t, l.last) != rep.Offset {
				t.Fatal("segment not cut at the reported offset")
			}
			// Append more, reopen: clean.
			next := c.repairLast + 1
			for range 5 {
				if idx, err := j.Append(eventsEntry(next)); err != nil || idx != next {
					t.Fatalf("append after repair: %d %v", idx, err)
				}
				next++
			}
			j.Close()
			j, err = Open(dir, testOptions(t, 1024))
			if err != nil {
				t.Fatal(err)
			}
			if j.Repaired() != nil || j.LastIndex() != next-1 {
				t.Fatalf("second open: repaired %v, last %d", j.Repaired(), j.LastIndex())
			}
			j.Close()
			checkRecords(t, dir, next-1)
			r, err = OpenReader(dir)
			if err != nil {
				t.Fatal(err)
			}
			if rep, err := r.Verify(); err != nil || rep.Tail != nil {
				t.Fatalf("verify after repair: %+v %v", rep, err)
			}
		})
	}
}

// FuzzOpenTail appends arbitrary bytes to a valid journal's last segment:
// Open must repair or refuse (writing nothing), never panic, and never lose
// a record before the damage.
func FuzzOpenTail(f *testing.F) {
	base := f.TempDir()
	buildJournal(f, base, 300, 8)
	segs := segmentFiles(f, base)
	lastName := segs[len(segs)-1]
	lastSize := int64(len(mustRead(f, filepath.Join(base, lastName))))
	ents := entriesOf(f, filepath.Join(base, lastName))
	tailRec := mustRead(f, filepath.Join(base, lastName))[ents[len(ents)-1].off:]
	r, err := OpenReader(base)
	if err != nil {
		f.Fatal(err)
	}
	finalRec, err := r.Read(8)
	if err != nil {
		f.Fatal(err)
	}
	next := EncodeRecord(nil, Record{Index: 9, Type: TypeEvents, Epoch: 7, Prev: finalRec.CRC, Payload: payloadFor(9)})
	nextEntry := binary.AppendUvarint(nil, uint64(len(next)))
	nextEntry = append(nextEntry, next...)

	f.Add([]byte{})
	f.Add(make([]byte, 64))
	f.Add([]byte("garbage garbage garbage"))
	f.Add(nextEntry)
	f.Add(nextEntry[:len(nextEntry)-3])
	f.Add(append(append([]byte(nil), nextEntry...), 0xff, 0x01))
	f.Add(append([]byte{0}, nextEntry...))
	f.Add(tailRec)
	f.Add(next)
	f.Fuzz(func(t *testing.T, tail []byte) {
		dir := t.TempDir()
		copyDir(t, base, dir)
		p := filepath.Join(dir, lastName)
		mustWrite(t, p, append(mustRead(t, p), tail...))
		before := snapshotDir(t, dir)
		j, err := Open(dir, testOptions(t, 300))
		if err != nil {
			var ce *CorruptError
			if !errors.As(err, &ce) {
				t.Fatalf("Open: %v (not a CorruptError)", err)
			}
			if ce.Offset < lastSize || ce.Index <= 8 {
				t.Fatalf("refusal points before the damage: %v", err)
			}
			if d := diffSnapshots(before, snapshotDir(t, dir)); d != "[]" {
				t.Fatalf("refused Open changed the directory: %s", d)
			}
			return
		}
		defer j.Close()
		if j.LastIndex() < 8 {
			t.Fatalf("lost records: last %d", j.LastIndex())
		}
		if rep := j.Repaired(); rep != nil && rep.Offset < lastSize {
			t.Fatalf("repair cut into the valid journal: %+v", rep)
		}
		checkRecordsPrefix(t, dir, 8)
	})
}

// checkRecordsPrefix checks records 1..n as checkRecords does, allowing more.
func checkRecordsPrefix(t *testing.T, dir string, n uint64) {
	t.Helper()
	r, err := OpenReader(dir)
	if err != nil {
		t.Fatal(err)
	}
	want := uint64(1)
	err = r.Scan(1, func(rec Record) error {
		if rec.Index > n {
			return errStop
		}
		if rec.Index != want || rec.Index > 1 && !bytes.Equal(rec.Payload, payloadFor(rec.Index)) {
			t.Fatalf("record %d: %+v", want, rec)
		}
		want++
		return nil
	})
	if err != nil && err != errStop || want != n+1 {
		t.Fatalf("scan: %v, reached %d", err, want-1)
	}
}
