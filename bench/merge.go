package main

import (
	"fmt"
	"io"
	"path/filepath"
	"time"

	"github.com/abs-backup/abs/journal"
	"github.com/abs-backup/abs/master"
	"github.com/abs-backup/abs/statemachine"
)

// benchMerge measures abs merge of a crippled journal of benchEvents events
// (the crippled master's whole life: a slave registered, dump jobs each
// queued, dispatched, given a tape, four volumes checkpointed, ended) into
// a normal master's journal, next to the baseline of appending the same
// records to a journal unchanged (decode-free, pipelined like the merge).
// Goal: over 200k events/s.
func benchMerge(w io.Writer, dir string) error {
	fmt.Fprintf(w, "\n## merge: a crippled journal of %d events into a normal master's journal\n", benchEvents)
	crippled := filepath.Join(dir, "crippled")
	t0 := time.Now()
	recs, err := writeCrippledJournal(filepath.Join(crippled, master.JournalDir))
	if err != nil {
		return err
	}
	fmt.Fprintf(w, "wrote the crippled journal in %s: %d records, %s on disk\n", time.Since(t0).Round(time.Millisecond), recs, human(dirSize(filepath.Join(crippled, master.JournalDir))))

	into := filepath.Join(dir, "master")
	if err := newNormalJournal(filepath.Join(into, master.JournalDir)); err != nil {
		return err
	}
	rep, err := master.Merge(master.MergeOptions{From: crippled, Into: into})
	if err != nil {
		return err
	}
	rate := float64(rep.Events) / rep.Duration.Seconds()

	// Baseline: the same records appended as they are to a fresh journal.
	base, err := copyRecords(filepath.Join(crippled, master.JournalDir), filepath.Join(dir, "copy"))
	if err != nil {
		return err
	}
	baseRate := float64(rep.Events) / base.Seconds()
	fmt.Fprintf(w, "%-44s %12s %14s\n", "", "time", "events/s")
	fmt.Fprintf(w, "%-44s %12s %14.0f\n", "append the same records unchanged (baseline)", base.Round(time.Millisecond), baseRate)
	fmt.Fprintf(w, "%-44s %12s %14.0f   %.2f× baseline\n", "abs merge (verify, pair names, decide, append)", rep.Duration.Round(time.Millisecond), rate, rate/baseRate)
	fmt.Fprintf(w, "imported %d jobs, %d dumps, %d tapes; %d records written, %d events skipped\n", rep.Jobs, rep.Dumps, rep.Tapes, rep.Written, rep.Skipped)
	fmt.Fprintf(w, "goal: merge over 200k events/s: %s\n", verdict(rate > 200_000))
	again, err := master.Merge(master.MergeOptions{From: crippled, Into: into})
	if err != nil {
		return err
	}
	fmt.Fprintf(w, "a second merge: %d records read, %d written, in %s\n", again.Records, again.Written, again.Duration.Round(time.Millisecond))
	return nil
}

