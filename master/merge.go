package master

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime/debug"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/abs-backup/abs/journal"
	"github.com/abs-backup/abs/master/catalog"
	"github.com/abs-backup/abs/statemachine"
)

// MergeOptions says what abs merge merges.
type MergeOptions struct {
	From string // a crippled master's data directory (read only)
	Into string // the normal master's data directory (stopped)
	// Names pairs crippled tape labels with their cartridges' external
	// names; it overrides the name the slave gave when it asked for the
	// label.
	Names map[string]string
	// Ask, if set, asks for the name of a label that has none (on a
	// terminal). Without it, missing names are a *MissingNamesError and
	// nothing is written.
	Ask func(label string, job statemachine.JobID) (string, error)
}

// MergeReport says what a merge did.
type MergeReport struct {
	Origin        journal.Identity
	AlreadyMerged uint64 // crippled index merged by earlier merges
	LastIndex     uint64 // the crippled journal's last valid index
	Records       uint64 // crippled records read this time
	Events        uint64 // their events
	Written       uint64 // records appended to the main journal
	Jobs          int    // jobs imported
	Dumps         int    // dump records imported
	Tapes         int    // tape labels imported
	Skipped       uint64 // events not imported (the crippled master's own, or known here)
	TailDamage    *journal.RepairReport
	Duration      time.Duration
}

// MissingNamesError lists crippled labels nobody named.
type MissingNamesError struct{ Labels []string }

func (e *MissingNamesError) Error() string {
	return fmt.Sprintf("no external name for %d tape label(s) written in crippled mode: %s (give each with --tape-name LABEL=NAME, or run abs merge on a terminal to be asked); nothing was written",
		len(e.Labels), strings.Join(e.Labels, ", "))
}

// mergeKillAfterEnv is a test hook: after that many records are durable,
// the merge SIGKILLs itself (a crash at a chosen point).
const mergeKillAfterEnv = "ABS_TEST_MERGE_KILL_AFTER"

