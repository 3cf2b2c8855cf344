// Package statemachine is the pure core of the abs master: the domain (jobs,
// slaves, tapes, dumps, master epochs), the events that record every decision,
// and the three functions the commit loop is built from:
//
//	Decide(state, command, now) -> events, or a *Refusal   (reads state, never changes it)
//	state.Apply(index, events)  -> Output{Effects, Records} (changes state)
//	Pending(state)              -> effects                  (re-derived after a restart)
//
// Contracts (DESIGN.md §2):
//
//   - Purity. Nothing here does IO, reads a clock, draws randomness or starts a
//     goroutine. Time enters as the now argument of Decide and travels inside the
//     events; Apply uses only the times written in events. A test enforces the
//     import rules (see layering_test.go in the repository root).
//   - Determinism. Applying the same events at the same indices to the same
//     state gives the same state, byte for byte (State.Snapshot encodes maps
//     with sorted keys). Replays of a journal are therefore identical, which is
//     what makes the catalog rebuildable and the merge of crippled journals
//     possible.
//   - Refusals are not events. Decide returns a *Refusal for a bad command and
//     no events; the caller writes nothing.
//   - Events are facts. Apply never refuses an event: whatever was journaled is
//     applied (an event that no longer makes sense — an abort for a job that has
//     since ended — is a no-op), so a journal written by an older decision rule
//     always replays.
//   - Bounded memory. State holds what decisions need: jobs not yet ended, a
//     small ring of recently ended jobs, slaves, tapes, the latest dumps per
//     volume and the epoch. The full history (every job and dump record ever)
//     is emitted as Records for the catalog and is not kept here.
//
// Output.Records is the projection: the catalog (master/catalog) stores each
// record under its key, so the catalog is exactly "what Apply said changed",
// and rebuilding it is replaying the journal through Apply.
package statemachine
