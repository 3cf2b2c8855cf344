package tape

import (
	"bufio"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"os"
)

// ReadLabel reads the label record of a cartridge. It returns ErrBlank for
// an empty cartridge and a *CorruptError for anything but a valid label.
func ReadLabel(r io.ReaderAt) (Label, error) { return readLabel(r, "") }

func readLabel(r io.ReaderAt, path string) (Label, error) {
	b := make([]byte, BlockSize)
	n, err := r.ReadAt(b, 0)
	switch {
	case n == 0 && errors.Is(err, io.EOF):
		return Label{}, ErrBlank
	case n < BlockSize && errors.Is(err, io.EOF):
		return Label{}, &CorruptError{Path: path, Reason: fmt.Sprintf("label record is only %d bytes, not %d (torn label write?)", n, BlockSize)}
	case n < BlockSize:
		return Label{}, fmt.Errorf("tape: read label of %s: %w", path, err)
	}
	l, err := decodeLabel(b)
	if err != nil {
		return Label{}, &CorruptError{Path: path, Reason: "label record: " + err.Error()}
	}
	return l, nil
}

// scanResult is the structure of a labeled cartridge.
type scanResult struct {
	// files are the complete files, then possibly one torn file.
	files []FileInfo
	// end is the offset just after the last complete file: where the next
	// file goes.
	end int64
	// tail describes bytes after end, or is nil if end is the cartridge's
	// size.
	tail *CorruptError
	// cuttable says tail is a torn write that Append may cut (doc.go,
	// "Torn files").
	cuttable bool
}

// blocks reads consecutive blocks from an offset, buffered.
type blocks struct {
	r   *bufio.Reader
	pos int64 // offset of the next block
	end int64
	b   []byte
}

func newBlocks(r io.ReaderAt, from, end int64) *blocks {
	return &blocks{r: bufio.NewReaderSize(io.NewSectionReader(r, from, end-from), 256<<10), pos: from, end: end, b: make([]byte, BlockSize)}
}

// next returns the next whole block and its offset, or ok=false when no
// whole block is left.
func (bs *blocks) next() (b []byte, off int64, ok bool, err error) {
	if bs.end-bs.pos < BlockSize {
		return nil, bs.pos, false, nil
	}
	if _, err := io.ReadFull(bs.r, bs.b); err != nil {
		return nil, bs.pos, false, fmt.Errorf("tape: read at offset %d: %w", bs.pos, err)
	}
	off = bs.pos
	bs.pos += BlockSize
	return bs.b, off, true, nil
}

// isMarker says whether b is a valid header or trailer record.
func isMarker(b []byte) bool {
	switch string(b[:8]) {
	case headerMagic:
		_, _, err := decodeHeader(b)
		return err == nil
	case trailerMagic:
		_, err := decodeTrailer(b)
		return err == nil
	}
	return false
}

// anyMarker says whether a valid header or trailer starts at a block
// boundary in [from, end).
func anyMarker(r io.ReaderAt, from, end int64) (bool, error) {
	bs := newBlocks(r, from, end)
	for {
		b, _, ok, err := bs.next()
		if err != nil || !ok {
			return false, err
		}
		if isMarker(b) {
			return true, nil
		}
	}
}

// scan walks a labeled cartridge of size bytes from block 1. See doc.go,
// "Reading a cartridge", for the algorithm. It returns an error only when r
// fails; damage is described in the result.
func scan(r io.ReaderAt, size int64, path string) (scanResult, error) {
	return scanHashing(r, size, path, nil)
}

