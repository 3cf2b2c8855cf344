// Package source holds volume sources: it dumps a volume as a PAX tar stream
// (full or incremental) and restores a chain of such streams exactly, never
// writing outside the restore target.
//
// Two kinds of partition exist. A DirPartition is a directory whose
// subdirectories are volumes; its dumps hold the volume's files, directories
// and symlinks. A CommandPartition declares a dump/restore command pair (see
// its documentation for quoting and placeholders); its dumps hold the dump
// command's stdout.
//
// # Stream format (version 1)
//
// A dump stream is a POSIX.1-2001 (PAX) tar archive, readable with GNU tar,
// bsdtar or archive/tar. Entries, in order:
//
//  1. The header entry: a regular file named ".abs/manifest" whose PAX
//     extended header carries these records (all values UTF-8):
//
//     ABS.format     "1"
//     ABS.source     "dir" or "command"
//     ABS.kind       "full" or "incremental"
//     ABS.volume     the volume name
//     ABS.server     the server name (informational)
//     ABS.partition  the partition name (informational)
//     ABS.dumpdate   the dump date, RFC 3339 with nanoseconds, UTC
//     ABS.since      the increment date, same format; only when incremental
//
//     The header entry is recognised by being the first entry and carrying
//     ABS.format, never by its name: no other entry may carry an ABS.* record
//     (a restore refuses it), and a volume's own ".abs/manifest" is an ordinary
//     later entry. Extracted with plain tar, the volume's file (later in the
//     stream) overwrites the header entry.
//
//     For "dir" dumps its data is the manifest: one record per path present
//     in the volume when the dump was walked, in the order of a sorted walk,
//     each record being a type byte ('d' directory, 'f' regular file,
//     'l' symlink), one space, the path, and a NUL byte. Paths are relative
//     to the volume root, slash-separated, clean (no "." or ".." element, no
//     leading "/"); the root itself is listed as "." (type 'd'). Example:
//     "d .\x00d etc\x00f etc/passwd\x00l etc/localtime\x00".
//     For "command" dumps the data is empty.
//
//  2. For "dir" dumps, entries in the same sorted-walk order, with the same
//     clean relative paths (directories with a trailing "/", the root as
//     "./"):
//     - every directory, full or incremental (mode, mtime, uid/gid), so a
//     restore creates empty ones and sets their modes and mtimes;
//     - regular files (contents, mode incl. setuid/setgid/sticky, mtime with
//     nanoseconds, uid/gid): all of them in a full dump; in an incremental
//     those whose mtime or ctime is not before since-TimestampSlack (the
//     ctime catches chmod, chown and rename);
//     - symlinks (target verbatim, never followed), chosen like files.
//     Hard-linked files are stored as separate copies. Sockets, devices and
//     fifos are neither stored nor listed (DumpStats.Skipped). A file that
//     shrinks while it is read is padded with zeros; its ctime is after the
//     dump date, so the next incremental stores it again.
//
//     For "command" dumps, the command's stdout cut into regular entries
//     "stdout.000000000", "stdout.000000001", ... of at most ChunkSize bytes
//     (at least one entry, possibly empty). Without abs:
//     tar -xf dump.tar && cat stdout.* | restore-command.
//
//  3. The trailer: a PAX global header (typeflag 'g', name "abs-end") with
//     the record ABS.end = the number of entries between header and
//     trailer. A stream cut at an entry boundary is still valid tar; only
//     the missing trailer shows it is truncated, and a restore refuses it.
//     Tar tools ignore the record. Nothing may follow the trailer.
//
// The dump date is taken before the walk starts (before the command starts),
// so anything changed during the dump is in the next incremental. Entries
// carry no atime/ctime and no user or group names, so dumping the same tree
// twice gives the same entries.
//
// # Restore
//
// DirRestorer.Restore applies one "dir" stream; RestoreChain applies a full
// dump and then its incrementals in order, checking that each incremental's
// since is not after the previous dump date (no gap) and that dump dates
// increase. For each stream a restore:
//
//   - reads and checks the header entry and the manifest (every path clean);
//   - full: requires an absent or empty target; incremental: the target of
//     the previous streams;
//   - removes every path of the target the manifest does not list (deleted
//     from the volume since the previous dump), whole directories included;
//   - applies each entry: it must be listed in the manifest with the same
//     type, and all its parents must already be real directories in the
//     target (never symlinks); whatever of another type occupies its path is
//     removed first. Files are created afresh (O_CREAT|O_EXCL|O_NOFOLLOW),
//     then get owner (when running as root), mode and times; symlinks are
//     created verbatim (even absolute or dangling: nothing is ever written
//     through one) and get their times with utimensat(AT_SYMLINK_NOFOLLOW);
//     directories are created (or kept) writable;
//   - requires the trailer, with the right entry count, as the last entry;
//   - checks that each listed path the target holds has the listed type (a
//     mismatch means a dump of the chain is missing or out of order). Listed
//     paths that are absent are tolerated: they vanished while the dump ran;
//   - then sets the owner, times and mode of every directory, deepest first
//     (so writing their contents does not disturb their mtimes, and a mode
//     that takes away the owner's access comes last).
//
// Every filesystem operation names a single entry of a directory held open
// as a descriptor, without following a symlink; directories are opened one
// name at a time from the target's own descriptor with O_DIRECTORY and
// O_NOFOLLOW (dumps read the volume the same way). Files are created and
// written by a few goroutines besides the one reading the stream, which
// checks every entry and looks up every directory itself, in stream order;
// whatever depends on files being in place (removals, a path given twice,
// the directories' metadata, the final check) waits for them first.
// Refused with an error naming the entry: absolute paths, paths with "..",
// unclean paths, entries beneath a symlink or a non-directory, entries absent
// from the manifest, hard links, devices, fifos, GNU sparse files, any other
// entry type, and ABS.* records after the header. A refused or truncated
// stream leaves the target partly restored (restart the restore into an
// empty target); nothing outside the target is ever touched. Concurrent
// writers to the target during a restore are outside this contract.
//
// CommandPartition.Restore feeds the chunks of a "command" stream, in order,
// to the restore command's stdin.
package source
