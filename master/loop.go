package master

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/abs-backup/abs/journal"
	"github.com/abs-backup/abs/master/catalog"
	"github.com/abs-backup/abs/metrics"
	"github.com/abs-backup/abs/statemachine"
)

// The commit loop (DESIGN.md §2) runs in two goroutines joined by a channel:
//
//	decider:   Decide → Submit to the journal (group commit) → Apply to the
//	           in-memory state → hand the pending item to the completer
//	completer: wait until the record is durable → catalog batch commit →
//	           reply to the caller → run the effects
//
// The decider applies events before they are durable so that it can decide
// the next command while the journal's fsync for the previous ones is under
// way: that is what lets concurrent callers share one fsync. It is safe
// because nothing leaves the process before durability — replies, effects and
// catalog writes all happen in the completer after Wait — and because a
// journal failure ends the process (journal.Options.Fatal), so a state that
// ran ahead of the disk never outlives the failure. Reads of the in-memory
// state go through the same pipeline (a query item), so an answer never shows
// a decision that is not yet durable.

// SnapshotEvery is how many journal records pass between state snapshots in
// the catalog; start-up replays at most this many records past the last one.
const SnapshotEvery = 10000

// proposal is one input to the decider.
type proposal struct {
	cmd statemachine.Command // nil for a pure query
	// then runs on the decider right after the command's events are applied
	// (or at once for a query); its value is the reply, delivered once every
	// record decided so far is durable. It must return values, not pointers
	// into the state.
	then  func(s *statemachine.State, evs []statemachine.Event) any
	reply chan result
}

type result struct {
	val   any
	index uint64 // journal index of the command's record, 0 if none
	err   error
}

// pending is a decided item on its way to the completer.
type pending struct {
	fut     *journal.Future
	index   uint64
	out     statemachine.Output
	snap    []byte // state snapshot at index, every SnapshotEvery records
	reply   chan result
	val     any
	err     error // a refusal
	cmdName string
}

type loop struct {
	log      *slog.Logger
	j        *journal.Journal
	cat      *catalog.Catalog // nil in crippled mode
	met      *metrics.Master
	clock    func() time.Time
	state    *statemachine.State
	next     uint64 // journal index the next record will get
	in       chan proposal
	done     chan pending
	effects  chan statemachine.Effect
	lastSnap uint64
	onFatal  func(error)
	lastSync time.Time // of the catalog's WAL (completer only)

	dm      *metrics.Dumps // job, dump, tape and volume metrics
	dumpLog *dumpLog       // crippled mode: the dump log, appended by the completer

	// mu guards what other goroutines read of the decider's world.
	mu        sync.Mutex
	epoch     uint64 // the master's epoch, once StartMaster is applied
	journalID string
}

// catalogSyncEvery bounds how far the catalog can fall behind the journal
// after a crash (its batches are written without fsync): start-up replays
// the difference from the journal, so this is about restart time, not safety.
const catalogSyncEvery = time.Second

func newLoop(log *slog.Logger, j *journal.Journal, cat *catalog.Catalog, met *metrics.Master, clock func() time.Time, st *statemachine.State, onFatal func(error)) *loop {
	return &loop{
		log: log, j: j, cat: cat, met: met, clock: clock, state: st, onFatal: onFatal,
		next:     j.LastIndex() + 1,
		in:       make(chan proposal, 1024),
		done:     make(chan pending, 4096),
		effects:  make(chan statemachine.Effect, 1024),
		lastSnap: st.Applied,
	}
}

// propose sends a command (or a query, cmd nil) through the loop and waits
// for the durable answer.
func (l *loop) propose(ctx context.Context, cmd statemachine.Command, then func(*statemachine.State, []statemachine.Event) any) (result, error) {
	p := proposal{cmd: cmd, then: then, reply: make(chan result, 1)}
	select {
	case l.in <- p:
	case <-ctx.Done():
		return result{}, ctx.Err()
	}
	select {
	case r := <-p.reply:
		return r, r.err
	case <-ctx.Done():
		return result{}, ctx.Err()
	}
}

func cmdName(c statemachine.Command) string {
	if c == nil {
		return "query"
	}
	return fmt.Sprintf("%T", c)[len("statemachine."):]
}