// scanHashing is scan that also hashes the payload of every complete file
// while it reads it looking for the trailer, setting sums[i] to the SHA-256
// of files[i] (lowercase hex) when sums is not nil: List reads the
// cartridge once instead of twice.
func scanHashing(r io.ReaderAt, size int64, path string, sums *[]string) (scanResult, error) {
	res := scanResult{end: BlockSize}
	pos := int64(BlockSize)
	for pos < size {
		number := len(res.files) + 1
		if size-pos < BlockSize {
			res.tail = &CorruptError{Path: path, Offset: pos, File: number,
				Reason: fmt.Sprintf("partial block of %d bytes after the last complete file (torn header write)", size-pos)}
			res.cuttable = true
			return res, nil
		}
		hb := make([]byte, BlockSize)
		if _, err := r.ReadAt(hb, pos); err != nil {
			return res, fmt.Errorf("tape: read %s at offset %d: %w", path, pos, err)
		}
		h, nonce, err := decodeHeader(hb)
		if err == nil && h.Number != number {
			err = fmt.Errorf("header says file %d, expected %d", h.Number, number)
		}
		if err != nil {
			found, rerr := anyMarker(r, pos, size)
			if rerr != nil {
				return res, rerr
			}
			res.tail = &CorruptError{Path: path, Offset: pos, File: number, Reason: "no valid file header: " + err.Error()}
			res.cuttable = !found
			if found {
				res.tail.Reason += "; valid records follow, so this is damage, not a torn write"
			}
			return res, nil
		}
		info := FileInfo{FileHeader: h, Offset: pos}
		var ph *payloadHasher
		if sums != nil {
			ph = newPayloadHasher()
		}
		t, toff, foreign, err := findTrailer(r, pos+BlockSize, size, nonce, ph)
		if err != nil {
			return res, err
		}
		if toff < 0 {
			info.Size = size - pos - BlockSize
			info.Damage = "no trailer: torn by a crash or abandoned"
			res.files = append(res.files, info)
			res.tail = &CorruptError{Path: path, Offset: pos, File: number, Reason: "file has no trailer (torn)"}
			res.cuttable = !foreign
			if foreign {
				res.tail.Reason += "; its payload holds other valid records, so it is not cut automatically"
			}
			return res, nil
		}
		bad := func(why string) (scanResult, error) {
			res.tail = &CorruptError{Path: path, Offset: toff, File: number, Reason: "trailer: " + why}
			return res, nil
		}
		switch {
		case t.number != h.Number:
			return bad(fmt.Sprintf("says file %d, header says %d", t.number, h.Number))
		case padded(t.size) != toff-pos-BlockSize:
			return bad(fmt.Sprintf("payload size %d does not end at the trailer (%d bytes of payload blocks)", t.size, toff-pos-BlockSize))
		case h.Part == 1 && !t.continues && (t.totalSize != t.size || t.totalSHA256 != t.sha256):
			return bad("a single-part dump whose total differs from its payload")
		}
		info.Size, info.SHA256, info.Continues = t.size, t.sha256, t.continues
		info.TotalSize, info.TotalSHA256, info.Complete = t.totalSize, t.totalSHA256, true
		res.files = append(res.files, info)
		if sums != nil {
			*sums = append(*sums, ph.sum(t.size))
		}
		pos = toff + BlockSize
		res.end = pos
	}
	return res, nil
}

// findTrailer looks for the trailer with the given nonce at block
// boundaries in [from, end). toff is -1 if there is none; foreign says
// whether other valid records were seen on the way.
func findTrailer(r io.ReaderAt, from, end int64, nonce [nonceLen]byte, ph *payloadHasher) (t trailer, toff int64, foreign bool, err error) {
	bs := newBlocks(r, from, end)
	for {
		b, off, ok, err := bs.next()
		if err != nil || !ok {
			return t, -1, foreign, err
		}
		switch string(b[:8]) {
		case trailerMagic:
			if t, err := decodeTrailer(b); err == nil {
				if t.nonce == nonce {
					return t, off, foreign, nil
				}
				foreign = true
			}
		case headerMagic:
			if _, _, err := decodeHeader(b); err == nil {
				foreign = true
			}
		}
		if ph != nil {
			ph.add(b)
		}
	}
}

// payloadHasher hashes the blocks findTrailer passes over, which are the
// payload and its padding if the trailer turns out to agree with them. The
// last block is held back until the trailer says how much of it is
// payload; blocks are hashed in batches.
type payloadHasher struct {
	h      hash.Hash
	hashed int64  // bytes given to h
	buf    []byte // blocks not hashed yet; the last one may be padding
}

const hashBatch = 64 << 10

func newPayloadHasher() *payloadHasher {
	return &payloadHasher{h: sha256.New(), buf: make([]byte, 0, hashBatch+BlockSize)}
}

func (p *payloadHasher) add(b []byte) {
	p.buf = append(p.buf, b...)
	if len(p.buf) >= hashBatch+BlockSize {
		n := len(p.buf) - BlockSize
		p.h.Write(p.buf[:n])
		p.hashed += int64(n)
		p.buf = append(p.buf[:0], p.buf[n:]...)
	}
}

// sum returns the SHA-256 of the first size bytes passed over, or "" if
// they were not all passed over or more than a block of padding followed
// (the scan calls a file complete only if the trailer's size agrees with
// its position, which rules both out).
func (p *payloadHasher) sum(size int64) string {
	rest := size - p.hashed
	if rest < 0 || rest > int64(len(p.buf)) || int64(len(p.buf))-rest >= BlockSize {
		return ""
	}
	p.h.Write(p.buf[:rest])
	return hex.EncodeToString(p.h.Sum(nil))
}

