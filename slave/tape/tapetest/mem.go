package tapetest

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"hash"
	"io"
	"sort"
	"sync"

	"github.com/abs-backup/abs/slave/tape"
)

// MemLibrary is an in-memory tape.Library.
//
// FOR TESTS ONLY. It exists to show that the conformance suite tests the
// contract and not the file format, and to give other packages' tests a fast
// library. It keeps no bytes in the cartridge format, nothing survives the
// process, and nothing is durable: never use it to hold a dump.
type MemLibrary struct {
	media    *memMedia
	drives   int
	capacity int64
	slots    []*memDrive
	loaded   map[string]int
}

// memMedia is the cartridges, shared by a MemLibrary and its reopened
// handles. Its mutex guards every field of every cartridge, drive and
// writer of those libraries (a test double need not be fast).
type memMedia struct {
	mu    sync.Mutex
	carts map[string]*memCart
}

type memCart struct {
	label *tape.Label
	files []*memFile // the last one may be torn (info.Complete false)
}

type memFile struct {
	info    tape.FileInfo
	payload []byte
}

// NewMemLibrary returns a library with blanks blank cartridges named
// M00001, M00002, …
func NewMemLibrary(drives int, capacity int64, blanks int) *MemLibrary {
	m := &memMedia{carts: map[string]*memCart{}}
	for i := 1; i <= blanks; i++ {
		m.carts[fmt.Sprintf("M%05d", i)] = &memCart{}
	}
	return newMem(m, drives, capacity)
}

func newMem(m *memMedia, drives int, capacity int64) *MemLibrary {
	return &MemLibrary{media: m, drives: drives, capacity: capacity, slots: make([]*memDrive, drives), loaded: map[string]int{}}
}

// Reopen returns a new library on the same cartridges, as a restarted
// process would see them. Unload l's drives first.
func (l *MemLibrary) Reopen() *MemLibrary { return newMem(l.media, l.drives, l.capacity) }

// Tear makes the last file of cartridge name torn, as a crash while writing
// it would: its trailer and the second half of its payload are lost.
func (l *MemLibrary) Tear(name string) error {
	l.media.mu.Lock()
	defer l.media.mu.Unlock()
	c, ok := l.media.carts[name]
	if !ok || len(c.files) == 0 {
		return fmt.Errorf("memtape: tear %s: no such cartridge or no file", name)
	}
	f := c.files[len(c.files)-1]
	f.payload = f.payload[:len(f.payload)/2]
	f.info = tornInfo(f.info.FileHeader, f.info.Offset, int64(len(f.payload)))
	return nil
}

func tornInfo(h tape.FileHeader, off, size int64) tape.FileInfo {
	return tape.FileInfo{FileHeader: h, Offset: off, Size: size, Damage: "no trailer: torn by a crash or abandoned"}
}

func (l *MemLibrary) Cartridges() ([]string, error) {
	l.media.mu.Lock()
	defer l.media.mu.Unlock()
	var names []string
	for n := range l.media.carts {
		names = append(names, n)
	}
	sort.Strings(names)
	return names, nil
}

func (l *MemLibrary) Drives() int     { return l.drives }
func (l *MemLibrary) Capacity() int64 { return l.capacity }

func (l *MemLibrary) Load(drive int, name string) (tape.Drive, error) {
	l.media.mu.Lock()
	defer l.media.mu.Unlock()
	if drive < 0 || drive >= l.drives {
		return nil, fmt.Errorf("memtape: no drive %d", drive)
	}
	c, ok := l.media.carts[name]
	if !ok {
		return nil, fmt.Errorf("%w: %q", tape.ErrNoSuchCartridge, name)
	}
	if l.slots[drive] != nil {
		return nil, fmt.Errorf("%w: drive %d is full", tape.ErrInUse, drive)
	}
	if d, ok := l.loaded[name]; ok {
		return nil, fmt.Errorf("%w: %s is in drive %d", tape.ErrInUse, name, d)
	}
	d := &memDrive{lib: l, slot: drive, name: name, c: c}
	l.slots[drive], l.loaded[name] = d, drive
	return d, nil
}

type memDrive struct {
	lib      *MemLibrary
	slot     int
	name     string
	c        *memCart
	w        *memWriter
	unloaded bool
}

func (d *memDrive) lock() func() { d.lib.media.mu.Lock(); return d.lib.media.mu.Unlock }

func (d *memDrive) check() error {
	if d.unloaded {
		return tape.ErrUnloaded
	}
	if d.w != nil {
		return tape.ErrBusy
	}
	return nil
}

func (d *memDrive) Name() string { return d.name }

func (d *memDrive) Label() (tape.Label, error) {
	defer d.lock()()
	if d.unloaded {
		return tape.Label{}, tape.ErrUnloaded
	}
	if d.c.label == nil {
		return tape.Label{}, tape.ErrBlank
	}
	return *d.c.label, nil
}

func (d *memDrive) WriteLabel(l tape.Label) error {
	defer d.lock()()
	if err := d.check(); err != nil {
		return err
	}
	if d.c.label != nil {
		return tape.ErrLabeled
	}
	if err := tape.ValidateLabel(l); err != nil {
		return err
	}
	l.Created = l.Created.UTC()
	d.c.label = &l
	return nil
}

