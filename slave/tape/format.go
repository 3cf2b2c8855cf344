package tape

import (
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"hash/crc32"
	"time"
	"unicode/utf8"
)

// The byte layout below is documented in doc.go; keep the two in step.

// BlockSize is the unit of every record on a cartridge (tar's block size).
const BlockSize = 512

// FormatVersion is the cartridge format version written in the label.
const FormatVersion = 1

const (
	labelMagic   = "ABSLABEL"
	headerMagic  = "ABSFILE1"
	trailerMagic = "ABSTRAIL"

	crcOff = BlockSize - 4 // every record ends with its CRC-32C

	nonceLen = 16
	timeLen  = 32
)

// Field widths, in bytes. Strings are UTF-8 without NUL, padded with NULs.
const (
	MaxLabelLen     = 64
	MaxRealmLen     = 64
	MaxOriginLen    = 64
	MaxJobLen       = 48
	MaxVolumeLen    = 112
	MaxServerLen    = 64
	MaxPartitionLen = 112
)

var crcTable = crc32.MakeTable(crc32.Castagnoli)

func blockCRC(b []byte) uint32 { return crc32.Checksum(b[:crcOff], crcTable) }

func sealBlock(b []byte) { binary.BigEndian.PutUint32(b[crcOff:], blockCRC(b)) }

// padded returns n rounded up to a whole number of blocks.
func padded(n int64) int64 { return (n + BlockSize - 1) / BlockSize * BlockSize }

// field is one fixed-width slot of a record.
type field struct{ off, len int }

var (
	// label record
	lVersion = field{8, 4}
	lLabel   = field{12, MaxLabelLen}
	lRealm   = field{76, MaxRealmLen}
	lOrigin  = field{140, MaxOriginLen}
	lCreated = field{204, timeLen}
	lEnd     = 236

	// header record
	hNumber    = field{8, 4}
	hPart      = field{12, 4}
	hNonce     = field{16, nonceLen}
	hJob       = field{32, MaxJobLen}
	hVolume    = field{80, MaxVolumeLen}
	hServer    = field{192, MaxServerLen}
	hPartition = field{256, MaxPartitionLen}
	hDumpDate  = field{368, timeLen}
	hIncrDate  = field{400, timeLen}
	hPrevLabel = field{432, MaxLabelLen}
	hEnd       = 496

	// trailer record
	tNumber      = field{8, 4}
	tFlags       = field{12, 4}
	tNonce       = field{16, nonceLen}
	tSize        = field{32, 8}
	tTotalSize   = field{40, 8}
	tSHA256      = field{48, 64}
	tTotalSHA256 = field{112, 64}
	tEnd         = 176

	flagContinues uint32 = 1
)

func (f field) of(b []byte) []byte { return b[f.off : f.off+f.len] }

// putString stores s NUL-padded; the caller has validated it.
func putString(b []byte, f field, s string) { copy(f.of(b), s) }

func checkString(what, s string, max int, required bool) error {
	switch {
	case s == "" && required:
		return fmt.Errorf("%s is empty", what)
	case len(s) > max:
		return fmt.Errorf("%s %q is %d bytes long, at most %d fit", what, s, len(s), max)
	case !utf8.ValidString(s):
		return fmt.Errorf("%s %q is not valid UTF-8", what, s)
	case bytes.IndexByte([]byte(s), 0) >= 0:
		return fmt.Errorf("%s %q contains a NUL byte", what, s)
	}
	return nil
}

func getString(b []byte, f field, what string) (string, error) {
	raw := f.of(b)
	n := bytes.IndexByte(raw, 0)
	if n < 0 {
		n = len(raw)
	}
	for _, c := range raw[n:] {
		if c != 0 {
			return "", fmt.Errorf("%s: non-NUL byte after the terminating NUL", what)
		}
	}
	if !utf8.Valid(raw[:n]) {
		return "", fmt.Errorf("%s: not valid UTF-8", what)
	}
	return string(raw[:n]), nil
}

func checkTime(what string, t time.Time) error {
	if t.IsZero() {
		return nil
	}
	if y := t.UTC().Year(); y < 1 || y > 9999 {
		return fmt.Errorf("%s %v is outside years 1-9999", what, t)
	}
	return nil
}

// putTime stores t as RFC 3339 UTC with nanoseconds; the zero time as NULs.
func putTime(b []byte, f field, t time.Time) {
	if !t.IsZero() {
		copy(f.of(b), t.UTC().Format(time.RFC3339Nano))
	}
}

