package tape

import (
	"encoding/binary"
	"io"
	"io/fs"
	"os"
	"slices"
)

// A FileLibrary remembers the structure of each cartridge its drives last
// held (the index a scan finds, or that writing the files built), so that
// loading it again does not read the whole cartridge to find its files: a
// restore right after a dump, or the next dump appended to the same
// cartridge, starts at once. The index is reused only if the cartridge file
// is unchanged since: same file, size, modification and change times, and
// every header and trailer record still where the index puts it, intact
// and identical. Otherwise the cartridge is scanned as before. Only a
// cartridge whose files are all complete, with nothing after the last one,
// is remembered.

// cachedIndex is what a library remembers of one cartridge.
type cachedIndex struct {
	stamp fileStamp
	files []FileInfo
	end   int64
	crcs  []uint32 // header CRC then trailer CRC, for each file
}

// fileStamp identifies a version of a cartridge file.
type fileStamp struct {
	fi    fs.FileInfo
	size  int64
	mtime int64
	ctime int64
}

func stampOf(f *os.File) (fileStamp, error) {
	fi, err := f.Stat()
	if err != nil {
		return fileStamp{}, err
	}
	return fileStamp{fi: fi, size: fi.Size(), mtime: fi.ModTime().UnixNano(), ctime: ctimeOf(fi)}, nil
}

func (s fileStamp) same(o fileStamp) bool {
	return s.fi != nil && o.fi != nil && os.SameFile(s.fi, o.fi) &&
		s.size == o.size && s.mtime == o.mtime && s.ctime == o.ctime
}

// remember records d's index, if it is complete and clean, as the
// library's knowledge of the cartridge; otherwise it forgets the
// cartridge. Called with d.mu held, before d.f is closed.
func (d *fileDrive) remember() {
	l := d.lib
	var c *cachedIndex
	if idx := d.index; idx != nil && d.label != nil && d.w == nil && idx.tail == nil {
		if st, err := stampOf(d.f); err == nil && st.size == idx.end {
			c = &cachedIndex{stamp: st, files: slices.Clone(idx.files), end: idx.end}
			for _, fi := range idx.files {
				hc, tc, ok := recordCRCs(d.f, fi)
				if !ok || !fi.Complete {
					c = nil
					break
				}
				c.crcs = append(c.crcs, hc, tc)
			}
		}
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if c == nil {
		delete(l.indexes, d.name)
	} else {
		l.indexes[d.name] = c
	}
}

// recall returns the remembered index of the cartridge open as f, if f is
// unchanged since. Called with l.mu held.
func (l *FileLibrary) recall(name string, f *os.File) *scanResult {
	c := l.indexes[name]
	if c == nil {
		return nil
	}
	st, err := stampOf(f)
	if err != nil || !st.same(c.stamp) {
		delete(l.indexes, name)
		return nil
	}
	for i, fi := range c.files {
		hc, tc, ok := recordCRCs(f, fi)
		if !ok || hc != c.crcs[2*i] || tc != c.crcs[2*i+1] {
			delete(l.indexes, name)
			return nil
		}
	}
	return &scanResult{files: slices.Clone(c.files), end: c.end}
}

// recordCRCs reads the header and trailer records of complete file fi and
// returns their CRCs; ok is false unless both are valid records of fi.
func recordCRCs(r io.ReaderAt, fi FileInfo) (hc, tc uint32, ok bool) {
	b := make([]byte, BlockSize)
	if _, err := r.ReadAt(b, fi.Offset); err != nil {
		return 0, 0, false
	}
	h, nonce, err := decodeHeader(b)
	if err != nil || h.Number != fi.Number {
		return 0, 0, false
	}
	hc = binary.BigEndian.Uint32(b[crcOff:])
	if _, err := r.ReadAt(b, fi.Offset+BlockSize+padded(fi.Size)); err != nil {
		return 0, 0, false
	}
	t, err := decodeTrailer(b)
	if err != nil || t.nonce != nonce || t.number != fi.Number || t.size != fi.Size {
		return 0, 0, false
	}
	return hc, binary.BigEndian.Uint32(b[crcOff:]), true
}
