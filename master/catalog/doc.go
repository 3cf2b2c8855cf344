// Package catalog is the Pebble projection of the master's journal: every
// record statemachine.State.Apply says changed (Output.Records), stored
// under a key of its own, plus the journal index the catalog has applied
// and periodic state snapshots.
//
// The catalog is a cache (DESIGN.md §2, rule 3). The journal is the truth:
// the catalog can be deleted (Remove) and rebuilt by replaying the journal
// from the start, and `abs journal verify` proves it equal to a fresh
// replay (Diff). The replay driver lives in package master; this package is
// storage only.
//
// # Contract
//
// One Batch per applied journal record (or per run of them, during a
// rebuild) carries the records Apply returned and, with SetApplied, the
// journal index they bring the catalog to. Commit writes both in one
// atomic pebble batch, so after any crash the catalog holds exactly the
// records of journal indices ≤ its applied index (Meta.Applied), and the
// master resumes applying at Applied+1. Commits are not synced (see
// Batch.Commit for why that is safe); Sync and Close are clean points.
//
// # Key layout
//
// Keys are ASCII text, so `pebble` tools and Diff's output show them as
// is. Names inside keys (job IDs, servers, partitions, volumes, tape labels,
// slave names) are escaped: '%' is written "%25" and '/' is written "%2F",
// so '/' only ever separates parts. Numbers are 20 decimal digits,
// zero-padded (%020d), so byte order is numeric order. Values are msgpack,
// encoded with compact integers from the statemachine structs and their
// msgpack tags (maps keyed by the short tag names; the structs hold no Go
// maps, so the bytes are deterministic and equal records are equal bytes).
//
//	key                                            value
//	dump/SERVER/PARTITION/VOLUME/DUMPDATE/INDEX    statemachine.DumpRecord
//	job/ID                                         statemachine.Job
//	jobq/QUEUEDINDEX/ID                            the job ID, raw bytes (unescaped)
//	master/EPOCH                                   statemachine.Master
//	meta/applied                                   journal index applied, 8 bytes big-endian
//	meta/journal                                   journal ID, raw bytes
//	slave/NAME                                     statemachine.Slave
//	snap/INDEX                                     statemachine.State.Snapshot() after INDEX, raw bytes
//	tape/LABEL                                     statemachine.Tape
//	vol/SERVER/PARTITION/VOLUME                    statemachine.Volume
//
// DUMPDATE is the dump's snapshot date in Unix nanoseconds (a negative
// date, never produced in practice, is written like %020d: "-" and 19
// digits). INDEX in a dump key is the journal index that recorded it, so
// two dumps of a volume with the same date still have two keys.
// QUEUEDINDEX is the journal index of the job's JobQueued (or JobAdopted:
// jobs adopted by one registration share it, so the ID follows): jobq/
// lists jobs in queueing order, which job/ (ordered by ID, where "x-10" <
// "x-9") does not. A job's jobq/ entry is written with every version of the job (the
// same key and value each time).
//
// meta/ and snap/ describe the catalog, not the journal's content: Diff
// ignores them. Snapshots: the latest and the one before it are kept;
// Commit deletes older ones in the same batch that adds a new one.
//
// A record is only ever replaced, never deleted: the catalog is the full
// history (every job and dump), while statemachine.State stays bounded.
//
// # Files
//
// The directory is pebble's own (LOCK, MANIFEST-*, OPTIONS-*, *.log, *.sst,
// marker.*); nothing else may be put in it, which is how Remove recognises
// a catalog. A read-only open (Options.ReadOnly) takes a shared lock on
// LOCK and changes no file.
package catalog
