// Package journal is abs's write-ahead log: the durable, ordered list of the
// master's decisions (DESIGN.md §2–§3). It wraps github.com/tidwall/wal,
// which stores entries in segment files, and adds what wal lacks: a framed
// and checksummed record per entry, a CRC chain across records, an exclusive
// lock, directory fsyncs, a narrow repair of torn tails, group commit, and a
// read-only Reader.
//
// # Directory layout
//
// A journal is a directory holding:
//
//	LOCK                      flock(2)ed by the writer; holds its pid in decimal
//	00000000000000000001      segment files (see below)
//	00000000000000004711
//	broken/<segment>.<ns>.broken  copies of segments that Open cut (see Repair)
//
// Create may leave a file CREATE.tmp after a crash; it is not part of the
// journal. Files named <20 digits>.START or <20 digits>.END (wal's truncation
// leftovers) must not exist: abs never truncates through wal, so their
// presence means someone else did, and Open refuses.
//
// # Segment files
//
// A segment file is named by the WAL index of its first entry, as 20 decimal
// digits, zero padded (so names sort in index order). The first segment is
// 00000000000000000001. The file is a plain sequence of WAL entries with no
// header, footer or padding:
//
//	entry = uvarint(len(data)) || data
//
// where uvarint is the unsigned LEB128 varint of encoding/binary (7 bits per
// byte, least significant group first, high bit set on every byte but the
// last). The k-th entry (0-based) of segment S has index S+k. If segment S
// holds n entries, the next segment is named S+n: a segment whose name is
// anything else means segments are missing. Only the last segment may be
// empty (wal creates the next segment as soon as one fills up).
//
// wal starts a new segment after the entry that brings the current segment's
// size to SegmentSize or more, and also before a batch if the segment is
// already over SegmentSize (as it can be after a crash, or when reopened with
// a smaller SegmentSize). Full segments are fsynced and closed before the next
// is created, so a crash inside a multi-segment batch leaves a prefix of it.
//
// # Records
//
// The data of every entry is exactly one record. All integers are
// big-endian; offsets are in bytes from the start of the record:
//
//	 0      2  3  4              12             20             28      32      36           36+N    40+N
//	 +------+--+--+--------------+--------------+--------------+-------+-------+------------+-------+
//	 | "AJ" |v |t |    index     |    epoch     |     time     | prev  |   N   |  payload   |  crc  |
//	 +------+--+--+--------------+--------------+--------------+-------+-------+------------+-------+
//	  magic  |  |    uint64         uint64         int64        uint32  uint32    N bytes     uint32
//	    version type
//
//	magic    2 bytes  0x41 0x4A ("AJ")
//	version  1 byte   FormatVersion, 1
//	type     1 byte   1 = identity (only at index 1), 2 = events (every other index)
//	index    8 bytes  the WAL index the record sits at; must equal its position
//	epoch    8 bytes  writer epoch (master incarnation); 0 in the identity record
//	time     8 bytes  unix nanoseconds, two's complement, as supplied by the appender
//	prev     4 bytes  the crc field of the record at index-1; 0 at index 1
//	N        4 bytes  payload length, at most MaxPayload (64 MiB)
//	payload  N bytes  identity: msgpack of Identity; events: opaque (msgpack events)
//	crc      4 bytes  CRC-32C (Castagnoli, polynomial 0x1EDC6F41, reflected
//	                  0x82F63B78, initial value and final xor 0xFFFFFFFF: the
//	                  common "crc32c", check value of "123456789" = 0xE3069283)
//	                  over bytes [0, 36+N) of the record
//
// A record is therefore 40+N bytes, and the entry's uvarint length must equal
// 40+N. Because the crc covers prev, and prev is the previous record's crc,
// each crc commits to the whole history before it: a lost, reordered,
// duplicated or altered record breaks the chain even if it is itself
// well-formed.
//
// The identity payload is a msgpack map with four string keys, written in
// this order by msgpack/v5 (readers must accept any order and any msgpack
// integer width):
//
//	"id"       string  32 lowercase hex characters (128 random bits)
//	"realm"    string  the realm, not empty
//	"mode"     string  "normal" or "crippled"
//	"created"  int     creation time, unix nanoseconds
//
// The identity record's time field equals Created.
//
// # Validity
//
// A journal is valid when its segment names are contiguous as described, the
// first record is an identity at index 1 with prev 0 and epoch 0, every
// record decodes (magic, version, type, length, crc), names its own index,
// and its prev equals the previous record's crc. Open checks all of this for
// every segment before it accepts a journal.
//
// # Repair
//
// The only damage Open repairs is a torn final record of the last segment:
// bytes after the last valid record that are a partial record, zeros, or
// garbage — precisely, no byte offset after the damage holds a record that
// passes its own crc with an index that could follow the valid prefix. Open
// then copies the segment to broken/<segment>.<unix-ns>.broken, truncates the
// segment at the end of the valid prefix, fsyncs the copy, the segment and the
// directories, and reports it (Journal.Repaired, and a slog warning). Such
// bytes can only come from a write that was never acknowledged (Append
// returns only after the fsync), except when the very last acknowledged
// record itself rots, which cannot be told apart from a torn write.
//
// Everything else is refused with a *CorruptError naming the file, the
// offset of the damaged entry and the index expected there, and Open writes
// nothing: a damaged record followed by a valid one, any damage in a segment
// that is not the last, a missing segment, a broken chain, a record at the
// wrong index, an empty entry followed by records, a first record that is not
// an identity, wal truncation files.
//
// # Writing
//
// One committer at a time writes. Submit queues an entry and assigns it the
// next index; the committer takes everything queued (up to 8192 entries or
// 8 MiB), encodes it with consecutive indices and chained crcs, and commits it
// in this order: one wal.WriteBatch (wal is opened with NoSync), one fsync of
// the current segment, an fsync of the directory if a segment file was
// created, and only then resolves the futures. The committer is a writer
// goroutine, except that an Append finding nobody committing commits its
// group itself, which saves two goroutine hand-offs per commit when appends
// are sparse. Any error in these steps is passed to Options.Fatal, which by
// default exits the process with ExitIO: fsyncs are never retried, and a
// restarted process recovers by Open.
//
// testdata/golden holds a small journal written from fixed values (three
// segments, the last one empty): a worked example of this format.
//
// # Locking
//
// The writer holds flock(LOCK_EX|LOCK_NB) on LOCK for as long as the Journal
// is open; a second Create or Open, from another process or this one, fails
// at once with *LockedError. The kernel releases the lock when the process
// dies. Readers take no lock.
//
// # What wal users must know
//
// wal.Open modifies the directory (creates a first segment in an empty one,
// deletes or renames around .START/.END files), fails on a torn tail, and
// silently reads zero bytes as empty entries; its Read is not safe for
// concurrent use. This package therefore verifies and repairs before calling
// wal.Open, and never reads through wal: Reader parses segment files itself.
package journal