// decide is the decider goroutine. It owns l.state.
func (l *loop) decide(ctx context.Context) {
	defer close(l.done)
	for {
		var p proposal
		select {
		case p = <-l.in:
		case <-ctx.Done():
			return
		}
		l.step(p)
		// Decide the consequences (dispatch) as soon as nothing else waits:
		// one Schedule per burst of commands, not per command.
		if len(l.in) == 0 {
			l.schedule()
			l.exportState()
		}
	}
}

// step decides and applies one proposal.
func (l *loop) step(p proposal) {
	name := cmdName(p.cmd)
	if p.cmd == nil {
		l.done <- pending{reply: p.reply, val: p.then(l.state, nil), cmdName: name}
		return
	}
	now := l.clock()
	evs, err := statemachine.Decide(l.state, p.cmd, now)
	if err != nil {
		code := "error"
		if r, ok := statemachine.AsRefusal(err); ok {
			code = r.Code.String()
		}
		l.met.Refusals.WithLabelValues(name, code).Inc()
		// A refusal writes nothing, but it may rest on a decision not yet
		// durable ("already ended" after an abort in flight): it is answered
		// in order, once everything decided before it is durable.
		l.done <- pending{reply: p.reply, err: err, cmdName: name}
		return
	}
	l.met.Commands.WithLabelValues(name).Inc()
	if len(evs) == 0 {
		var val any
		if p.then != nil {
			val = p.then(l.state, nil)
		}
		l.done <- pending{reply: p.reply, val: val, cmdName: name}
		return
	}
	pd := l.commit(evs, now)
	pd.reply, pd.cmdName = p.reply, name
	if p.then != nil {
		pd.val = p.then(l.state, evs)
	}
	l.done <- pd
}

// commit journals events decided now and applies them.
func (l *loop) commit(evs []statemachine.Event, now time.Time) pending {
	payload, err := statemachine.EncodeEvents(evs)
	if err != nil {
		panic(fmt.Sprintf("master: encode events: %v", err)) // a bug: every event type encodes
	}
	idx := l.next
	l.next++
	fut := l.j.Submit(journal.Entry{Type: journal.TypeEvents, Epoch: l.state.Master.Epoch, Time: now.UnixNano(), Payload: payload})
	out := l.state.Apply(idx, evs)
	pd := pending{fut: fut, index: idx, out: out}
	if idx-l.lastSnap >= SnapshotEvery {
		snap, err := l.state.Snapshot()
		if err != nil {
			panic(fmt.Sprintf("master: snapshot: %v", err))
		}
		pd.snap = snap
		l.lastSnap = idx
	}
	return pd
}

// observe turns durable records into metrics.
func (l *loop) observe(records []statemachine.Record) {
	if l.dm == nil {
		return
	}
	for _, r := range records {
		switch r := r.(type) {
		case statemachine.Job:
			if r.State.Ended() {
				l.dm.JobsEnded.WithLabelValues(r.Kind.String(), r.State.String()).Inc()
				l.dm.JobDuration.WithLabelValues(r.Kind.String(), r.State.String()).Observe(time.Duration(r.EndedAt - r.QueuedAt).Seconds())
			}
		case statemachine.DumpRecord:
			l.dm.DumpRecords.Inc()
			l.dm.DumpBytes.Add(float64(r.Bytes))
		case statemachine.Volume:
			l.dm.VolumeLastDump.WithLabelValues(r.Server, r.Partition, r.Name).Set(float64(r.LastDump) / 1e9)
		}
	}
}

// exportState copies the state's figures into the gauges (they are safe for
// concurrent use; the state is not, so only the decider reads it).
func (l *loop) exportState() {
	l.met.Epoch.Set(float64(l.state.Master.Epoch))
	l.mu.Lock()
	l.epoch, l.journalID = l.state.Master.Epoch, l.state.Journal.ID
	l.mu.Unlock()
	for st, n := range l.state.JobCounts() {
		l.met.Jobs.WithLabelValues(st.String()).Set(float64(n))
	}
	if l.dm != nil {
		tapes := map[statemachine.TapeState]int{}
		for _, t := range l.state.Tapes {
			tapes[t.State]++
		}
		for _, st := range []statemachine.TapeState{statemachine.TapeReserved, statemachine.TapeValid, statemachine.TapeExpired} {
			l.dm.Tapes.WithLabelValues(st.String()).Set(float64(tapes[st]))
		}
	}
}

