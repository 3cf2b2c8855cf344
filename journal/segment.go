package journal

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"sync"
)

// This file holds the parsing shared by Open (verify and repair) and Reader.
// Nothing here writes.

// segment is one segment file of the journal.
type segment struct {
	first uint64 // index of its first entry, parsed from the name
	name  string // base name: 20 zero-padded digits
}

const segNameLen = 20

// minEntry is the smallest WAL entry that can hold a record: a one-byte
// uvarint length and a record with an empty payload.
const minEntry = 1 + Overhead

func segmentName(index uint64) string { return fmt.Sprintf("%020d", index) }

// listSegments returns the journal's segment files in index order. It applies
// wal's own naming rule (a file whose name is 20 digits, not all zero) so that
// we see exactly the files wal.Open would load. wal's truncation leftovers
// (".START", ".END") make wal.Open delete or rename files; we never truncate
// through wal, so their presence means someone else did, and we refuse. A
// missing directory or one without segments gives ErrNotExist.
func listSegments(dir string) ([]segment, error) {
	ents, err := os.ReadDir(dir) // sorted by name, i.e. by index
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("journal: %s: %w", dir, ErrNotExist)
		}
		return nil, fmt.Errorf("journal: list %s: %w", dir, err)
	}
	var segs []segment
	for _, e := range ents {
		name := e.Name()
		if e.IsDir() || len(name) < segNameLen {
			continue
		}
		index, err := strconv.ParseUint(name[:segNameLen], 10, 64)
		if err != nil || index == 0 {
			continue
		}
		switch name[segNameLen:] {
		case "":
			segs = append(segs, segment{first: index, name: name})
		case ".START", ".END":
			return nil, &CorruptError{File: filepath.Join(dir, name), Index: index,
				Reason: "wal truncation file present: abs never truncates its journal, so something else touched it; refusing (wal.Open would delete or rename segments)"}
		}
	}
	if len(segs) == 0 {
		return nil, fmt.Errorf("journal: %s has no segment files: %w", dir, ErrNotExist)
	}
	if segs[0].first != 1 {
		return nil, &CorruptError{File: filepath.Join(dir, segs[0].name), Index: 1,
			Reason: fmt.Sprintf("first segment starts at index %d, want 1 (segments are missing)", segs[0].first)}
	}
	return segs, nil
}

// bufPool holds segment read buffers, so a scan of many segments (or many
// scans) does not allocate a segment-sized buffer each time.
var bufPool = sync.Pool{New: func() any { return new([]byte) }}

// readSegment reads a segment file into *buf (grown as needed). limit < 0
// reads the whole file; otherwise at most limit bytes. If the file is shorter
// than asked, the bytes present are returned without error: the caller's
// parse notices.
func readSegment(path string, limit int64, buf *[]byte) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("journal: read segment: %w", err)
	}
	defer f.Close()
	size := limit
	if size < 0 {
		st, err := f.Stat()
		if err != nil {
			return nil, fmt.Errorf("journal: read segment: %w", err)
		}
		size = st.Size()
	}
	if int64(cap(*buf)) < size {
		*buf = make([]byte, size)
	}
	b := (*buf)[:size]
	n, err := io.ReadFull(f, b)
	if err != nil && err != io.ErrUnexpectedEOF && err != io.EOF {
		return nil, fmt.Errorf("journal: read segment %s: %w", path, err)
	}
	return b[:n], nil
}

// damage says where and why parsing a segment stopped early.
type damage struct {
	off    int64  // offset of the WAL entry (its length prefix)
	index  uint64 // index expected there
	reason string
	// intact is set when the entry framed a record that passed its own CRC
	// but sits in the wrong place (index, chain or type): that is never a
	// torn write, so it is never repaired.
	intact bool
}

type scanResult struct {
	count   uint64 // records parsed and verified
	end     int64  // offset just after the last of them
	lastCRC uint32 // CRC of the last of them (prev if count == 0)
	dmg     *damage
}