// Merge replays a crippled journal into a stopped normal master's journal
// (statemachine.MergeRecord says what is imported). It reads the crippled
// journal read-only and takes the main journal's lock: a running master
// makes it fail with *journal.LockedError. Damage in the crippled journal
// other than a torn tail is refused before anything is written. The main
// catalog is not touched: the master brings it up to date from the journal
// at its next start.
func Merge(opts MergeOptions) (MergeReport, error) {
	start := time.Now()
	var rep MergeReport
	cr, err := journal.OpenReader(filepath.Join(opts.From, JournalDir))
	if errors.Is(err, journal.ErrNotExist) {
		return rep, fmt.Errorf("merge: no journal in %s (--from names a crippled master's data directory)", opts.From)
	}
	if err != nil {
		return rep, err
	}
	rep.Origin, rep.LastIndex, rep.TailDamage = cr.Identity(), cr.LastIndex(), cr.TailDamage()
	if rep.Origin.Mode != journal.ModeCrippled {
		return rep, fmt.Errorf("merge: the journal in %s is a %s journal, not a crippled one: only a crippled master's journal is merged", opts.From, rep.Origin.Mode)
	}
	if _, err := cr.Verify(); err != nil {
		return rep, fmt.Errorf("merge: the crippled journal is damaged, nothing was written: %w", err)
	}
	jdir := filepath.Join(opts.Into, JournalDir)
	if _, err := os.Stat(jdir); err != nil {
		return rep, fmt.Errorf("merge: no master journal in %s (--into names the normal master's data directory): %w", opts.Into, err)
	}
	j, err := journal.Open(jdir, journal.Options{})
	var locked *journal.LockedError
	if errors.As(err, &locked) {
		return rep, fmt.Errorf("merge: %w: stop the normal master first (merge runs offline); nothing was written", err)
	}
	if err != nil {
		return rep, err
	}
	defer j.Close()
	id := j.Identity()
	switch {
	case id.Mode != journal.ModeNormal:
		return rep, fmt.Errorf("merge: the journal in %s is a %s journal: merge into a normal master's data directory", opts.Into, id.Mode)
	case id.Realm != rep.Origin.Realm:
		return rep, fmt.Errorf("merge: the crippled journal belongs to realm %q, the master's to realm %q: nothing was written", rep.Origin.Realm, id.Realm)
	}
	st, look, closeLook, err := mergeState(opts.Into)
	if err != nil {
		return rep, err
	}
	defer closeLook()
	origin := rep.Origin.JournalID
	rep.AlreadyMerged = st.MergedUpTo(origin)
	names, err := mergeNames(cr, st, rep.AlreadyMerged, opts)
	if err != nil {
		return rep, err
	}

	// An offline tool with a large state: collect garbage less often.
	defer debug.SetGCPercent(debug.SetGCPercent(400))
	lookup := look.lookup()
	killAfter, _ := strconv.ParseUint(os.Getenv(mergeKillAfterEnv), 10, 64)
	next := j.LastIndex() + 1
	// Appends are pipelined: the journal's writer commits what queued up
	// while the loop decides the next records; the backlog is bounded by
	// waiting for the oldest once maxBacklog are in flight.
	const maxBacklog = 16384
	var pending []*journal.Future
	wait := func(keep int) error {
		for len(pending) > keep {
			if _, err := pending[0].Wait(); err != nil {
				return err
			}
			pending = pending[1:]
		}
		if killAfter > 0 && rep.Written >= killAfter {
			syscall.Kill(os.Getpid(), syscall.SIGKILL)
			select {}
		}
		return nil
	}
	// Reading and decoding run in a goroutine of their own, ahead of the
	// decisions: a merge uses two cores.
	type decoded struct {
		index   uint64
		time    int64
		payload []byte
		evs     []statemachine.Event
	}
	recs := make(chan decoded, 1024)
	stop := make(chan struct{})
	defer close(stop)
	var readErr error
	go func() {
		defer close(recs)
		readErr = cr.Scan(max(rep.AlreadyMerged+1, 2), func(rec journal.Record) error { // 1 is the identity record
			if rec.Type != journal.TypeEvents {
				return fmt.Errorf("crippled journal record %d has type %d where events were expected", rec.Index, rec.Type)
			}
			evs, err := statemachine.DecodeEvents(rec.Payload)
			if err != nil {
				return fmt.Errorf("crippled journal record %d: %w", rec.Index, err)
			}
			select {
			case recs <- decoded{rec.Index, rec.Time, slices.Clone(rec.Payload), evs}:
				return nil
			case <-stop:
				return errStopScan
			}
		})
	}()
	for rec := range recs {
		rep.Records++
		rep.Events += uint64(len(rec.evs))
		out, verbatim := statemachine.MergeRecord(st, origin, rec.index, rec.evs, names, lookup)
		imported := out[:len(out)-1]
		rep.Skipped += uint64(len(rec.evs) - len(imported))
		if len(imported) == 0 && rec.index != rep.LastIndex {
			continue // nothing to import; the next marker covers it
		}
		for _, e := range imported {
			switch e := e.(type) {
			case statemachine.JobQueued:
				rep.Jobs++
			case statemachine.JobAdopted:
				rep.Jobs++
				rep.Tapes += len(e.Tapes)
			case statemachine.TapeLabeled:
				rep.Tapes++
			case statemachine.DumpRecorded:
				rep.Dumps++
				look.dumps[dumpKey(e.Dump)] = true
			}
		}
		var payload []byte
		if verbatim {
			payload, err = statemachine.AppendMerged(rec.payload, out[len(out)-1].(statemachine.Merged))
		} else {
			payload, err = statemachine.EncodeEvents(out)
		}
		if err != nil {
			return rep, err
		}
		pending = append(pending, j.Submit(journal.Entry{Type: journal.TypeEvents, Epoch: st.Master.Epoch, Time: rec.time, Payload: payload}))
		st.Apply(next, out)
		next++
		rep.Written++
		keep := maxBacklog
		if killAfter > 0 && rep.Written >= killAfter {
			keep = 0
		}
		if err = wait(keep); err != nil {
			return rep, err
		}
	}
	err = scanDone(readErr)
	if err == nil {
		err = wait(0)
	}
	if err != nil {
		return rep, err
	}
	rep.Duration = time.Since(start)
	return rep, nil
}

// mergeLook answers MergeRecord's questions from the main catalog (read
// only: every job and dump up to its applied index), the journal's tail
// past it, and what this merge imported.
type mergeLook struct {
	cat   *catalog.Catalog // nil when the master has no catalog yet
	dumps map[string]bool  // dumpKey of dumps in the journal past the catalog, and imported
}

// dumpKey names a dump record's tape file (statemachine.SameDump).
func dumpKey(d statemachine.Dump) string {
	return fmt.Sprintf("%s/%s/%s/%d/%d/%s", d.Server, d.Partition, d.Volume, d.DumpDate, d.File, strings.Join(d.Tapes, ","))
}

