package tape

import (
	"crypto/sha256"
	"encoding"
	"errors"
	"fmt"
	"hash"
	"io"
	"time"
)

// Label is what abs writes in block 0 of a cartridge.
type Label struct {
	// Label is the internal label, e.g. "athena-7f3a-000012"; not empty.
	Label string
	// Realm is the realm the cartridge belongs to.
	Realm string
	// Origin is the ID of the journal that generated the label.
	Origin string
	// Created is when the label was generated; stored in UTC.
	Created time.Time
}

// FileHeader describes one tape file: one part of one volume dump.
type FileHeader struct {
	// Number is the file's position on its cartridge, from 1. Drive.Append
	// assigns it.
	Number int
	// Job is the ID of the job that wrote the file.
	Job string
	// Volume, Server and Partition name what was dumped; Volume is required.
	Volume, Server, Partition string
	// DumpDate is when the dump was taken.
	DumpDate time.Time
	// IncrementDate is the date the dump is incremental from; the zero time
	// means a full dump.
	IncrementDate time.Time
	// Part is the part number, from 1, of a dump that spans cartridges.
	Part int
	// PrevLabel is the internal label of the cartridge holding part Part-1;
	// empty for part 1.
	PrevLabel string
}

// FileInfo is a tape file as found on a cartridge.
type FileInfo struct {
	FileHeader
	// Offset is the byte offset of the header block; the payload starts at
	// Offset+BlockSize.
	Offset int64
	// Size is the payload's size in bytes (unpadded). For a torn file it is
	// the number of bytes between the header and the end of the cartridge.
	Size int64
	// SHA256 is the payload's SHA-256 (lowercase hex) as the trailer records
	// it; empty for a torn file.
	SHA256 string
	// Continues says the dump continues in part Part+1 on another cartridge.
	Continues bool
	// TotalSize and TotalSHA256 are the size and SHA-256 of the whole dump
	// (all parts concatenated); set only on the final part.
	TotalSize   int64
	TotalSHA256 string
	// Complete says the file has a valid trailer. A file without one was
	// torn by a crash (or abandoned by Unload); the next Append cuts it.
	Complete bool
	// Damage says what is wrong with the file, or is empty. Only List
	// verifies payload checksums; Drive.Files reports only torn files.
	Damage string
}

// Continuation carries a dump from one part to the next: what Append needs
// to write part Part on another cartridge and, on the last part, the
// SHA-256 and size of the whole dump. FileWriter.Close returns it when
// closing with continues=true. Its fields are exported so that a caller can
// persist it.
type Continuation struct {
	// Part is the number of the next part.
	Part int
	// PrevLabel is the internal label of the cartridge holding part Part-1.
	PrevLabel string
	// Size is the number of dump bytes in parts 1..Part-1.
	Size int64
	// SHA256State is the state of a crypto/sha256 hash of those bytes,
	// from its MarshalBinary.
	SHA256State []byte
}

// TotalHash returns a SHA-256 hash primed with the parts before c.Part, and
// their size. A nil c means part 1: an empty hash.
func (c *Continuation) TotalHash() (hash.Hash, int64, error) {
	h := sha256.New()
	if c == nil {
		return h, 0, nil
	}
	if c.Part < 2 || c.Size < 0 {
		return nil, 0, fmt.Errorf("tape: continuation to part %d after %d bytes is impossible", c.Part, c.Size)
	}
	if err := h.(encoding.BinaryUnmarshaler).UnmarshalBinary(c.SHA256State); err != nil {
		return nil, 0, fmt.Errorf("tape: continuation: bad SHA-256 state: %w", err)
	}
	return h, c.Size, nil
}

// NextContinuation returns the continuation after a part of a dump written
// on the cartridge labelled label, given the total hash and size so far.
func NextContinuation(part int, label string, total hash.Hash, size int64) (*Continuation, error) {
	state, err := total.(encoding.BinaryMarshaler).MarshalBinary()
	if err != nil {
		return nil, err
	}
	return &Continuation{Part: part + 1, PrevLabel: label, Size: size, SHA256State: state}, nil
}

// PrepareHeader checks h against cont and fills in Part and PrevLabel: with
// cont nil, h is part 1 (h.Part 0 or 1, no PrevLabel); otherwise h.Part and
// h.PrevLabel must be zero or equal cont's. number is the file number the
// drive assigns (h.Number must be 0 or equal). For implementations of Drive.
func PrepareHeader(h FileHeader, cont *Continuation, number int) (FileHeader, error) {
	if h.Number != 0 && h.Number != number {
		return h, fmt.Errorf("tape: append: header says file %d, the next file on this cartridge is %d", h.Number, number)
	}
	h.Number = number
	if cont == nil {
		if h.Part > 1 || h.PrevLabel != "" {
			return h, fmt.Errorf("tape: append: part %d (previous %q) needs a Continuation", h.Part, h.PrevLabel)
		}
		h.Part = 1
	} else {
		if (h.Part != 0 && h.Part != cont.Part) || (h.PrevLabel != "" && h.PrevLabel != cont.PrevLabel) {
			return h, fmt.Errorf("tape: append: header says part %d after %q, continuation says part %d after %q",
				h.Part, h.PrevLabel, cont.Part, cont.PrevLabel)
		}
		h.Part, h.PrevLabel = cont.Part, cont.PrevLabel
	}
	if err := h.validate(); err != nil {
		return h, fmt.Errorf("tape: append: %w", err)
	}
	return h, nil
}

// ValidateLabel says whether l can be written (length limits, UTF-8, no NUL,
// a non-empty Label). For implementations of Drive.
func ValidateLabel(l Label) error {
	if err := l.validate(); err != nil {
		return fmt.Errorf("tape: label: %w", err)
	}
	return nil
}

