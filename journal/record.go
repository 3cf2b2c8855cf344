package journal

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
)

// RecordType says what a record's payload is.
type RecordType uint8

const (
	// TypeIdentity marks the first record of every journal (index 1): its
	// payload is the msgpack encoding of an Identity.
	TypeIdentity RecordType = 1
	// TypeEvents marks every other record: its payload is opaque to this
	// package (msgpack-encoded events, produced and consumed by the caller).
	TypeEvents RecordType = 2
)

func (t RecordType) String() string {
	switch t {
	case TypeIdentity:
		return "identity"
	case TypeEvents:
		return "events"
	}
	return fmt.Sprintf("RecordType(%d)", uint8(t))
}

// Format constants. See the package documentation for the byte layout.
const (
	// FormatVersion is the record format version written by this package and
	// the only one it reads.
	FormatVersion = 1
	// HeaderSize is the number of bytes before the payload.
	HeaderSize = 36
	// Overhead is the number of bytes a record adds to its payload (header
	// and trailing CRC).
	Overhead = HeaderSize + 4
	// MaxPayload is the largest payload a record may carry (64 MiB). Submit
	// refuses larger entries and DecodeRecord rejects larger length fields,
	// which also keeps a corrupt length from asking for gigabytes.
	MaxPayload = 64 << 20
)

const (
	magic0 = 'A'
	magic1 = 'J'

	offVersion = 2
	offType    = 3
	offIndex   = 4
	offEpoch   = 12
	offTime    = 20
	offPrev    = 28
	offLength  = 32
)

// castagnoli is the CRC32C table; hash/crc32 uses the SSE4.2/ARMv8 CRC
// instructions for it, which is what makes verifying a whole journal cheap.
var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// ErrBadRecord is wrapped by every error DecodeRecord returns: the bytes are
// not one well-formed, self-consistent record.
var ErrBadRecord = errors.New("journal: bad record")

// Record is one decoded journal record, i.e. one WAL entry.
type Record struct {
	// Index is the WAL index the record claims to sit at (1-based).
	Index uint64
	// Type says what Payload holds.
	Type RecordType
	// Epoch is the writer epoch (master incarnation); 0 in the identity record.
	Epoch uint64
	// Time is the appender's clock in unix nanoseconds.
	Time int64
	// Payload is the record body. Records handed out by DecodeRecord and by
	// Reader.Scan alias the buffer they were decoded from (see there).
	Payload []byte
	// Prev is the CRC of the record before this one (0 for index 1): the chain.
	Prev uint32
	// CRC is the record's own CRC32C. EncodeRecord ignores this field and
	// computes it.
	CRC uint32
}

// EncodeRecord appends the encoding of r to dst and returns the extended
// slice. r.CRC is ignored: the CRC is computed over the bytes written. It
// panics if the payload is longer than MaxPayload (callers validate first).
func EncodeRecord(dst []byte, r Record) []byte {
	if len(r.Payload) > MaxPayload {
		panic(fmt.Sprintf("journal: EncodeRecord: payload of %d bytes exceeds MaxPayload", len(r.Payload)))
	}
	start := len(dst)
	var h [HeaderSize]byte
	h[0], h[1] = magic0, magic1
	h[offVersion] = FormatVersion
	h[offType] = byte(r.Type)
	binary.BigEndian.PutUint64(h[offIndex:], r.Index)
	binary.BigEndian.PutUint64(h[offEpoch:], r.Epoch)
	binary.BigEndian.PutUint64(h[offTime:], uint64(r.Time))
	binary.BigEndian.PutUint32(h[offPrev:], r.Prev)
	binary.BigEndian.PutUint32(h[offLength:], uint32(len(r.Payload)))
	dst = append(dst, h[:]...)
	dst = append(dst, r.Payload...)
	crc := crc32.Checksum(dst[start:], castagnoli)
	return binary.BigEndian.AppendUint32(dst, crc)
}

// DecodeRecord decodes b, which must hold exactly one record. It checks the
// magic, the version, the type, that the length field matches len(b), and the
// record's own CRC; it does not check the chain (Prev) or the index, which
// depend on the neighbours. The returned Payload aliases b. Errors wrap
// ErrBadRecord.
func DecodeRecord(b []byte) (Record, error) {
	r, why := decodeRecord(b)
	if why != badNone {
		return Record{}, fmt.Errorf("%w: %s", ErrBadRecord, why.describe(b))
	}
	return r, nil
}

// badReason says why bytes are not a record, without allocating: the open
// and scan paths try to decode at many offsets while classifying damage.
type badReason uint8

const (
	badNone badReason = iota
	badShort
	badMagic
	badVersion
	badType
	badLength
	badCRC
)

func (w badReason) describe(b []byte) string {
	switch w {
	case badShort:
		return fmt.Sprintf("%d bytes is shorter than the %d-byte minimum", len(b), Overhead)
	case badMagic:
		return fmt.Sprintf("bad magic %q", b[:2])
	case badVersion:
		return fmt.Sprintf("unsupported format version %d", b[offVersion])
	case badType:
		return fmt.Sprintf("unknown record type %d", b[offType])
	case badLength:
		return fmt.Sprintf("length field %d does not match the %d payload bytes present",
			binary.BigEndian.Uint32(b[offLength:]), len(b)-Overhead)
	case badCRC:
		n := len(b) - 4
		return fmt.Sprintf("crc mismatch: stored %08x, computed %08x",
			binary.BigEndian.Uint32(b[n:]), crc32.Checksum(b[:n], castagnoli))
	}
	return "ok"
}

func decodeRecord(b []byte) (Record, badReason) {
	if len(b) < Overhead {
		return Record{}, badShort
	}
	if b[0] != magic0 || b[1] != magic1 {
		return Record{}, badMagic
	}
	if b[offVersion] != FormatVersion {
		return Record{}, badVersion
	}
	t := RecordType(b[offType])
	if t != TypeIdentity && t != TypeEvents {
		return Record{}, badType
	}
	n := binary.BigEndian.Uint32(b[offLength:])
	if n > MaxPayload || uint64(n) != uint64(len(b)-Overhead) {
		return Record{}, badLength
	}
	end := HeaderSize + int(n)
	crc := binary.BigEndian.Uint32(b[end:])
	if crc32.Checksum(b[:end], castagnoli) != crc {
		return Record{}, badCRC
	}
	return Record{
		Index:   binary.BigEndian.Uint64(b[offIndex:]),
		Type:    t,
		Epoch:   binary.BigEndian.Uint64(b[offEpoch:]),
		Time:    int64(binary.BigEndian.Uint64(b[offTime:])),
		Payload: b[HeaderSize:end:end],
		Prev:    binary.BigEndian.Uint32(b[offPrev:]),
		CRC:     crc,
	}, badNone
}
