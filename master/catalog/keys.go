package catalog

import (
	"strconv"
	"strings"
)

// Key prefixes. Every key of the catalog starts with one of these; doc.go
// describes the whole layout. The trailing '/' matters: "job/" does not
// prefix "jobq/", and "dump/fs1/" does not prefix "dump/fs10/".
const (
	prefixDump   = "dump/"
	prefixJob    = "job/"
	prefixJobQ   = "jobq/"
	prefixMaster = "master/"
	prefixMeta   = "meta/"
	prefixSlave  = "slave/"
	prefixSnap   = "snap/"
	prefixTape   = "tape/"
	prefixVol    = "vol/"

	keyMetaJournal = prefixMeta + "journal"
	keyMetaApplied = prefixMeta + "applied"
)

// indexWidth is the number of decimal digits of a number in a key: enough
// for any uint64, zero-padded so that byte order is numeric order.
const indexWidth = 20

// appendIndex appends v as exactly 20 decimal digits.
func appendIndex(dst []byte, v uint64) []byte {
	var buf [indexWidth]byte
	for i := indexWidth - 1; i >= 0; i-- {
		buf[i] = byte('0' + v%10)
		v /= 10
	}
	return append(dst, buf[:]...)
}

// appendDate appends a dump date as %020d does: 20 characters, a '-' first
// for a negative date. Dates are Unix nanoseconds and positive in practice;
// a negative one (before 1970) still gives a unique key, but negative dates
// sort before positive ones and among themselves in reverse.
func appendDate(dst []byte, v int64) []byte {
	if v >= 0 {
		return appendIndex(dst, uint64(v))
	}
	s := strconv.FormatInt(v, 10) // "-123"
	dst = append(dst, '-')
	for i := len(s); i < indexWidth; i++ {
		dst = append(dst, '0')
	}
	return append(dst, s[1:]...)
}

// parseIndex reads the 20 digits appendIndex wrote.
func parseIndex(b []byte) (uint64, bool) {
	if len(b) != indexWidth {
		return 0, false
	}
	var v uint64
	for _, c := range b {
		if c < '0' || c > '9' {
			return 0, false
		}
		d := uint64(c - '0')
		if v > (^uint64(0)-d)/10 {
			return 0, false
		}
		v = v*10 + d
	}
	return v, true
}

// appendPart appends one name (a job ID, server, partition, volume, tape
// label, slave name) escaped so it cannot contain the '/' that separates
// key parts: '%' becomes "%25" and '/' becomes "%2F". statemachine refuses
// such names from operators, but records carry names reported by slaves
// too, and a key must never be ambiguous.
func appendPart(dst []byte, s string) []byte {
	if !strings.ContainsAny(s, "%/") {
		return append(dst, s...)
	}
	for i := 0; i < len(s); i++ {
		switch c := s[i]; c {
		case '%':
			dst = append(dst, "%25"...)
		case '/':
			dst = append(dst, "%2F"...)
		default:
			dst = append(dst, c)
		}
	}
	return dst
}

func jobKey(dst []byte, id string) []byte {
	return appendPart(append(dst, prefixJob...), id)
}

// jobQKey is a job's queue-order key: its QueuedIndex, then its ID (the
// jobs a slave's registration adopts share one journal index).
func jobQKey(dst []byte, queuedIndex uint64, id string) []byte {
	dst = appendIndex(append(dst, prefixJobQ...), queuedIndex)
	if id == "" {
		return dst
	}
	return appendPart(append(dst, '/'), id)
}

// dumpPrefix appends the prefix of the dump keys under the leading
// non-empty parts of server, partition, volume ("dump/fs1/vicepa/"), and
// reports whether every given part is in the prefix (false when a later
// part is set after an empty one, and records must be filtered).
func dumpPrefix(dst []byte, server, partition, volume string) ([]byte, bool) {
	dst = append(dst, prefixDump...)
	parts := [3]string{server, partition, volume}
	n := 0
	for n < 3 && parts[n] != "" {
		dst = append(appendPart(dst, parts[n]), '/')
		n++
	}
	for _, p := range parts[n:] {
		if p != "" {
			return dst, false
		}
	}
	return dst, true
}

func dumpKey(dst []byte, server, partition, volume string, date int64, index uint64) []byte {
	dst = append(dst, prefixDump...)
	dst = append(appendPart(dst, server), '/')
	dst = append(appendPart(dst, partition), '/')
	dst = append(appendPart(dst, volume), '/')
	dst = append(appendDate(dst, date), '/')
	return appendIndex(dst, index)
}

func tapeKey(dst []byte, label string) []byte {
	return appendPart(append(dst, prefixTape...), label)
}

func slaveKey(dst []byte, name string) []byte {
	return appendPart(append(dst, prefixSlave...), name)
}

func volKey(dst []byte, server, partition, volume string) []byte {
	dst = append(dst, prefixVol...)
	dst = append(appendPart(dst, server), '/')
	dst = append(appendPart(dst, partition), '/')
	return appendPart(dst, volume)
}

func masterKey(dst []byte, epoch uint64) []byte {
	return appendIndex(append(dst, prefixMaster...), epoch)
}

func snapKey(dst []byte, index uint64) []byte {
	return appendIndex(append(dst, prefixSnap...), index)
}

// prefixEnd returns the smallest key greater than every key with prefix p,
// the exclusive upper bound of an iteration over p. Every prefix here ends
// in '/' (0x2f), so incrementing the last byte never overflows.
func prefixEnd(p []byte) []byte {
	end := append([]byte(nil), p...)
	end[len(end)-1]++
	return end
}
