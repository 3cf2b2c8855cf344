package journal

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"sync"
	"sync/atomic"
)

// Reader reads a journal without modifying it: it never creates, renames,
// truncates or locks anything, so it can run beside a writer (it sees a
// prefix of the log) and on read-only copies. It is safe for concurrent use
// by many goroutines.
//
// A Reader works on a snapshot of the directory taken by OpenReader or
// Refresh: the list of segments and the valid length of the last one. It
// never holds more than one segment in memory per Scan.
type Reader struct {
	dir  string
	id   Identity
	snap atomic.Pointer[snapshot]

	mu sync.Mutex
	// crcs maps a segment's first index to the CRC of its last record, as
	// learned by scanning it whole, so a later Scan that starts in the next
	// segment can check the link between the two.
	crcs map[uint64]uint32
}

type snapshot struct {
	segs      []segment
	last      uint64 // last index of the valid prefix
	lastLen   int64  // valid bytes of the last segment
	lastCount uint64 // records in them
	tail      *RepairReport
	tailErr   error // damage in the last segment that is not a torn tail
}

// VerifyReport summarises a successful Reader.Verify.
type VerifyReport struct {
	Segments  int
	Records   uint64 // including the identity record
	LastIndex uint64
	Bytes     int64 // valid bytes in all segments
	// Tail is the torn tail after the valid prefix (what Open would cut), or
	// nil. A torn tail does not make Verify fail.
	Tail *RepairReport
}

// OpenReader opens the journal in dir for reading. It reads the identity
// record and parses the last segment to find the end of the valid prefix.
// It fails with ErrNotExist if dir holds no journal and with *CorruptError
// if the identity record is unreadable or wal truncation files are present;
// other damage is reported by Scan, Read and Verify when they reach it.
func OpenReader(dir string) (*Reader, error) {
	segs, err := listSegments(dir)
	if err != nil {
		return nil, err
	}
	id, err := readIdentity(filepath.Join(dir, segs[0].name))
	if err != nil {
		return nil, err
	}
	r := &Reader{dir: dir, id: id, crcs: map[uint64]uint32{}}
	snap, err := r.snapshot(segs)
	if err != nil {
		return nil, err
	}
	r.snap.Store(snap)
	return r, nil
}

// Refresh takes a new snapshot, to see records appended since OpenReader or
// the previous Refresh. The snapshot never moves backwards.
func (r *Reader) Refresh() error {
	segs, err := listSegments(r.dir)
	if err != nil {
		return err
	}
	snap, err := r.snapshot(segs)
	if err != nil {
		return err
	}
	// Concurrent Refreshes may finish out of order: never go backwards.
	// (A repair never shrinks the valid prefix: it only cuts bytes that no
	// snapshot counted.)
	for {
		cur := r.snap.Load()
		if snap.last < cur.last || r.snap.CompareAndSwap(cur, snap) {
			return nil
		}
	}
}

func (r *Reader) snapshot(segs []segment) (*snapshot, error) {
	s := segs[len(segs)-1]
	file := filepath.Join(r.dir, s.name)
	bufp := bufPool.Get().(*[]byte)
	defer bufPool.Put(bufp)
	data, err := readSegment(file, -1, bufp)
	if err != nil {
		return nil, err
	}
	// The link into this segment is checked by Scan, which knows the
	// previous segment's last CRC once it has read it.
	res, _ := scanRecords(data, s.first, 0, s.first == 1, 0, nil)
	snap := &snapshot{segs: segs, lastLen: res.end, lastCount: res.count, last: s.first + res.count - 1}
	if res.dmg != nil {
		snap.tail, snap.tailErr = judgeTail(file, data, res.dmg)
	}
	return snap, nil
}

// readIdentity reads and checks the first record of the first segment.
func readIdentity(file string) (Identity, error) {
	corrupt := func(reason string) error {
		return &CorruptError{File: file, Index: 1, Reason: reason}
	}
	f, err := os.Open(file)
	if err != nil {
		return Identity{}, fmt.Errorf("journal: read identity: %w", err)
	}
	defer f.Close()
	head := make([]byte, 4096)
	n, err := io.ReadFull(f, head)
	if err != nil && err != io.ErrUnexpectedEOF && err != io.EOF {
		return Identity{}, fmt.Errorf("journal: read identity: %w", err)
	}
	head = head[:n]
	size, vn := binary.Uvarint(head)
	if vn <= 0 || size == 0 || size > MaxPayload+Overhead {
		return Identity{}, corrupt("no identity record")
	}
	if need := vn + int(size); need > len(head) {
		buf := make([]byte, need)
		n, err := f.ReadAt(buf, 0)
		if n < need {
			return Identity{}, corrupt(fmt.Sprintf("identity record torn (%d of %d bytes): %v", n, need, err))
		}
		head = buf
	}
	rec, why := decodeRecord(head[vn : vn+int(size)])
	switch {
	case why != badNone:
		return Identity{}, corrupt("identity record: " + why.describe(head[vn:vn+int(size)]))
	case rec.Type != TypeIdentity || rec.Index != 1 || rec.Prev != 0 || rec.Epoch != 0:
		return Identity{}, corrupt(fmt.Sprintf("first record is %s at index %d (prev %08x, epoch %d), want an identity at index 1", rec.Type, rec.Index, rec.Prev, rec.Epoch))
	}
	id, err := decodeIdentity(rec.Payload)
	if err != nil {
		return Identity{}, corrupt(fmt.Sprintf("identity payload: %v", err))
	}
	return id, nil
}

// Identity returns the journal's identity.
func (r *Reader) Identity() Identity { return r.id }