// scanRecords parses the WAL entries of one segment and verifies each record:
// framing, own CRC, index == position, type (identity at 1, events after) and,
// when checkPrev is set (prev is known), the chain. next is the index of the
// first entry. fn, if not nil, gets every verified record whose index is >=
// from, with a Payload aliasing data; an error from fn stops the scan and is
// returned as is. Damage is reported in the result, not as an error. This is
// the hot path of Open and Scan: it does not allocate per record.
func scanRecords(data []byte, next uint64, prev uint32, checkPrev bool, from uint64, fn func(Record) error) (scanResult, error) {
	res := scanResult{lastCRC: prev}
	off := 0
	for off < len(data) {
		size, n := binary.Uvarint(data[off:])
		bad := func(reason string, intact bool) (scanResult, error) {
			res.dmg = &damage{off: int64(off), index: next, reason: reason, intact: intact}
			return res, nil
		}
		if n <= 0 {
			if n == 0 {
				return bad("torn entry length", false)
			}
			return bad("invalid entry length", false)
		}
		if size == 0 {
			return bad("empty WAL entry (zero bytes)", false)
		}
		if size > uint64(len(data)-off-n) {
			return bad(fmt.Sprintf("entry of %d bytes runs past the end of the file (%d bytes left)", size, len(data)-off-n), false)
		}
		b := data[off+n : off+n+int(size)]
		r, why := decodeRecord(b)
		if why != badNone {
			return bad(why.describe(b), false)
		}
		switch {
		case r.Index != next:
			return bad(fmt.Sprintf("record claims index %d", r.Index), true)
		case next == 1 && r.Type != TypeIdentity:
			return bad(fmt.Sprintf("first record is %s, not identity", r.Type), true)
		case next != 1 && r.Type != TypeEvents:
			return bad(fmt.Sprintf("%s record after index 1", r.Type), true)
		case next == 1 && (r.Prev != 0 || r.Epoch != 0):
			return bad(fmt.Sprintf("identity record has prev %08x and epoch %d, want 0 and 0", r.Prev, r.Epoch), true)
		case checkPrev && r.Prev != res.lastCRC:
			return bad(fmt.Sprintf("chain broken: prev is %08x, the previous record's crc is %08x", r.Prev, res.lastCRC), true)
		}
		if fn != nil && r.Index >= from {
			if err := fn(r); err != nil {
				return res, err
			}
		}
		off += n + int(size)
		res.count++
		res.end = int64(off)
		res.lastCRC = r.CRC
		checkPrev = true
		next++
	}
	return res, nil
}

// firstRecord decodes the first entry of a segment (no chain check).
func firstRecord(data []byte) (Record, bool) {
	size, n := binary.Uvarint(data)
	if n <= 0 || size > uint64(len(data)-n) {
		return Record{}, false
	}
	r, why := decodeRecord(data[n : n+int(size)])
	return r, why == badNone
}

var recordMagic = []byte{magic0, magic1, FormatVersion}

// laterRecord looks for evidence that damage at off is not confined to the
// final record: a record starting at any byte offset >= off (entry boundaries
// cannot be trusted after the damage) that passes its own CRC and carries an
// index that could follow the valid prefix (next up to what the remaining
// bytes could hold). Random bytes pass with probability about 2^-56 per
// candidate, zeros never (no magic). It returns the record's offset and index.
func laterRecord(data []byte, off int64, next uint64) (int64, uint64, bool) {
	maxIndex := next + uint64(int64(len(data))-off)/minEntry
	for p := int(off); p < len(data); {
		i := bytes.Index(data[p:], recordMagic)
		if i < 0 {
			break
		}
		m := p + i
		p = m + 1
		if len(data)-m < Overhead {
			break
		}
		// Cheap checks first, so that only plausible candidates pay for a CRC.
		idx := binary.BigEndian.Uint64(data[m+offIndex:])
		l := binary.BigEndian.Uint32(data[m+offLength:])
		if idx < next || idx > maxIndex || l > MaxPayload || uint64(l) > uint64(len(data)-m-Overhead) {
			continue
		}
		if _, why := decodeRecord(data[m : m+Overhead+int(l)]); why == badNone {
			return int64(m), idx, true
		}
	}
	return 0, 0, false
}

// judgeTail decides what damage found in the last segment is: a torn,
// zeroed or garbage final record (returned as a report of what to cut), or
// anything else (a *CorruptError). next is the index expected at the damage.
func judgeTail(file string, data []byte, d *damage) (*RepairReport, error) {
	corrupt := func(reason string) error {
		return &CorruptError{File: file, Offset: d.off, Index: d.index, Reason: reason}
	}
	if d.intact {
		return nil, corrupt(d.reason)
	}
	if d.index == 1 {
		return nil, corrupt(d.reason + " (the identity record; nothing to keep, refusing to repair)")
	}
	if at, idx, ok := laterRecord(data, d.off, d.index); ok {
		return nil, corrupt(fmt.Sprintf("%s, and a valid record (index %d) follows at offset %d: damage inside the log, not a torn tail", d.reason, idx, at))
	}
	return &RepairReport{File: file, Offset: d.off, CutBytes: int64(len(data)) - d.off, Reason: d.reason}, nil
}