// schedule decides dispatches for queued jobs that a slave can now take,
// when anything happened since the last time that could allow one.
func (l *loop) schedule() {
	if !l.state.NeedsSchedule() {
		return
	}
	now := l.clock()
	evs, err := statemachine.Decide(l.state, statemachine.Schedule{}, now)
	if err != nil || len(evs) == 0 {
		return
	}
	pd := l.commit(evs, now)
	pd.cmdName = "Schedule"
	l.done <- pd
}

// complete is the completer goroutine: durability, catalog, replies, effects.
func (l *loop) complete(ctx context.Context) {
	var batch []pending
	for {
		pd, ok := <-l.done
		if !ok {
			return
		}
		batch = append(batch[:0], pd)
		// Take whatever else is already decided: one catalog commit for all.
	drain:
		for len(batch) < 4096 {
			select {
			case pd, ok := <-l.done:
				if !ok {
					break drain
				}
				batch = append(batch, pd)
			default:
				break drain
			}
		}
		l.completeBatch(batch)
	}
}

func (l *loop) completeBatch(batch []pending) {
	var last uint64
	for _, pd := range batch {
		if pd.fut == nil {
			continue
		}
		idx, err := pd.fut.Wait()
		if err != nil {
			// The journal has already called its Fatal handler (the process
			// ends); in tests with a non-exiting Fatal, fail every caller.
			l.failAll(batch, err)
			return
		}
		if idx != pd.index {
			panic(fmt.Sprintf("master: journal gave index %d to the record decided as %d", idx, pd.index))
		}
		last = idx
	}
	if last != 0 && l.cat != nil {
		start := time.Now()
		b := l.cat.NewBatch()
		for _, pd := range batch {
			for _, r := range pd.out.Records {
				if err := b.Put(r); err != nil {
					l.fatal(fmt.Errorf("catalog: put: %w", err))
				}
			}
			if pd.snap != nil {
				b.SetSnapshot(pd.index, pd.snap)
			}
		}
		b.SetApplied(l.state.Journal.ID, last)
		if err := b.Commit(); err != nil {
			l.fatal(fmt.Errorf("catalog: commit at %d: %w", last, err))
		}
		if time.Since(l.lastSync) >= catalogSyncEvery {
			if err := l.cat.Sync(); err != nil {
				l.fatal(err)
			}
			l.lastSync = time.Now()
		}
		l.met.CatalogSeconds.Observe(time.Since(start).Seconds())
		l.met.CatalogApplied.Set(float64(last))
		l.met.CatalogLag.Set(float64(l.j.LastIndex() - last))
	}
	if l.dumpLog != nil {
		for _, pd := range batch {
			if err := l.dumpLog.append(pd.out.Records); err != nil {
				l.fatal(err)
			}
		}
	}
	for _, pd := range batch {
		l.observe(pd.out.Records)
		if pd.reply != nil {
			pd.reply <- result{val: pd.val, index: pd.index, err: pd.err}
		}
		for _, e := range pd.out.Effects {
			select {
			case l.effects <- e:
			default:
				// The effect runner is behind; Pending re-derives owed effects
				// at start-up, and slaves re-register, so dropping is safe.
				l.log.Warn("effect queue full; effect left for the next re-derivation", "effect", fmt.Sprintf("%T", e))
			}
		}
	}
}

func (l *loop) failAll(batch []pending, err error) {
	for _, pd := range batch {
		if pd.reply != nil {
			pd.reply <- result{err: fmt.Errorf("journal: %w", err)}
		}
	}
}

// fatal ends the process on a catalog failure: the catalog is a cache, and
// start-up resumes it from the journal (crash, don't limp).
func (l *loop) fatal(err error) {
	l.log.Error("FATAL: catalog failure; restart rebuilds it from the journal", "err", err)
	l.onFatal(err)
	select {} // onFatal does not return in production; in tests it stops the world
}