// LastIndex returns the last index of the valid prefix in the current
// snapshot (OpenReader or the last Refresh).
func (r *Reader) LastIndex() uint64 { return r.snap.Load().last }

// TailDamage returns what Open would cut from the end of the last segment
// in the current snapshot (Broken is empty), or nil. Beside a live writer it
// may report a record that was being written when the snapshot was taken.
func (r *Reader) TailDamage() *RepairReport {
	t := r.snap.Load().tail
	if t == nil {
		return nil
	}
	c := *t
	return &c
}

// Scan calls fn for every record with index >= from (0 means 1) up to
// LastIndex, in order. The Record's Payload aliases a buffer that is reused:
// it is valid only during fn (copy it to keep it). Scan verifies every record
// it reads (framing, CRC, index, type) and the chain between them, including
// the link into the segment where it starts once any scan of this Reader has
// read the previous segment whole (Verify checks every link). It also checks
// that no segment is missing. A torn final record of the last segment is the
// end of the log (see TailDamage); any other damage gives a *CorruptError
// when Scan reaches it, after fn has seen the records before it. An error
// returned by fn stops the scan and is returned as is.
func (r *Reader) Scan(from uint64, fn func(Record) error) error {
	_, err := r.scan(from, fn)
	return err
}

type scanStats struct {
	snap     *snapshot
	segments int
	records  uint64
	bytes    int64
}

func (r *Reader) scan(from uint64, fn func(Record) error) (scanStats, error) {
	snap := r.snap.Load()
	st := scanStats{snap: snap}
	if from == 0 {
		from = 1
	}
	if from > snap.last {
		return st, snap.tailErr
	}
	segs := snap.segs
	i := sort.Search(len(segs), func(i int) bool { return segs[i].first > from }) - 1
	bufp := bufPool.Get().(*[]byte)
	defer bufPool.Put(bufp)
	for ; i < len(segs); i++ {
		s := segs[i]
		file := filepath.Join(r.dir, s.name)
		last := i == len(segs)-1
		limit := int64(-1)
		if last {
			limit = snap.lastLen
		}
		data, err := readSegment(file, limit, bufp)
		if err != nil {
			return st, err
		}
		prev, known := uint32(0), s.first == 1
		if !known {
			prev, known = r.linkCRC(segs[i-1].first)
		}
		res, err := scanRecords(data, s.first, prev, known, from, fn)
		if err != nil {
			return st, err
		}
		if res.dmg != nil {
			return st, &CorruptError{File: file, Offset: res.dmg.off, Index: res.dmg.index, Reason: res.dmg.reason}
		}
		st.segments++
		st.records += res.count
		st.bytes += res.end
		if !last {
			next := s.first + res.count
			if segs[i+1].first > next {
				// A directory listing taken while the writer creates segments
				// may miss one created during it and show a later one. The
				// missed segment exists then, complete (a later one does):
				// read it in its place.
				if _, err := os.Stat(filepath.Join(r.dir, segmentName(next))); err == nil {
					segs = slices.Insert(slices.Clone(segs), i+1, segment{first: next, name: segmentName(next)})
				}
			}
			if segs[i+1].first != next {
				return st, &CorruptError{File: filepath.Join(r.dir, segs[i+1].name), Index: next,
					Reason: fmt.Sprintf("segment %s holds %d records, so the next segment must be %s: segments are missing or out of place",
						s.name, res.count, segmentName(next))}
			}
			r.learnCRC(s.first, res.lastCRC)
		} else if res.count != snap.lastCount {
			return st, &CorruptError{File: file, Offset: res.end, Index: s.first + res.count,
				Reason: fmt.Sprintf("segment changed under the reader: %d records where the snapshot had %d (was the journal repaired? Refresh)", res.count, snap.lastCount)}
		}
	}
	return st, snap.tailErr
}

func (r *Reader) linkCRC(seg uint64) (uint32, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	c, ok := r.crcs[seg]
	return c, ok
}

func (r *Reader) learnCRC(seg uint64, crc uint32) {
	r.mu.Lock()
	r.crcs[seg] = crc
	r.mu.Unlock()
}

var errStop = errors.New("stop")

// Read returns the record at index, with its own copy of the payload. It
// reads the segment holding index from its start (verifying as Scan does),
// so reading many records in order is much cheaper with Scan. An index
// outside 1..LastIndex gives an error wrapping ErrNotExist.
func (r *Reader) Read(index uint64) (Record, error) {
	if index == 0 || index > r.LastIndex() {
		return Record{}, fmt.Errorf("journal: read %d (last is %d): %w", index, r.LastIndex(), ErrNotExist)
	}
	var out Record
	found := false
	err := r.Scan(index, func(rec Record) error {
		out = rec
		out.Payload = append([]byte(nil), rec.Payload...)
		found = true
		return errStop
	})
	if err != nil && err != errStop {
		return Record{}, fmt.Errorf("journal: read %d: %w", index, err)
	}
	if !found {
		return Record{}, fmt.Errorf("journal: read %d: %w", index, ErrNotExist)
	}
	return out, nil
}

// Verify checks the whole journal in the current snapshot: every segment is
// where the previous one's record count says (none missing), every record
// passes its CRC, sits at the index it names, has the right type (identity
// first, events after) and chains to the previous record. It returns the
// first *CorruptError met. A torn tail is not an error; it is in the report.
func (r *Reader) Verify() (VerifyReport, error) {
	st, err := r.scan(1, nil)
	if err != nil {
		return VerifyReport{}, err
	}
	rep := VerifyReport{Segments: st.segments, Records: st.records, LastIndex: st.snap.last, Bytes: st.bytes}
	if t := st.snap.tail; t != nil {
		c := *t
		rep.Tail = &c
	}
	return rep, nil
}
