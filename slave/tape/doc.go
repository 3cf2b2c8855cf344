// Package tape is abs's media layer (DESIGN.md §6): the cartridge format,
// the Library and Drive interfaces a media slave writes dumps through, and a
// file-backed library (FileLibrary) in which every cartridge is a file.
// Package tapetest holds the conformance suite every Library must pass.
//
// This comment is the specification of the cartridge format: it is enough
// to write a reader without this package, and to get a dump off a cartridge
// with dd and tar.
//
// # Cartridges and blocks
//
// A cartridge is one file (in a FileLibrary: <external name>.tape, e.g.
// A00001.tape). Everything on it is in 512-byte blocks, tar's block size:
//
//	block 0              label record
//	blocks 1..           tape file 1, tape file 2, ...
//
//	tape file k =  header record   (1 block)
//	               payload         (ceil(size/512) blocks; the last one padded with zero bytes)
//	               trailer record  (1 block)
//
// An empty file is a blank cartridge: it has no label and holds nothing.
// Offsets below are in bytes from the start of a record. Every integer is
// unsigned big-endian. A string field holds UTF-8 without NUL bytes, padded
// with NUL bytes to the field's width (a string may fill the field, with no
// terminating NUL). A time field is a string: the time in UTC as RFC 3339
// with optional fractional seconds and the "Z" suffix (Go's
// time.RFC3339Nano, e.g. "2026-03-01T12:00:00.5Z"); an all-NUL time field
// is "no time" (for the increment date: a full dump). "reserved" bytes are
// zero. Every record ends with a CRC:
//
//	crc  bytes 508-511: CRC-32C (Castagnoli, polynomial 0x1EDC6F41, reflected
//	     0x82F63B78, initial value and final xor 0xFFFFFFFF, the common
//	     "crc32c": check value of "123456789" is 0xE3069283) of bytes 0-507.
//
// # Label record (block 0, offset 0)
//
//	  0   8  magic     "ABSLABEL"
//	  8   4  version   uint32, format version: 1
//	 12  64  label     string, the internal label, not empty ("athena-7f3a-000012")
//	 76  64  realm     string
//	140  64  origin    string, the ID of the journal that generated the label
//	204  32  created   time the label was generated
//	236 272  reserved
//	508   4  crc
//
// The version applies to the whole cartridge: version 1 is the header and
// trailer layouts below.
//
// # Header record (first block of tape file k)
//
//	  0   8  magic     "ABSFILE1"
//	  8   4  number    uint32, k: the file's position on the cartridge, from 1
//	 12   4  part      uint32, part number of the dump, from 1 (parts > 1 are
//	                   continuations of a dump that did not fit on the previous cartridge)
//	 16  16  nonce     16 random bytes, repeated in the file's trailer
//	 32  48  job       string, the job ID
//	 80 112  volume    string, not empty
//	192  64  server    string
//	256 112  partition string
//	368  32  dumpdate  time of the dump
//	400  32  incrdate  time the dump is incremental from; all NUL for a full dump
//	432  64  prevlabel string, internal label of the cartridge holding part-1
//	                   (required when part > 1, empty when part = 1)
//	496  12  reserved
//	508   4  crc
//
// # Payload
//
// The payload starts at the block after the header: byte offset
// header+512. It is exactly the bytes the dump produced — a plain PAX tar
// stream for a complete single-part dump, a slice of one for a part of a
// multi-part dump — followed by zero bytes up to the next block boundary.
// Nothing in the payload is interpreted by this format.
//
// # Trailer record (last block of tape file k)
//
//	  0   8  magic      "ABSTRAIL"
//	  8   4  number     uint32, k, as in the header
//	 12   4  flags      uint32; bit 0 = continues: the dump goes on in part+1
//	                    on another cartridge. Other bits are zero.
//	 16  16  nonce      the header's nonce
//	 32   8  size       uint64, payload size in bytes, without the padding
//	 40   8  totalsize  uint64, size of the whole dump (all parts
//	                    concatenated); 0 when continues is set
//	 48  64  sha256     SHA-256 of the payload (unpadded), 64 lowercase hex digits
//	112  64  totalsha   SHA-256 of the whole dump, 64 lowercase hex digits;
//	                    all NUL when continues is set
//	176 332  reserved
//	508   4  crc
//
// The trailer sits at byte header + 512 + ceil(size/512)*512. For a part 1
// that does not continue (the usual single-cartridge dump), totalsize =
// size and totalsha = sha256. For a final part n > 1, totalsha is the
// SHA-256 of part 1's payload, then part 2's, ..., then part n's.
//
// # Reading a cartridge
//
// A payload has no length before it (dumps are streamed), so a reader finds
// the end of tape file k by looking at each following block boundary for a
// record that starts with "ABSTRAIL", passes its CRC and carries the
// header's nonce. The nonce is what makes this unambiguous: a payload may
// well contain abs records at block boundaries (a tar of a cartridge
// file), but not one carrying a random nonce that its producer could not
// know. Its size must then agree with its position, and file k+1's header
// (number k+1) starts in the next block. This package reads the whole
// cartridge to list it, as a tape drive reads a whole tape (a FileLibrary
// then remembers what it found, or wrote, while the cartridge file stays
// unchanged: index.go).
//
// With standard tools, for a cartridge whose file 1 is a complete dump:
//
//	dd if=A00001.tape bs=512 count=1 | od -c     # the label
//	dd if=A00001.tape bs=512 skip=1 count=1 | od -c   # header of file 1
//	dd if=A00001.tape bs=512 skip=2 | tar -tvf -      # the dump in file 1
//
// tar stops at the tar stream's own end-of-archive blocks, so reading past
// the payload does no harm. File k+1's header is at block
// 1 + (blocks of files 1..k), where a file of payload size s takes
// ceil(s/512) + 2 blocks, and its payload at the block after; List reports
// every file's Offset (of its header, in bytes).
// A dump in several parts is the concatenation of the parts' payloads (cut
// at their sizes, not their padding), in part order.
//
// # Writing, durability and torn files
//
// A labeled cartridge is only ever appended to: a new tape file starts at
// the end of the last complete file. Writing a file is: header, payload,
// padding, fsync, trailer, fsync; FileWriter.Close returns only after the
// second fsync, so a reported dump is durable, and a trailer that reached
// the disk vouches for a payload that did. A label is written to a
// temporary file, fsynced, renamed over the blank cartridge file, and the
// directory fsynced, so a cartridge is blank or labeled, never half.
//
// A crash while a file is written (or an Unload with a FileWriter open)
// leaves a torn file: bytes after the last complete file. The rule, the
// only repair this package makes: the next Append cuts the bytes after the
// last complete file (copying them first to broken/<name>.<offset>.<unix
// ns>.broken in the library, fsynced) if they are a torn write, that is:
//   - less than one block, or
//   - a valid header for the next file number and no trailer with its nonce,
//     and no other valid header or trailer at any block boundary after it, or
//   - no valid header, and no valid header or trailer at any block boundary.
//
// Anything else after the last complete file — a trailer whose size does not
// match its position, a torn file whose payload holds other valid records
// (perhaps a damaged trailer with valid files after it) — is damage, not a
// torn write: Append refuses with a *CorruptError (offset, file number,
// reason), and an operator must look. As with any log, a final trailer that
// rots on the medium cannot be told apart from a torn write; the .broken
// copy keeps those bytes.
//
// Nothing here ever overwrites a label: WriteLabel refuses a labeled
// cartridge, and making a cartridge blank again needs Erase(expired=true),
// the caller's assertion that retention released every dump on it.
//
// # Capacity
//
// A cartridge of capacity C bytes (rounded down to whole blocks) holds the
// label, then files as long as each fits whole, trailer included. Append
// needs room for a header, one payload block and a trailer; FileWriter.Write
// accepts payload up to the last block that leaves room for the trailer,
// writes what fits and returns ErrEndOfTape. The caller then closes the part
// with continues=true and appends part+1, with the returned Continuation,
// on another cartridge.
package tape