// writeCrippledJournal writes a crippled journal of benchEvents events.
func writeCrippledJournal(dir string) (int, error) {
	now := time.Now()
	id, err := journal.NewIdentity("bench", journal.ModeCrippled, now)
	if err != nil {
		return 0, err
	}
	j, err := journal.Create(dir, id, journal.Options{})
	if err != nil {
		return 0, err
	}
	defer j.Close()
	st := statemachine.NewState(statemachine.JournalInfo{ID: id.JournalID, Realm: id.Realm, Mode: id.Mode})
	var last *journal.Future
	events, records := 0, 0
	var seq uint64
	submit := func(cmd statemachine.Command) ([]statemachine.Event, error) {
		evs, err := statemachine.Decide(st, cmd, now)
		if err != nil {
			return nil, fmt.Errorf("%T: %w", cmd, err)
		}
		p, err := statemachine.EncodeEvents(evs)
		if err != nil {
			return nil, err
		}
		last = j.Submit(journal.Entry{Type: journal.TypeEvents, Epoch: 1, Time: now.UnixNano(), Payload: p})
		st.Apply(st.Applied+1, evs)
		events += len(evs)
		records++
		if records%50_000 == 0 {
			if _, err := last.Wait(); err != nil { // bound the queue
				return nil, err
			}
		}
		return evs, nil
	}
	slave := statemachine.Slave{Name: "tape1", Addr: "127.0.0.1:1", Drives: 2, Reaches: []statemachine.Target{{Scope: statemachine.ScopeServer, Server: "fs1"}}}
	if _, err := submit(statemachine.StartMaster{Node: "spare", Disaster: true}); err != nil {
		return 0, err
	}
	if _, err := submit(statemachine.RegisterSlave{Slave: slave}); err != nil {
		return 0, err
	}
	for n := 0; events < benchEvents; n++ {
		evs, err := submit(statemachine.QueueDump{Target: statemachine.Target{Scope: statemachine.ScopePartition, Server: "fs1", Partition: fmt.Sprintf("p%06d", n)}, Level: statemachine.LevelFull})
		if err != nil {
			return 0, err
		}
		jid := evs[0].(statemachine.JobQueued).Job.ID
		if _, err := submit(statemachine.Schedule{}); err != nil {
			return 0, err
		}
		evs, err = submit(statemachine.GenLabel{Slave: "tape1", Job: jid, Name: fmt.Sprintf("C%06d", n)})
		if err != nil {
			return 0, err
		}
		label := evs[0].(statemachine.TapeLabeled).Label
		for v := range 4 {
			seq++
			d := &statemachine.Dump{Volume: fmt.Sprintf("v%d", v), Server: "fs1", Partition: fmt.Sprintf("p%06d", n), DumpDate: now.UnixNano() + int64(n),
				Tapes: []string{label}, File: v + 1, Bytes: 1 << 20, SHA256: "00"}
			if _, err := submit(statemachine.Report{Slave: "tape1", Seq: seq, ID: jid, Volumes: v + 1, Bytes: int64(v+1) << 20, Dump: d}); err != nil {
				return 0, err
			}
		}
		seq++
		if _, err := submit(statemachine.Report{Slave: "tape1", Seq: seq, ID: jid, End: statemachine.StateDone}); err != nil {
			return 0, err
		}
	}
	_, err = last.Wait()
	return records, err
}

// newNormalJournal creates a normal master's journal holding its start.
func newNormalJournal(dir string) error {
	id, err := journal.NewIdentity("bench", journal.ModeNormal, time.Now())
	if err != nil {
		return err
	}
	j, err := journal.Create(dir, id, journal.Options{})
	if err != nil {
		return err
	}
	defer j.Close()
	p, err := statemachine.EncodeEvents([]statemachine.Event{statemachine.MasterStarted{Master: statemachine.Master{Epoch: 1, Node: "green"}}})
	if err != nil {
		return err
	}
	_, err = j.Append(journal.Entry{Type: journal.TypeEvents, Epoch: 1, Time: time.Now().UnixNano(), Payload: p})
	return err
}

// copyRecords appends every record of the journal in from to a new journal
// in to, pipelined, and returns how long it took.
func copyRecords(from, to string) (time.Duration, error) {
	r, err := journal.OpenReader(from)
	if err != nil {
		return 0, err
	}
	j, err := journal.Create(to, r.Identity(), journal.Options{})
	if err != nil {
		return 0, err
	}
	defer j.Close()
	t0 := time.Now()
	var pending []*journal.Future
	err = r.Scan(2, func(rec journal.Record) error {
		pending = append(pending, j.Submit(journal.Entry{Type: rec.Type, Epoch: rec.Epoch, Time: rec.Time, Payload: append([]byte(nil), rec.Payload...)}))
		if len(pending) >= 256 {
			for _, f := range pending {
				if _, err := f.Wait(); err != nil {
					return err
				}
			}
			pending = pending[:0]
		}
		return nil
	})
	for _, f := range pending {
		if _, werr := f.Wait(); werr != nil && err == nil {
			err = werr
		}
	}
	return time.Since(t0), err
}