var (
	// ErrBlank is returned by ReadLabel and Drive.Label for a blank
	// (empty) cartridge, and by Drive.Append, Files and Open on one.
	ErrBlank = errors.New("tape: blank cartridge (no label)")
	// ErrLabeled is returned by Drive.WriteLabel when the cartridge already
	// has a label, and by Drive.Erase when not told the cartridge expired.
	// Nothing is written.
	ErrLabeled = errors.New("tape: cartridge is labeled")
	// ErrEndOfTape is returned by FileWriter.Write when the cartridge is
	// full (after writing what fits), and by Drive.Append when not even an
	// empty file fits. Close the part with continues=true and go on on
	// another cartridge.
	ErrEndOfTape = errors.New("tape: end of tape")
	// ErrCorrupt is wrapped by every *CorruptError: the cartridge is not in
	// the documented format at some offset.
	ErrCorrupt = errors.New("tape: corrupt cartridge")
	// ErrNoSuchFile is returned by Open and OpenFile for a file number that
	// is not a complete file on the cartridge.
	ErrNoSuchFile = errors.New("tape: no such tape file")
	// ErrNoSuchCartridge is returned by Library.Load for an unknown name.
	ErrNoSuchCartridge = errors.New("tape: no such cartridge")
	// ErrInUse is returned by Library.Load when the cartridge is loaded in
	// a drive, or the drive holds a cartridge.
	ErrInUse = errors.New("tape: in use")
	// ErrBusy is returned by Drive methods other than Unload while a
	// FileWriter of the drive is open.
	ErrBusy = errors.New("tape: drive busy writing a file")
	// ErrUnloaded is returned by every method of a Drive (and of its open
	// FileWriter) after Unload.
	ErrUnloaded = errors.New("tape: cartridge unloaded")
)

// CorruptError says where a cartridge departs from the format.
type CorruptError struct {
	// Path is the cartridge file (or its name in a library).
	Path string
	// Offset is the byte offset of the damaged record.
	Offset int64
	// File is the tape file number concerned, or 0.
	File int
	// Reason says what is wrong.
	Reason string
}

func (e *CorruptError) Error() string {
	s := "tape: corrupt cartridge"
	if e.Path != "" {
		s += " " + e.Path
	}
	s += fmt.Sprintf(" at offset %d", e.Offset)
	if e.File > 0 {
		s += fmt.Sprintf(" (file %d)", e.File)
	}
	return s + ": " + e.Reason
}

// Unwrap makes errors.Is(err, ErrCorrupt) true.
func (e *CorruptError) Unwrap() error { return ErrCorrupt }

// Library is a set of cartridges and drives. Implementations must be safe
// for concurrent use; each Drive is used by one goroutine at a time.
type Library interface {
	// Cartridges lists the external names of the cartridges, sorted.
	Cartridges() ([]string, error)
	// Drives is the number of drives, numbered 0..Drives()-1.
	Drives() int
	// Capacity is the size of a cartridge in bytes, all records included.
	Capacity() int64
	// Load puts cartridge name into drive. It fails with ErrInUse if the
	// cartridge is in another drive or the drive is not empty, with
	// ErrNoSuchCartridge for an unknown name, and with a *CorruptError if
	// the cartridge is neither blank nor correctly labeled.
	Load(drive int, name string) (Drive, error)
}

// Drive is a loaded cartridge: what a drive can do to it.
type Drive interface {
	// Name is the cartridge's external name.
	Name() string
	// Label reads the label; ErrBlank if there is none.
	Label() (Label, error)
	// WriteLabel labels a blank cartridge, durably. On a labeled one it
	// returns ErrLabeled and writes nothing: a label is never overwritten
	// at this level.
	WriteLabel(l Label) error
	// Append starts a new tape file after the last complete one, cutting
	// a torn file first (see doc.go). cont is nil for part 1 of a dump and
	// the value returned by the previous part's Close otherwise. Returns
	// ErrBlank on a blank cartridge, ErrEndOfTape if the cartridge has no
	// room for a file, a *CorruptError if the cartridge is damaged in a
	// way that cutting a torn tail does not explain.
	Append(h FileHeader, cont *Continuation) (FileWriter, error)
	// Files lists the tape files, a torn last one included (Complete
	// false). It checks record CRCs but not payload checksums.
	Files() ([]FileInfo, error)
	// Open reads the payload of complete file n. Read returns an error
	// (a *CorruptError) instead of io.EOF, and so does Close, if the
	// payload's size or SHA-256 differ from the trailer's. The reader is
	// valid until the next Append, Erase or Unload.
	Open(n int) (io.ReadCloser, error)
	// Erase makes the cartridge blank. It refuses with ErrLabeled, writing
	// nothing, unless expired is true: the caller asserts that retention
	// has released every dump on the cartridge.
	Erase(expired bool) error
	// Unload releases the cartridge and the drive. An open FileWriter is
	// abandoned: its file stays torn, as after a crash.
	Unload() error
}

// FileWriter writes the payload of one tape file.
type FileWriter interface {
	// Write appends payload bytes. When the cartridge would overflow, it
	// writes what fits and returns ErrEndOfTape; every later Write returns
	// ErrEndOfTape too.
	Write(p []byte) (int, error)
	// Close writes the trailer and makes the file durable before it
	// returns; continues says the dump goes on in another part. With
	// continues, the Continuation for the next part is returned; without,
	// it is nil and the trailer records the whole dump's size and SHA-256.
	// After a write error, Close returns the error and the file stays torn.
	Close(continues bool) (FileInfo, *Continuation, error)
}