// List reads a cartridge file with no library: its label and every tape
// file, each complete one's payload verified against its trailer. Bad
// files have a Damage; the error is nil only if every file is complete and
// verified and nothing follows the last one. It is ErrBlank for a blank
// cartridge, and otherwise a *CorruptError for the first problem found (the
// files are returned as well).
func List(path string) (Label, []FileInfo, error) {
	f, err := os.Open(path)
	if err != nil {
		return Label{}, nil, fmt.Errorf("tape: %w", err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return Label{}, nil, fmt.Errorf("tape: %w", err)
	}
	l, err := readLabel(f, path)
	if err != nil {
		return Label{}, nil, err
	}
	// One pass: the scan hashes each payload while it looks for its
	// trailer.
	var sums []string
	res, err := scanHashing(f, st.Size(), path, &sums)
	if err != nil {
		return l, nil, err
	}
	var first error
	for i := range res.files {
		fi := &res.files[i]
		if !fi.Complete {
			continue
		}
		sum, n := "", fi.Size
		if i < len(sums) {
			sum = sums[i]
		}
		if sum == "" {
			if sum, n, err = hashPayload(f, *fi); err != nil {
				return l, res.files, err
			}
		}
		if n != fi.Size || sum != fi.SHA256 {
			fi.Damage = fmt.Sprintf("payload SHA-256 is %s (%d bytes), trailer says %s (%d bytes)", sum, n, fi.SHA256, fi.Size)
			if first == nil {
				first = &CorruptError{Path: path, Offset: fi.Offset + BlockSize, File: fi.Number, Reason: fi.Damage}
			}
		}
	}
	if first == nil && res.tail != nil {
		first = res.tail
	}
	return l, res.files, first
}

func hashPayload(r io.ReaderAt, fi FileInfo) (string, int64, error) {
	h := sha256.New()
	n, err := io.Copy(h, io.NewSectionReader(r, fi.Offset+BlockSize, fi.Size))
	if err != nil {
		return "", n, fmt.Errorf("tape: read file %d: %w", fi.Number, err)
	}
	return hex.EncodeToString(h.Sum(nil)), n, nil
}

// OpenFile opens the payload of complete tape file n of a cartridge file,
// with no library. The reader verifies the payload as Drive.Open does; Close
// closes the cartridge file.
func OpenFile(path string, n int) (FileInfo, io.ReadCloser, error) {
	f, err := os.Open(path)
	if err != nil {
		return FileInfo{}, nil, fmt.Errorf("tape: %w", err)
	}
	fi, rc, err := openIn(f, path, n, f.Close)
	if err != nil {
		f.Close()
	}
	return fi, rc, err
}

func openIn(f *os.File, path string, n int, closer func() error) (FileInfo, io.ReadCloser, error) {
	st, err := f.Stat()
	if err != nil {
		return FileInfo{}, nil, fmt.Errorf("tape: %w", err)
	}
	if _, err := readLabel(f, path); err != nil {
		return FileInfo{}, nil, err
	}
	res, err := scan(f, st.Size(), path)
	if err != nil {
		return FileInfo{}, nil, err
	}
	fi, err := findFile(res.files, n, path)
	if err != nil {
		return FileInfo{}, nil, err
	}
	return fi, newAheadReader(f, fi.Offset+BlockSize, fi, path, closer), nil
}

func findFile(files []FileInfo, n int, path string) (FileInfo, error) {
	if n < 1 || n > len(files) {
		return FileInfo{}, fmt.Errorf("%w: %s has %d files, not %d", ErrNoSuchFile, path, len(files), n)
	}
	if fi := files[n-1]; fi.Complete {
		return fi, nil
	}
	return FileInfo{}, fmt.Errorf("%w: file %d of %s is torn (no trailer)", ErrNoSuchFile, n, path)
}

// payloadReader verifies size and SHA-256 when it reaches the end.
type payloadReader struct {
	r      io.Reader
	fi     FileInfo
	path   string
	h      hash.Hash
	n      int64
	closer func() error
	err    error // verdict once at the end: nil, or the mismatch
	done   bool
}

// NewPayloadReader wraps r, the payload of fi, so that reaching its end
// verifies fi.Size and fi.SHA256: a mismatch is returned by Read instead of
// io.EOF, and by Close. closer (may be nil) is called by Close. For
// implementations of Drive.
func NewPayloadReader(r io.Reader, fi FileInfo, path string, closer func() error) io.ReadCloser {
	return &payloadReader{r: io.LimitReader(r, fi.Size+1), fi: fi, path: path, h: sha256.New(), closer: closer}
}

func (p *payloadReader) Read(b []byte) (int, error) {
	if p.done {
		if p.err != nil {
			return 0, p.err
		}
		return 0, io.EOF
	}
	n, err := p.r.Read(b)
	p.h.Write(b[:n])
	p.n += int64(n)
	if p.n > p.fi.Size {
		err = io.EOF
	}
	if errors.Is(err, io.EOF) {
		p.done = true
		sum := hex.EncodeToString(p.h.Sum(nil))
		if p.n != p.fi.Size || sum != p.fi.SHA256 {
			p.err = &CorruptError{Path: p.path, Offset: p.fi.Offset + BlockSize, File: p.fi.Number,
				Reason: fmt.Sprintf("payload SHA-256 is %s (%d bytes), trailer says %s (%d bytes)", sum, p.n, p.fi.SHA256, p.fi.Size)}
			return n, p.err
		}
	}
	return n, err
}

func (p *payloadReader) Close() error {
	// A consumer may stop before the end of the payload (a tar reader stops
	// at the archive's end marker): read the rest, so that the size and the
	// SHA-256 are always checked before Close says the payload was intact.
	if !p.done && p.err == nil && p.closer != nil {
		if _, err := io.Copy(io.Discard, p); err != nil && p.err == nil {
			p.err = err
		}
	}
	var err error
	if p.closer != nil {
		err = p.closer()
		p.closer = nil
	}
	if p.err != nil {
		return p.err
	}
	return err
}