// used is the bytes the cartridge would take in the file format.
func (d *memDrive) used() int64 {
	n := int64(tape.BlockSize)
	for _, f := range d.c.files {
		n += 2*tape.BlockSize + (int64(len(f.payload))+tape.BlockSize-1)/tape.BlockSize*tape.BlockSize
	}
	return n
}

func (d *memDrive) Append(h tape.FileHeader, cont *tape.Continuation) (tape.FileWriter, error) {
	defer d.lock()()
	if err := d.check(); err != nil {
		return nil, err
	}
	if d.c.label == nil {
		return nil, tape.ErrBlank
	}
	if n := len(d.c.files); n > 0 && !d.c.files[n-1].info.Complete {
		d.c.files = d.c.files[:n-1] // cut the torn file
	}
	h, err := tape.PrepareHeader(h, cont, len(d.c.files)+1)
	if err != nil {
		return nil, err
	}
	total, base, err := cont.TotalHash()
	if err != nil {
		return nil, err
	}
	capacity := d.lib.capacity / tape.BlockSize * tape.BlockSize
	off := d.used()
	if off+3*tape.BlockSize > capacity {
		return nil, tape.ErrEndOfTape
	}
	h.DumpDate, h.IncrementDate = h.DumpDate.UTC(), h.IncrementDate.UTC()
	f := &memFile{info: tornInfo(h, off, 0)}
	d.c.files = append(d.c.files, f)
	w := &memWriter{d: d, f: f, limit: capacity - off - 2*tape.BlockSize, part: sha256.New(), total: total, base: base}
	d.w = w
	return w, nil
}

func (d *memDrive) Files() ([]tape.FileInfo, error) {
	defer d.lock()()
	if err := d.check(); err != nil {
		return nil, err
	}
	if d.c.label == nil {
		return nil, tape.ErrBlank
	}
	var out []tape.FileInfo
	for _, f := range d.c.files {
		out = append(out, f.info)
	}
	return out, nil
}

func (d *memDrive) Open(n int) (io.ReadCloser, error) {
	defer d.lock()()
	if err := d.check(); err != nil {
		return nil, err
	}
	if d.c.label == nil {
		return nil, tape.ErrBlank
	}
	if n < 1 || n > len(d.c.files) || !d.c.files[n-1].info.Complete {
		return nil, fmt.Errorf("%w: %d", tape.ErrNoSuchFile, n)
	}
	f := d.c.files[n-1]
	return tape.NewPayloadReader(bytes.NewReader(f.payload), f.info, d.name, nil), nil
}

func (d *memDrive) Erase(expired bool) error {
	defer d.lock()()
	if err := d.check(); err != nil {
		return err
	}
	if d.c.label != nil && !expired {
		return tape.ErrLabeled
	}
	d.c.label, d.c.files = nil, nil
	return nil
}

func (d *memDrive) Unload() error {
	defer d.lock()()
	if d.unloaded {
		return tape.ErrUnloaded
	}
	d.unloaded = true
	if d.w != nil {
		d.w.err = tape.ErrUnloaded
		d.w = nil
	}
	d.lib.slots[d.slot] = nil
	delete(d.lib.loaded, d.name)
	return nil
}

type memWriter struct {
	d           *memDrive
	f           *memFile
	limit       int64
	part, total hash.Hash
	base        int64
	err         error
	closed      bool
}

func (w *memWriter) Write(p []byte) (int, error) {
	defer w.d.lock()()
	if w.closed {
		return 0, fmt.Errorf("memtape: write after close")
	}
	if w.err != nil {
		return 0, w.err
	}
	q := p
	if room := w.limit - int64(len(w.f.payload)); int64(len(q)) > room {
		q = q[:room]
		w.err = tape.ErrEndOfTape
	}
	w.f.payload = append(w.f.payload, q...)
	w.f.info.Size = int64(len(w.f.payload))
	w.part.Write(q)
	w.total.Write(q)
	return len(q), w.err
}

func (w *memWriter) Close(continues bool) (tape.FileInfo, *tape.Continuation, error) {
	defer w.d.lock()()
	if w.closed {
		return tape.FileInfo{}, nil, fmt.Errorf("memtape: already closed")
	}
	w.closed = true
	if w.err != nil && w.err != tape.ErrEndOfTape {
		return tape.FileInfo{}, nil, w.err
	}
	fi := &w.f.info
	fi.Size, fi.SHA256 = int64(len(w.f.payload)), hex.EncodeToString(w.part.Sum(nil))
	fi.Continues, fi.Complete, fi.Damage = continues, true, ""
	size := w.base + fi.Size
	if !continues {
		fi.TotalSize, fi.TotalSHA256 = size, hex.EncodeToString(w.total.Sum(nil))
	}
	w.d.w = nil
	var cont *tape.Continuation
	if continues {
		var err error
		if cont, err = tape.NextContinuation(fi.Part, w.d.c.label.Label, w.total, size); err != nil {
			return *fi, nil, err
		}
	}
	return *fi, cont, nil
}
