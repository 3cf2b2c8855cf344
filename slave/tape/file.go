package tape

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Suffix ends the name of every cartridge file of a FileLibrary.
const Suffix = ".tape"

// MinCapacity is the smallest cartridge capacity: a label and one file with
// one payload block.
const MinCapacity = 4 * BlockSize

// BrokenDir is the subdirectory of a library where Append keeps a copy of
// every torn tail it cuts, as <name>.<offset>.<unix-ns>.broken.
const BrokenDir = "broken"

// labelTmpSuffix names the temporary file WriteLabel renames over a blank
// cartridge; OpenLibrary removes leftovers.
const labelTmpSuffix = ".label-tmp"

// FileLibrary is a directory of cartridge files, each named by its external
// name followed by Suffix ("A00001.tape"), with a number of drives and a
// capacity per cartridge. It is safe for concurrent use; each Drive is used
// by one goroutine at a time. Loads are exclusive within one FileLibrary:
// two processes must not open the same directory.
type FileLibrary struct {
	dir      string
	drives   int
	capacity int64
	// rand supplies the per-file nonces; crypto/rand unless a test of this
	// package sets it to get byte-identical cartridges.
	rand io.Reader

	mu     sync.Mutex
	slots  []*fileDrive
	loaded map[string]int // external name → drive
	// indexes are the structures of cartridges as drives last left them
	// (index.go).
	indexes map[string]*cachedIndex
}

// OpenLibrary opens the library in dir, an existing directory, with drives
// drives (at least 1) and cartridges of capacity bytes (at least
// MinCapacity; only whole blocks are used). It removes temporary files left
// by a WriteLabel that crashed.
func OpenLibrary(dir string, drives int, capacity int64) (*FileLibrary, error) {
	if drives < 1 {
		return nil, fmt.Errorf("tape: library %s: %d drives, need at least 1", dir, drives)
	}
	if capacity < MinCapacity {
		return nil, fmt.Errorf("tape: library %s: capacity %d bytes, need at least %d", dir, capacity, MinCapacity)
	}
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("tape: open library: %w", err)
	}
	for _, e := range ents {
		if strings.HasPrefix(e.Name(), ".") && strings.HasSuffix(e.Name(), Suffix+labelTmpSuffix) {
			if err := os.Remove(filepath.Join(dir, e.Name())); err != nil {
				return nil, fmt.Errorf("tape: open library: %w", err)
			}
		}
	}
	return &FileLibrary{dir: dir, drives: drives, capacity: capacity, rand: rand.Reader,
		slots: make([]*fileDrive, drives), loaded: map[string]int{}, indexes: map[string]*cachedIndex{}}, nil
}

// Dir is the library's directory.
func (l *FileLibrary) Dir() string { return l.dir }

// Drives implements Library.
func (l *FileLibrary) Drives() int { return l.drives }

// Capacity implements Library.
func (l *FileLibrary) Capacity() int64 { return l.capacity }

// Path is the file of cartridge name.
func (l *FileLibrary) Path(name string) string { return filepath.Join(l.dir, name+Suffix) }

// Cartridges implements Library: the regular files named *.tape.
func (l *FileLibrary) Cartridges() ([]string, error) {
	ents, err := os.ReadDir(l.dir)
	if err != nil {
		return nil, fmt.Errorf("tape: list cartridges: %w", err)
	}
	var names []string
	for _, e := range ents {
		if n, ok := strings.CutSuffix(e.Name(), Suffix); ok && n != "" && !strings.HasPrefix(n, ".") && e.Type().IsRegular() {
			names = append(names, n)
		}
	}
	sort.Strings(names)
	return names, nil
}