func (l *mergeLook) lookup() statemachine.MergeLookup {
	return statemachine.MergeLookup{
		KnowsJob: func(id statemachine.JobID) bool {
			if l.cat == nil {
				return false
			}
			_, found, err := l.cat.Job(id)
			return err == nil && found
		},
		KnowsDump: func(d statemachine.Dump) bool {
			if l.dumps[dumpKey(d)] {
				return true
			}
			found := false
			if l.cat != nil {
				l.cat.Dumps(d.Server, d.Partition, d.Volume, func(r statemachine.DumpRecord) bool {
					found = statemachine.SameDump(r.Dump, d)
					return !found
				})
			}
			return found
		},
	}
}

// mergeState recovers the main journal's state: from the catalog's latest
// snapshot (read only) and the journal after it, or from the whole journal.
func mergeState(dataDir string) (*statemachine.State, *mergeLook, func(), error) {
	r, err := journal.OpenReader(filepath.Join(dataDir, JournalDir))
	if err != nil {
		return nil, nil, nil, err
	}
	info := journalInfo(r.Identity())
	st := statemachine.NewState(info)
	ml := &mergeLook{dumps: map[string]bool{}}
	closeFn := func() {}
	applied := uint64(0)
	if cat, err := catalog.Open(filepath.Join(dataDir, CatalogDir), catalog.Options{ReadOnly: true}); err == nil {
		closeFn = func() { cat.Close() }
		meta, merr := cat.Meta()
		if merr == nil && meta.JournalID == info.ID && meta.Applied <= r.LastIndex() {
			ml.cat, applied = cat, meta.Applied
			if idx, snap, serr := cat.LatestSnapshot(); serr == nil && snap != nil && idx <= r.LastIndex() {
				if restored, rerr := statemachine.RestoreSnapshot(snap); rerr == nil && restored.Journal.ID == info.ID && restored.Applied == idx {
					st = restored
				}
			}
		}
	}
	err = replay(r, st, st.Applied+1, 0, func(index uint64, out statemachine.Output) error {
		if index <= applied {
			return nil
		}
		for _, rec := range out.Records {
			if d, ok := rec.(statemachine.DumpRecord); ok {
				ml.dumps[dumpKey(d.Dump)] = true
			}
		}
		return nil
	})
	if err := scanDone(err); err != nil {
		closeFn()
		return nil, nil, nil, err
	}
	return st, ml, closeFn, nil
}

// mergeNames pairs every crippled label the merge will import with its
// external name.
func mergeNames(cr *journal.Reader, st *statemachine.State, from uint64, opts MergeOptions) (map[string]string, error) {
	type label struct {
		name string
		job  statemachine.JobID
	}
	labels := map[string]label{}
	var order []string
	labeled := []byte{0x92, byte(statemachine.EvTapeLabeled)} // an event [type, body] of type TapeLabeled, as EncodeEvents writes it
	err := cr.Scan(max(from+1, 2), func(rec journal.Record) error {
		if !bytes.Contains(rec.Payload, labeled) {
			return nil
		}
		evs, err := statemachine.DecodeEvents(rec.Payload)
		if err != nil {
			return fmt.Errorf("crippled journal record %d: %w", rec.Index, err)
		}
		for _, e := range evs {
			if tl, ok := e.(statemachine.TapeLabeled); ok {
				if _, known := st.Tapes[tl.Label]; !known {
					if _, seen := labels[tl.Label]; !seen {
						order = append(order, tl.Label)
					}
					labels[tl.Label] = label{tl.Name, tl.Job}
				}
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	names := map[string]string{}
	for l, n := range opts.Names {
		if _, ok := labels[l]; !ok {
			return nil, fmt.Errorf("--tape-name %s=%s: the crippled journal wrote no label %s that is not merged yet (labels: %s)", l, n, l, strings.Join(order, ", "))
		}
		names[l] = n
	}
	var missing []string
	for _, l := range order {
		if names[l] != "" || labels[l].name != "" {
			continue
		}
		if opts.Ask != nil {
			n, err := opts.Ask(l, labels[l].job)
			if err != nil {
				return nil, err
			}
			if n = strings.TrimSpace(n); n != "" {
				names[l] = n
				continue
			}
		}
		missing = append(missing, l)
	}
	if len(missing) > 0 {
		return nil, &MissingNamesError{Labels: missing}
	}
	return names, nil
}