func getTime(b []byte, f field, what string) (time.Time, error) {
	s, err := getString(b, f, what)
	if err != nil || s == "" {
		return time.Time{}, err
	}
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		return time.Time{}, fmt.Errorf("%s: %w", what, err)
	}
	if _, off := t.Zone(); off != 0 || t.IsZero() {
		return time.Time{}, fmt.Errorf("%s: %q is not a non-zero UTC time", what, s)
	}
	return t.UTC(), nil
}

// checkRecord verifies magic, CRC and that the reserved bytes from end to the
// CRC are zero.
func checkRecord(b []byte, magic string, end int) error {
	if len(b) != BlockSize {
		return fmt.Errorf("record is %d bytes, not %d", len(b), BlockSize)
	}
	if string(b[:8]) != magic {
		return fmt.Errorf("magic is %q, not %q", printable(b[:8]), magic)
	}
	if got, want := binary.BigEndian.Uint32(b[crcOff:]), blockCRC(b); got != want {
		return fmt.Errorf("CRC-32C is %08x, record says %08x", want, got)
	}
	for _, c := range b[end:crcOff] {
		if c != 0 {
			return fmt.Errorf("reserved bytes %d-%d are not zero", end, crcOff-1)
		}
	}
	return nil
}

func printable(b []byte) string {
	out := make([]byte, len(b))
	for i, c := range b {
		if c < 0x20 || c > 0x7e {
			c = '.'
		}
		out[i] = c
	}
	return string(out)
}

func (l Label) validate() error {
	if err := checkString("label", l.Label, MaxLabelLen, true); err != nil {
		return err
	}
	if err := checkString("realm", l.Realm, MaxRealmLen, false); err != nil {
		return err
	}
	if err := checkString("origin", l.Origin, MaxOriginLen, false); err != nil {
		return err
	}
	return checkTime("created", l.Created)
}

func encodeLabel(l Label) ([]byte, error) {
	if err := l.validate(); err != nil {
		return nil, err
	}
	b := make([]byte, BlockSize)
	copy(b, labelMagic)
	binary.BigEndian.PutUint32(lVersion.of(b), FormatVersion)
	putString(b, lLabel, l.Label)
	putString(b, lRealm, l.Realm)
	putString(b, lOrigin, l.Origin)
	putTime(b, lCreated, l.Created)
	sealBlock(b)
	return b, nil
}

func decodeLabel(b []byte) (Label, error) {
	if err := checkRecord(b, labelMagic, lEnd); err != nil {
		return Label{}, err
	}
	if v := binary.BigEndian.Uint32(lVersion.of(b)); v != FormatVersion {
		return Label{}, fmt.Errorf("format version %d, this program reads %d", v, FormatVersion)
	}
	var l Label
	var err error
	if l.Label, err = getString(b, lLabel, "label"); err != nil {
		return Label{}, err
	}
	if l.Label == "" {
		return Label{}, fmt.Errorf("label is empty")
	}
	if l.Realm, err = getString(b, lRealm, "realm"); err != nil {
		return Label{}, err
	}
	if l.Origin, err = getString(b, lOrigin, "origin"); err != nil {
		return Label{}, err
	}
	if l.Created, err = getTime(b, lCreated, "created"); err != nil {
		return Label{}, err
	}
	return l, nil
}

func (h FileHeader) validate() error {
	for _, s := range []struct {
		what, v  string
		max      int
		required bool
	}{
		{"job", h.Job, MaxJobLen, false},
		{"volume", h.Volume, MaxVolumeLen, true},
		{"server", h.Server, MaxServerLen, false},
		{"partition", h.Partition, MaxPartitionLen, false},
		{"previous part's label", h.PrevLabel, MaxLabelLen, h.Part > 1},
	} {
		if err := checkString(s.what, s.v, s.max, s.required); err != nil {
			return err
		}
	}
	if h.Part == 1 && h.PrevLabel != "" {
		return fmt.Errorf("part 1 has a previous part's label %q", h.PrevLabel)
	}
	if h.Number < 1 || h.Part < 1 || int64(h.Number) > 1<<31 || int64(h.Part) > 1<<31 {
		return fmt.Errorf("file number %d and part %d must be in 1..2^31", h.Number, h.Part)
	}
	if err := checkTime("dump date", h.DumpDate); err != nil {
		return err
	}
	return checkTime("increment date", h.IncrementDate)
}

func encodeHeader(h FileHeader, nonce [nonceLen]byte) ([]byte, error) {
	if err := h.validate(); err != nil {
		return nil, err
	}
	b := make([]byte, BlockSize)
	copy(b, headerMagic)
	binary.BigEndian.PutUint32(hNumber.of(b), uint32(h.Number))
	binary.BigEndian.PutUint32(hPart.of(b), uint32(h.Part))
	copy(hNonce.of(b), nonce[:])
	putString(b, hJob, h.Job)
	putString(b, hVolume, h.Volume)
	putString(b, hServer, h.Server)
	putString(b, hPartition, h.Partition)
	putTime(b, hDumpDate, h.DumpDate)
	putTime(b, hIncrDate, h.IncrementDate)
	putString(b, hPrevLabel, h.PrevLabel)
	sealBlock(b)
	return b, nil
}