// Load implements Library.
func (l *FileLibrary) Load(drive int, name string) (Drive, error) {
	if drive < 0 || drive >= l.drives {
		return nil, fmt.Errorf("tape: load %s: no drive %d (drives are 0..%d)", name, drive, l.drives-1)
	}
	if name == "" || strings.ContainsAny(name, `/\`) || strings.HasPrefix(name, ".") {
		return nil, fmt.Errorf("%w: %q", ErrNoSuchCartridge, name)
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.slots[drive] != nil {
		return nil, fmt.Errorf("%w: drive %d holds %s", ErrInUse, drive, l.slots[drive].name)
	}
	if d, ok := l.loaded[name]; ok {
		return nil, fmt.Errorf("%w: %s is loaded in drive %d", ErrInUse, name, d)
	}
	path := l.Path(name)
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("%w: %s", ErrNoSuchCartridge, path)
	}
	if err != nil {
		return nil, fmt.Errorf("tape: load %s: %w", name, err)
	}
	d := &fileDrive{lib: l, slot: drive, name: name, path: path, f: f}
	switch lab, err := readLabel(f, path); {
	case errors.Is(err, ErrBlank):
	case err != nil:
		f.Close()
		return nil, err
	default:
		d.label = &lab
		d.index = l.recall(name, f)
	}
	l.slots[drive] = d
	l.loaded[name] = drive
	return d, nil
}

func (l *FileLibrary) release(d *fileDrive) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.slots[d.slot] = nil
	delete(l.loaded, d.name)
}

type fileDrive struct {
	lib        *FileLibrary
	slot       int
	name, path string

	mu       sync.Mutex
	f        *os.File
	label    *Label      // nil: blank
	index    *scanResult // nil: not scanned yet
	w        *fileWriter // the open writer, if any
	unloaded bool
}

// check is called with d.mu held by every method but Name and Unload.
func (d *fileDrive) check() error {
	if d.unloaded {
		return fmt.Errorf("%w: %s", ErrUnloaded, d.name)
	}
	if d.w != nil {
		return fmt.Errorf("%w: %s", ErrBusy, d.name)
	}
	return nil
}

func (d *fileDrive) Name() string { return d.name }

func (d *fileDrive) Label() (Label, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.unloaded {
		return Label{}, fmt.Errorf("%w: %s", ErrUnloaded, d.name)
	}
	if d.label == nil {
		return Label{}, ErrBlank
	}
	return *d.label, nil
}

// WriteLabel writes the label to a temporary file, fsyncs it, renames it
// over the (empty) cartridge file and fsyncs the directory: after a crash
// the cartridge is either blank or labeled, never half labeled.
func (d *fileDrive) WriteLabel(l Label) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if err := d.check(); err != nil {
		return err
	}
	if d.label != nil {
		return fmt.Errorf("%w: %s has label %q; refusing to overwrite it", ErrLabeled, d.name, d.label.Label)
	}
	b, err := encodeLabel(l)
	if err != nil {
		return fmt.Errorf("tape: write label on %s: %w", d.name, err)
	}
	if st, err := d.f.Stat(); err != nil {
		return fmt.Errorf("tape: write label on %s: %w", d.name, err)
	} else if st.Size() != 0 {
		return fmt.Errorf("%w: %s is not empty (%d bytes); refusing to write a label", ErrLabeled, d.path, st.Size())
	}
	tmp := filepath.Join(d.lib.dir, "."+d.name+Suffix+labelTmpSuffix)
	if err := writeSynced(tmp, b); err != nil {
		return fmt.Errorf("tape: write label on %s: %w", d.name, err)
	}
	if err := os.Rename(tmp, d.path); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("tape: write label on %s: %w", d.name, err)
	}
	if err := syncDir(d.lib.dir); err != nil {
		return fmt.Errorf("tape: write label on %s: %w", d.name, err)
	}
	f, err := os.OpenFile(d.path, os.O_RDWR, 0)
	if err != nil {
		return fmt.Errorf("tape: write label on %s: reopen: %w", d.name, err)
	}
	d.f.Close()
	d.f = f
	lab, err := decodeLabel(b)
	if err != nil {
		panic("tape: a label we encoded does not decode: " + err.Error())
	}
	d.label = &lab
	d.index = &scanResult{end: BlockSize}
	return nil
}

func writeSynced(path string, b []byte) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o640)
	if err != nil {
		return err
	}
	if _, err := f.Write(b); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

func syncDir(dir string) error {
	f, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer f.Close()
	return f.Sync()
}

// scanned returns the cartridge's index, scanning it on first use.
func (d *fileDrive) scanned() (*scanResult, error) {
	if d.label == nil {
		return nil, ErrBlank
	}
	if d.index == nil {
		st, err := d.f.Stat()
		if err != nil {
			return nil, fmt.Errorf("tape: %s: %w", d.name, err)
		}
		res, err := scan(d.f, st.Size(), d.path)
		if err != nil {
			return nil, err
		}
		d.index = &res
	}
	return d.index, nil
}

func (d *fileDrive) Files() ([]FileInfo, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if err := d.check(); err != nil {
		return nil, err
	}
	idx, err := d.scanned()
	if err != nil {
		return nil, err
	}
	files := append([]FileInfo(nil), idx.files...)
	if idx.tail != nil && !idx.cuttable {
		return files, idx.tail
	}
	return files, nil
}

func (d *fileDrive) Open(n int) (io.ReadCloser, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if err := d.check(); err != nil {
		return nil, err
	}
	idx, err := d.scanned()
	if err != nil {
		return nil, err
	}
	fi, err := findFile(idx.files, n, d.path)
	if err != nil {
		return nil, err
	}
	// Read ahead in chunks by another goroutine, which also hashes: a tar
	// reader asks for 512-byte headers and small files, and every
	// unbuffered read would be a pread of the cartridge.
	return newAheadReader(d.f, fi.Offset+BlockSize, fi, d.path, nil), nil
}

func (d *fileDrive) Erase(expired bool) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if err := d.check(); err != nil {
		return err
	}
	if d.label != nil && !expired {
		return fmt.Errorf("%w: refusing to erase %s (label %q): not told that it expired", ErrLabeled, d.name, d.label.Label)
	}
	if err := d.f.Truncate(0); err != nil {
		return fmt.Errorf("tape: erase %s: %w", d.name, err)
	}
	if err := d.f.Sync(); err != nil {
		return fmt.Errorf("tape: erase %s: %w", d.name, err)
	}
	d.label, d.index = nil, nil
	return nil
}

func (d *fileDrive) Unload() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.unloaded {
		return fmt.Errorf("%w: %s", ErrUnloaded, d.name)
	}
	d.unloaded = true
	if d.w != nil {
		d.w.wb.stop()
		d.w.buf = nil
		d.w.err = fmt.Errorf("%w: %s (file %d abandoned, left torn)", ErrUnloaded, d.name, d.w.h.Number)
		d.w = nil
		d.index = nil
	}
	d.remember()
	err := d.f.Close()
	d.lib.release(d)
	if err != nil {
		return fmt.Errorf("tape: unload %s: %w", d.name, err)
	}
	return nil
}

// cutTail removes a torn tail after idx.end, keeping a copy under
// BrokenDir: copy, fsync copy and directory, truncate, fsync cartridge.
func (d *fileDrive) cutTail(idx *scanResult) error {
	st, err := d.f.Stat()
	if err != nil {
		return err
	}
	bdir := filepath.Join(d.lib.dir, BrokenDir)
	if err := os.MkdirAll(bdir, 0o750); err != nil {
		return err
	}
	name := fmt.Sprintf("%s.%d.%d.broken", d.name, idx.end, time.Now().UnixNano())
	bf, err := os.OpenFile(filepath.Join(bdir, name), os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o640)
	if err != nil {
		return err
	}
	_, err = io.Copy(bf, io.NewSectionReader(d.f, idx.end, st.Size()-idx.end))
	if err == nil {
		err = bf.Sync()
	}
	if cerr := bf.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return err
	}
	if err := syncDir(bdir); err != nil {
		return err
	}
	if err := syncDir(d.lib.dir); err != nil {
		return err
	}
	if err := d.f.Truncate(idx.end); err != nil {
		return err
	}
	if err := d.f.Sync(); err != nil {
		return err
	}
	if n := len(idx.files); n > 0 && !idx.files[n-1].Complete {
		idx.files = idx.files[:n-1]
	}
	idx.tail, idx.cuttable = nil, false
	return nil
}

func (d *fileDrive) Append(h FileHeader, cont *Continuation) (FileWriter, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if err := d.check(); err != nil {
		return nil, err
	}
	idx, err := d.scanned()
	if err != nil {
		return nil, err
	}
	if idx.tail != nil {
		if !idx.cuttable {
			return nil, idx.tail
		}
		if err := d.cutTail(idx); err != nil {
			d.index = nil
			return nil, fmt.Errorf("tape: %s: cut torn tail at offset %d: %w", d.name, idx.end, err)
		}
	}
	h, err = PrepareHeader(h, cont, len(idx.files)+1)
	if err != nil {
		return nil, err
	}
	total, base, err := cont.TotalHash()
	if err != nil {
		return nil, err
	}
	capacity := d.lib.capacity / BlockSize * BlockSize
	off := idx.end
	if off+3*BlockSize > capacity {
		return nil, fmt.Errorf("%w: %s: %d of %d bytes used, no room for another file", ErrEndOfTape, d.name, off, capacity)
	}
	var nonce [nonceLen]byte
	if _, err := io.ReadFull(d.lib.rand, nonce[:]); err != nil {
		return nil, fmt.Errorf("tape: append: nonce: %w", err)
	}
	hb, err := encodeHeader(h, nonce)
	if err != nil {
		return nil, fmt.Errorf("tape: append: %w", err)
	}
	w := &fileWriter{d: d, h: h, nonce: nonce, off: off, limit: capacity - off - 2*BlockSize,
		part: sha256.New(), total: total, base: base}
	if _, err := d.f.WriteAt(hb, off); err != nil {
		d.index = nil // a partial header may be on the cartridge: rescan
		return nil, fmt.Errorf("tape: append to %s: %w", d.name, err)
	}
	if cont == nil {
		// Part 1: the whole dump so far is this part, so one hash serves
		// as both (it is never primed: TotalHash returned an empty one).
		w.total = w.part
		w.wb = newWriteBehind(d.f, off+BlockSize, w.part)
	} else {
		w.wb = newWriteBehind(d.f, off+BlockSize, w.part, w.total)
	}
	d.w = w
	return w, nil
}

type fileWriter struct {
	d           *fileDrive
	h           FileHeader
	nonce       [nonceLen]byte
	off         int64 // header offset
	limit       int64 // payload bytes that fit
	n           int64
	part, total hash.Hash
	base        int64 // dump bytes in earlier parts
	wb          *writeBehind
	buf         []byte // the chunk being filled, or nil
	err         error  // sticky: ErrEndOfTape, a write error, or ErrUnloaded
	closed      bool
}

func (w *fileWriter) Write(p []byte) (int, error) {
	w.d.mu.Lock()
	defer w.d.mu.Unlock()
	if w.closed {
		return 0, fmt.Errorf("tape: write to closed file %d of %s", w.h.Number, w.d.name)
	}
	if w.err != nil {
		return 0, w.err
	}
	if err := w.wb.error(); err != nil {
		w.fail(fmt.Errorf("tape: write file %d of %s: %w", w.h.Number, w.d.name, err))
		return 0, w.err
	}
	q := p
	if room := w.limit - w.n; int64(len(q)) > room {
		q = q[:room]
	}
	m := len(q)
	for len(q) > 0 {
		if w.buf == nil {
			w.buf = w.wb.chunk()
		}
		k := min(len(q), cap(w.buf)-len(w.buf))
		w.buf = append(w.buf, q[:k]...)
		q = q[k:]
		if len(w.buf) == cap(w.buf) {
			w.wb.send(w.buf)
			w.buf = nil
		}
	}
	w.n += int64(m)
	if m < len(p) {
		w.err = fmt.Errorf("%w: %s is full after %d payload bytes of file %d", ErrEndOfTape, w.d.name, w.n, w.h.Number)
		return m, w.err
	}
	return m, nil
}

// flush hands the partly filled chunk to the writing goroutine, waits until
// everything is written and returns the first write error. Called with d.mu
// held; nothing is written through w.wb afterwards.
func (w *fileWriter) flush() error {
	if len(w.buf) > 0 {
		w.wb.send(w.buf)
	}
	w.buf = nil
	return w.wb.stop()
}

// fail records a write error: the file stays torn, the drive is free again
// and rescans before its next use. Called with d.mu held.
func (w *fileWriter) fail(err error) {
	w.wb.stop() // what it still writes only makes the torn file longer
	w.buf = nil
	w.err = err
	if w.d.w == w {
		w.d.w = nil
		w.d.index = nil
	}
}

func (w *fileWriter) Close(continues bool) (FileInfo, *Continuation, error) {
	d := w.d
	d.mu.Lock()
	defer d.mu.Unlock()
	if w.closed {
		return FileInfo{}, nil, fmt.Errorf("tape: file %d of %s already closed", w.h.Number, d.name)
	}
	if w.err != nil && !errors.Is(w.err, ErrEndOfTape) {
		w.closed = true
		w.fail(w.err)
		return FileInfo{}, nil, w.err
	}
	w.closed = true
	payloadEnd := w.off + BlockSize + padded(w.n)
	t := trailer{number: w.h.Number, nonce: w.nonce, continues: continues, size: w.n}
	if !continues {
		t.totalSize = w.base + w.n
	}
	// The payload (and header) are fsynced before the trailer is written,
	// so a trailer on the cartridge always vouches for durable payload.
	// The hashes are complete once the writing goroutine is done.
	err := w.flush()
	t.sha256 = hex.EncodeToString(w.part.Sum(nil))
	if !continues {
		t.totalSHA256 = hex.EncodeToString(w.total.Sum(nil))
	}
	if pad := padded(w.n) - w.n; err == nil && pad > 0 {
		_, err = d.f.WriteAt(make([]byte, pad), payloadEnd-pad)
	}
	if err == nil {
		err = d.f.Sync()
	}
	if err == nil {
		_, err = d.f.WriteAt(encodeTrailer(t), payloadEnd)
	}
	if err == nil {
		err = d.f.Sync()
	}
	if err != nil {
		w.fail(fmt.Errorf("tape: close file %d of %s: %w", w.h.Number, d.name, err))
		return FileInfo{}, nil, w.err
	}
	fi := FileInfo{FileHeader: w.h, Offset: w.off, Size: w.n, SHA256: t.sha256, Continues: continues,
		TotalSize: t.totalSize, TotalSHA256: t.totalSHA256, Complete: true}
	d.index.files = append(d.index.files, fi)
	d.index.end = payloadEnd + BlockSize
	d.w = nil
	var cont *Continuation
	if continues {
		if cont, err = NextContinuation(w.h.Part, d.label.Label, w.total, w.base+w.n); err != nil {
			return fi, nil, err
		}
	}
	return fi, cont, nil
}

var cartridgeRE = regexp.MustCompile(`^([A-Za-z]+)([0-9]+)$`)

// NewCartridges creates count blank (empty) cartridge files in dir, named
// prefix followed by a 5-digit number and Suffix, numbered after the highest
// existing number with that prefix (A00001.tape, A00002.tape, …), and
// returns their external names. It never truncates an existing file. prefix
// is 1 to 16 ASCII letters.
func NewCartridges(dir string, count int, prefix string) ([]string, error) {
	if !regexp.MustCompile(`^[A-Za-z]{1,16}$`).MatchString(prefix) {
		return nil, fmt.Errorf("tape: cartridge prefix %q: want 1 to 16 ASCII letters", prefix)
	}
	if count < 0 {
		return nil, fmt.Errorf("tape: cannot create %d cartridges", count)
	}
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("tape: new cartridges: %w", err)
	}
	high := 0
	for _, e := range ents {
		base, ok := strings.CutSuffix(e.Name(), Suffix)
		m := cartridgeRE.FindStringSubmatch(base)
		if !ok || m == nil || m[1] != prefix {
			continue
		}
		n, err := strconv.Atoi(m[2])
		if err != nil || n > 1e9 {
			return nil, fmt.Errorf("tape: new cartridges: number of %s is too large", e.Name())
		}
		high = max(high, n)
	}
	var names []string
	for i := 1; i <= count; i++ {
		name := fmt.Sprintf("%s%05d", prefix, high+i)
		f, err := os.OpenFile(filepath.Join(dir, name+Suffix), os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o640)
		if err != nil {
			return names, fmt.Errorf("tape: new cartridge: %w", err)
		}
		if err := f.Close(); err != nil {
			return names, fmt.Errorf("tape: new cartridge: %w", err)
		}
		names = append(names, name)
	}
	if err := syncDir(dir); err != nil {
		return names, fmt.Errorf("tape: new cartridges: %w", err)
	}
	return names, nil
}
