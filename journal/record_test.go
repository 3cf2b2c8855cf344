package journal

import (
	"bytes"
	"encoding/binary"
	"errors"
	"hash/crc32"
	"testing"
)

func TestCRC32CCheckValue(t *testing.T) {
	// The doc promises the common crc32c; pin its check value.
	if got := crc32.Checksum([]byte("123456789"), castagnoli); got != 0xE3069283 {
		t.Fatalf("crc32c check value = %08x", got)
	}
}

func TestRecordRoundTrip(t *testing.T) {
	recs := []Record{
		{Index: 1, Type: TypeIdentity, Payload: []byte{0x80}},
		{Index: 2, Type: TypeEvents, Epoch: 3, Time: -5, Prev: 0xdeadbeef, Payload: []byte("hello")},
		{Index: 1 << 60, Type: TypeEvents, Epoch: 1<<64 - 1, Time: 1<<63 - 1, Prev: 1, Payload: nil},
	}
	for _, r := range recs {
		b := EncodeRecord([]byte("prefix"), r)
		if !bytes.HasPrefix(b, []byte("prefix")) {
			t.Fatal("EncodeRecord dropped dst")
		}
		b = b[len("prefix"):]
		if len(b) != Overhead+len(r.Payload) {
			t.Fatalf("encoded %d bytes, want %d", len(b), Overhead+len(r.Payload))
		}
		got, err := DecodeRecord(b)
		if err != nil {
			t.Fatal(err)
		}
		r.CRC = binary.BigEndian.Uint32(b[len(b)-4:])
		if r.Payload == nil {
			r.Payload = []byte{}
		}
		if got.Index != r.Index || got.Type != r.Type || got.Epoch != r.Epoch || got.Time != r.Time ||
			got.Prev != r.Prev || got.CRC != r.CRC || !bytes.Equal(got.Payload, r.Payload) {
			t.Fatalf("round trip: got %+v, want %+v", got, r)
		}
	}
}

func TestRecordLayout(t *testing.T) {
	// Byte-exact check of the documented layout.
	b := EncodeRecord(nil, Record{Index: 0x0102030405060708, Type: TypeEvents, Epoch: 9, Time: 10, Prev: 0xa1b2c3d4, Payload: []byte("xy")})
	want := []byte{
		'A', 'J', 1, 2,
		1, 2, 3, 4, 5, 6, 7, 8,
		0, 0, 0, 0, 0, 0, 0, 9,
		0, 0, 0, 0, 0, 0, 0, 10,
		0xa1, 0xb2, 0xc3, 0xd4,
		0, 0, 0, 2,
		'x', 'y',
	}
	want = binary.BigEndian.AppendUint32(want, crc32.Checksum(want, crc32.MakeTable(crc32.Castagnoli)))
	if !bytes.Equal(b, want) {
		t.Fatalf("layout:\n got %x\nwant %x", b, want)
	}
}

func TestDecodeRecordRejects(t *testing.T) {
	good := EncodeRecord(nil, Record{Index: 2, Type: TypeEvents, Payload: []byte("abc")})
	mod := func(f func(b []byte) []byte) []byte { return f(append([]byte(nil), good...)) }
	resum := func(b []byte) []byte {
		n := len(b) - 4
		binary.BigEndian.PutUint32(b[n:], crc32.Checksum(b[:n], castagnoli))
		return b
	}
	cases := map[string][]byte{
		"empty":         nil,
		"short":         good[:Overhead-1],
		"magic":         mod(func(b []byte) []byte { b[0] = 'X'; return resum(b) }),
		"version":       mod(func(b []byte) []byte { b[offVersion] = 2; return resum(b) }),
		"type 0":        mod(func(b []byte) []byte { b[offType] = 0; return resum(b) }),
		"type 3":        mod(func(b []byte) []byte { b[offType] = 3; return resum(b) }),
		"length long":   mod(func(b []byte) []byte { b[offLength+3]++; return resum(b) }),
		"length short":  mod(func(b []byte) []byte { b[offLength+3]--; return resum(b) }),
		"trailing byte": append(append([]byte(nil), good...), 0),
		"truncated":     good[:len(good)-1],
		"crc":           mod(func(b []byte) []byte { b[len(b)-1] ^= 1; return b }),
		"payload flip":  mod(func(b []byte) []byte { b[HeaderSize] ^= 0x10; return b }),
		"prev flip":     mod(func(b []byte) []byte { b[offPrev] ^= 0x80; return b }),
		"huge length":   mod(func(b []byte) []byte { binary.BigEndian.PutUint32(b[offLength:], MaxPayload+1); return resum(b) }),
	}
	for name, b := range cases {
		if _, err := DecodeRecord(b); !errors.Is(err, ErrBadRecord) {
			t.Errorf("%s: err = %v, want ErrBadRecord", name, err)
		}
	}
	if _, err := DecodeRecord(good); err != nil {
		t.Fatal(err)
	}
}

func FuzzDecodeRecord(f *testing.F) {
	f.Add(EncodeRecord(nil, Record{Index: 1, Type: TypeIdentity, Payload: []byte{0x84}}))
	f.Add(EncodeRecord(nil, Record{Index: 7, Type: TypeEvents, Epoch: 2, Time: 99, Prev: 12345, Payload: []byte("events")}))
	f.Add([]byte("AJ\x01\x02"))
	f.Add(make([]byte, Overhead))
	f.Fuzz(func(t *testing.T, b []byte) {
		// Decoding arbitrary bytes never panics; whatever decodes
		// re-encodes to exactly the same bytes.
		if r, err := DecodeRecord(b); err == nil {
			if again := EncodeRecord(nil, r); !bytes.Equal(again, b) {
				t.Fatalf("decode∘encode changed bytes:\n in %x\nout %x", b, again)
			}
		} else if !errors.Is(err, ErrBadRecord) {
			t.Fatalf("error does not wrap ErrBadRecord: %v", err)
		}
		// And any field values round-trip through encode∘decode.
		if len(b) >= 29 {
			r := Record{
				Index:   binary.BigEndian.Uint64(b),
				Type:    RecordType(1 + b[8]%2),
				Epoch:   binary.BigEndian.Uint64(b[9:]),
				Time:    int64(binary.BigEndian.Uint64(b[17:])),
				Prev:    binary.BigEndian.Uint32(b[25:]),
				Payload: b[29:],
			}
			enc := EncodeRecord(nil, r)
			got, err := DecodeRecord(enc)
			if err != nil {
				t.Fatalf("decode of encoded record: %v", err)
			}
			if got.Index != r.Index || got.Type != r.Type || got.Epoch != r.Epoch || got.Time != r.Time ||
				got.Prev != r.Prev || !bytes.Equal(got.Payload, r.Payload) ||
				got.CRC != binary.BigEndian.Uint32(enc[len(enc)-4:]) {
				t.Fatalf("encode∘decode: got %+v, want %+v", got, r)
			}
		}
	})
}