func decodeHeader(b []byte) (FileHeader, [nonceLen]byte, error) {
	var h FileHeader
	var nonce [nonceLen]byte
	if err := checkRecord(b, headerMagic, hEnd); err != nil {
		return h, nonce, err
	}
	h.Number = int(binary.BigEndian.Uint32(hNumber.of(b)))
	h.Part = int(binary.BigEndian.Uint32(hPart.of(b)))
	copy(nonce[:], hNonce.of(b))
	var err error
	for _, s := range []struct {
		dst  *string
		f    field
		what string
	}{
		{&h.Job, hJob, "job"}, {&h.Volume, hVolume, "volume"}, {&h.Server, hServer, "server"},
		{&h.Partition, hPartition, "partition"}, {&h.PrevLabel, hPrevLabel, "previous label"},
	} {
		if *s.dst, err = getString(b, s.f, s.what); err != nil {
			return h, nonce, err
		}
	}
	if h.DumpDate, err = getTime(b, hDumpDate, "dump date"); err != nil {
		return h, nonce, err
	}
	if h.IncrementDate, err = getTime(b, hIncrDate, "increment date"); err != nil {
		return h, nonce, err
	}
	if err := h.validate(); err != nil {
		return h, nonce, err
	}
	return h, nonce, nil
}

// trailer is the decoded trailer record.
type trailer struct {
	number      int
	nonce       [nonceLen]byte
	continues   bool
	size        int64
	sha256      string
	totalSize   int64
	totalSHA256 string
}

func encodeTrailer(t trailer) []byte {
	b := make([]byte, BlockSize)
	copy(b, trailerMagic)
	binary.BigEndian.PutUint32(tNumber.of(b), uint32(t.number))
	if t.continues {
		binary.BigEndian.PutUint32(tFlags.of(b), flagContinues)
	}
	copy(tNonce.of(b), t.nonce[:])
	binary.BigEndian.PutUint64(tSize.of(b), uint64(t.size))
	binary.BigEndian.PutUint64(tTotalSize.of(b), uint64(t.totalSize))
	copy(tSHA256.of(b), t.sha256)
	copy(tTotalSHA256.of(b), t.totalSHA256)
	sealBlock(b)
	return b
}

func decodeTrailer(b []byte) (trailer, error) {
	var t trailer
	if err := checkRecord(b, trailerMagic, tEnd); err != nil {
		return t, err
	}
	t.number = int(binary.BigEndian.Uint32(tNumber.of(b)))
	flags := binary.BigEndian.Uint32(tFlags.of(b))
	if flags&^flagContinues != 0 {
		return t, fmt.Errorf("unknown flags %#x", flags)
	}
	t.continues = flags&flagContinues != 0
	copy(t.nonce[:], tNonce.of(b))
	size := binary.BigEndian.Uint64(tSize.of(b))
	total := binary.BigEndian.Uint64(tTotalSize.of(b))
	if size > 1<<62 || total > 1<<62 {
		return t, fmt.Errorf("absurd size %d (total %d)", size, total)
	}
	t.size, t.totalSize = int64(size), int64(total)
	var err error
	if t.sha256, err = getHex(b, tSHA256, "SHA-256", false); err != nil {
		return t, err
	}
	if t.totalSHA256, err = getHex(b, tTotalSHA256, "total SHA-256", t.continues); err != nil {
		return t, err
	}
	if t.continues && t.totalSize != 0 {
		return t, fmt.Errorf("a continued part has a total size %d", t.totalSize)
	}
	if !t.continues && t.totalSize < t.size {
		return t, fmt.Errorf("total size %d is smaller than the part's %d", t.totalSize, t.size)
	}
	return t, nil
}

// getHex reads a SHA-256 as 64 lowercase hex digits, or all NULs when empty
// is true.
func getHex(b []byte, f field, what string, empty bool) (string, error) {
	raw := f.of(b)
	if empty {
		if !bytes.Equal(raw, make([]byte, len(raw))) {
			return "", fmt.Errorf("%s of a continued part is not empty", what)
		}
		return "", nil
	}
	s := string(raw)
	if _, err := hex.DecodeString(s); err != nil || s != hexLower(s) {
		return "", fmt.Errorf("%s %q is not 64 lowercase hex digits", what, printable(raw))
	}
	return s, nil
}

func hexLower(s string) string { return string(bytes.ToLower([]byte(s))) }
