package slave

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"path/filepath"
	"sort"
	"sync"
	"time"

	"github.com/vmihailenco/msgpack/v5"

	"github.com/abs-backup/abs/journal"
)

// The slave is crash-only too: its own journal (the journal package, mode
// "slave") records every order it accepted, every report it owes the master
// and every acknowledgement, before it acts or answers. On start it replays
// the journal: orders not ended are reported failed (a dump interrupted by a
// crash is not resumed; the volumes checkpointed before it stay recorded),
// reports not acknowledged are sent again, in sequence order, to whatever
// master the config names now.

// ModeSlave is the journal mode of a slave's journal.
const ModeSlave = journal.ModeSlave

// Slave journal record payloads: one msgpack-encoded slaveEvent per record.
type slaveEvent struct {
	Kind  string     `msgpack:"k"` // accepted | report | acked | epoch (and ended, from earlier versions)
	Job   string     `msgpack:"j,omitempty"`
	Order *DumpOrder `msgpack:"o,omitempty"`
	// Restore is set instead of Order for a restore order.
	Restore *RestoreOrder `msgpack:"ro,omitempty"`
	Report  *report       `msgpack:"r,omitempty"`
	Seq     uint64        `msgpack:"s,omitempty"`
	Epoch   uint64        `msgpack:"e,omitempty"`
	// JournalID names the master journal an epoch is of (epochs count per
	// journal: a crippled master's start at 1 again).
	JournalID string `msgpack:"jid,omitempty"`
}

// report is one report owed to the master, numbered by the slave's sequence.
type report struct {
	Seq     uint64      `msgpack:"s"`
	Kind    string      `msgpack:"k"` // checkpoint | status | done
	Job     string      `msgpack:"j"`
	Dump    *DumpRecord `msgpack:"d,omitempty"`
	Volumes int         `msgpack:"v,omitempty"`
	Bytes   int64       `msgpack:"b,omitempty"`
	Note    string      `msgpack:"n,omitempty"` // status note, or why a job ended
	State   string      `msgpack:"st,omitempty"`
}

// agent is the slave's durable memory: orders and owed reports.
type agent struct {
	log *slog.Logger
	j   *journal.Journal

	mu       sync.Mutex
	orders   map[string]*DumpOrder     // accepted, and not ended or still owing reports
	restores map[string]*RestoreOrder  // accepted, and not ended or still owing reports
	ended    map[string]bool           // orders ended, kept while they owe reports
	written  map[string]map[string]int // by job: dump files per tape label the master acknowledged
	pending  []*report                 // not acknowledged, by seq
	seq      uint64
	epochs   map[string]uint64 // highest epoch accepted, by master journal ID
	wake     chan struct{}     // a report was queued
	// owed, if set, is told how many reports are not yet acknowledged.
	owed func(n int)
}

// openAgent opens (or creates) the slave's journal in dataDir and replays it.
func openAgent(log *slog.Logger, dataDir, realm string) (*agent, error) {
	dir := filepath.Join(dataDir, "journal")
	j, err := journal.Open(dir, journal.Options{})
	if errors.Is(err, journal.ErrNotExist) {
		id, ierr := journal.NewIdentity(realm, ModeSlave, time.Now())
		if ierr != nil {
			return nil, ierr
		}
		j, err = journal.Create(dir, id, journal.Options{})
	}
	if err != nil {
		return nil, err
	}
	if rep := j.Repaired(); rep != nil {
		log.Warn("slave journal tail repaired", "file", rep.File, "offset", rep.Offset, "cut_bytes", rep.CutBytes, "copy", rep.Broken)
	}
	if id := j.Identity(); id.Mode != ModeSlave || id.Realm != realm {
		j.Close()
		return nil, fmt.Errorf("slave: the journal in %s is a %s journal of realm %q, not a slave journal of %q", dir, id.Mode, id.Realm, realm)
	}
	a := &agent{log: log, j: j, orders: map[string]*DumpOrder{}, restores: map[string]*RestoreOrder{}, ended: map[string]bool{},
		written: map[string]map[string]int{}, epochs: map[string]uint64{}, wake: make(chan struct{}, 1)}
	r, err := journal.OpenReader(dir)
	if err != nil {
		j.Close()
		return nil, err
	}
	acked := map[uint64]bool{}
	var reports []*report
	err = r.Scan(2, func(rec journal.Record) error {
		var ev slaveEvent
		if err := msgpack.Unmarshal(rec.Payload, &ev); err != nil {
			return fmt.Errorf("slave journal record %d: %w", rec.Index, err)
		}
		switch ev.Kind {
		case "accepted":
			if ev.Restore != nil {
				a.restores[ev.Job] = ev.Restore
			} else {
				a.orders[ev.Job] = ev.Order
			}
		case "ended": // written by earlier versions beside each "done" report
			a.ended[ev.Job] = true
		case "report":
			reports = append(reports, ev.Report)
			a.seq = max(a.seq, ev.Report.Seq)
			if ev.Report.Kind == "done" { // a job's end report ends its order
				a.ended[ev.Report.Job] = true
			}
		case "acked":
			acked[ev.Seq] = true
		case "epoch":
			a.epochs[ev.JournalID] = max(a.epochs[ev.JournalID], ev.Epoch)
		}
		return nil
	})
	if err != nil {
		j.Close()
		return nil, err
	}
	for _, rp := range reports {
		if !acked[rp.Seq] {
			a.pending = append(a.pending, rp)
		} else {
			a.wrote(rp)
		}
	}
	a.forget()
	return a, nil
}

func (a *agent) append(ev slaveEvent) error {
	var buf bytes.Buffer
	enc := msgpack.NewEncoder(&buf)
	if err := enc.Encode(&ev); err != nil {
		return err
	}
	_, err := a.j.Append(journal.Entry{Type: journal.TypeEvents, Time: time.Now().UnixNano(), Payload: buf.Bytes()})
	return err
}

// accept records an order durably; it reports whether it was new.
func (a *agent) accept(o DumpOrder) (bool, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if _, ok := a.orders[o.Job]; ok {
		return false, nil
	}
	if a.ended[o.Job] {
		return false, nil // ended here, its end still owed: not run twice
	}
	if err := a.append(slaveEvent{Kind: "accepted", Job: o.Job, Order: &o}); err != nil {
		return false, err
	}
	a.orders[o.Job] = &o
	return true, nil
}

// acceptRestore records a restore order durably; it reports whether it was new.
func (a *agent) acceptRestore(o RestoreOrder) (bool, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if _, ok := a.restores[o.Job]; ok || a.ended[o.Job] {
		return false, nil
	}
	if err := a.append(slaveEvent{Kind: "accepted", Job: o.Job, Restore: &o}); err != nil {
		return false, err
	}
	a.restores[o.Job] = &o
	return true, nil
}

// acceptEpoch persists a higher epoch of a master journal before the slave
// obeys it; a lower one (a stale copy of a moved master) is refused.
func (a *agent) acceptEpoch(journalID string, epoch uint64) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	switch seen := a.epochs[journalID]; {
	case epoch < seen:
		return fmt.Errorf("master epoch %d of journal %s is older than epoch %d this slave already obeyed: that master is a stale copy", epoch, journalID, seen)
	case epoch == seen:
		return nil
	}
	if err := a.append(slaveEvent{Kind: "epoch", Epoch: epoch, JournalID: journalID}); err != nil {
		return err
	}
	a.epochs[journalID] = epoch
	return nil
}

// epochsSeen lists the highest epoch accepted of every master journal.
func (a *agent) epochsSeen() map[string]uint64 {
	a.mu.Lock()
	defer a.mu.Unlock()
	return maps.Clone(a.epochs)
}

// queue records a report durably and wakes the sender. A "done" report also
// ends the order.
func (a *agent) queue(rp report) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.seq++
	rp.Seq = a.seq
	if err := a.append(slaveEvent{Kind: "report", Report: &rp}); err != nil {
		return err
	}
	if rp.Kind == "done" { // the same record ends the order (see the replay)
		a.ended[rp.Job] = true
	}
	a.pending = append(a.pending, &rp)
	if a.owed != nil {
		a.owed(len(a.pending))
	}
	select {
	case a.wake <- struct{}{}:
	default:
	}
	return nil
}

// wakeSender makes the sender try again now (the slave just registered).
func (a *agent) wakeSender() {
	select {
	case a.wake <- struct{}{}:
	default:
	}
}

// next returns the oldest unacknowledged report, or nil.
func (a *agent) next() *report {
	a.mu.Lock()
	defer a.mu.Unlock()
	if len(a.pending) == 0 {
		return nil
	}
	return a.pending[0]
}

// acked records the master's acknowledgement of a report.
func (a *agent) acked(seq uint64) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	if err := a.append(slaveEvent{Kind: "acked", Seq: seq}); err != nil {
		return err
	}
	if len(a.pending) > 0 && a.pending[0].Seq == seq {
		rp := a.pending[0]
		a.pending = a.pending[1:]
		a.wrote(rp)
		if a.ended[rp.Job] {
			a.forget()
		}
	}
	if a.owed != nil {
		a.owed(len(a.pending))
	}
	return nil
}

// wrote counts the tape files of an acknowledged checkpoint. Called with
// a.mu held.
func (a *agent) wrote(rp *report) {
	if rp.Dump == nil {
		return
	}
	w := a.written[rp.Job]
	if w == nil {
		w = map[string]int{}
		a.written[rp.Job] = w
	}
	for _, label := range rp.Dump.Tapes {
		w[label]++
	}
}

// forget drops the orders that ended and owe no more reports. Called with
// a.mu held.
func (a *agent) forget() {
	owing := map[string]bool{}
	for _, rp := range a.pending {
		owing[rp.Job] = true
	}
	for job := range a.ended {
		if !owing[job] {
			delete(a.orders, job)
			delete(a.restores, job)
			delete(a.ended, job)
			delete(a.written, job)
		}
	}
}

// inProgress lists the orders not ended, in ID order.
func (a *agent) inProgress() []string {
	a.mu.Lock()
	defer a.mu.Unlock()
	var jobs []string
	for id := range a.orders {
		if !a.ended[id] {
			jobs = append(jobs, id)
		}
	}
	for id := range a.restores {
		if !a.ended[id] {
			jobs = append(jobs, id)
		}
	}
	sort.Strings(jobs)
	return jobs
}

// agentJob is an order the slave has in progress or still owes reports
// for, with the dump files per tape label of its acknowledged checkpoints
// (the unacknowledged ones a master that adopts the job will hear of).
type agentJob struct {
	order   *DumpOrder
	restore *RestoreOrder
	written map[string]int
}

// jobs lists the orders in progress or owing reports, by job ID.
func (a *agent) jobs() map[string]agentJob {
	a.mu.Lock()
	defer a.mu.Unlock()
	out := map[string]agentJob{}
	for id, o := range a.orders {
		out[id] = agentJob{order: o, written: maps.Clone(a.written[id])}
	}
	for id, o := range a.restores {
		out[id] = agentJob{restore: o}
	}
	return out
}

// send delivers reports in order through deliver until ctx ends, retrying
// with backoff; deliver returns once the master acknowledged.
func (a *agent) send(ctx context.Context, deliver func(context.Context, *report) error) {
	delay := 100 * time.Millisecond
	for {
		rp := a.next()
		if rp == nil {
			select {
			case <-ctx.Done():
				return
			case <-a.wake:
				continue
			}
		}
		if err := deliver(ctx, rp); err != nil {
			if ctx.Err() != nil {
				return
			}
			a.log.Debug("report not delivered; retrying", "seq", rp.Seq, "kind", rp.Kind, "job", rp.Job, "err", err)
			select {
			case <-ctx.Done():
				return
			case <-time.After(delay):
			}
			delay = min(delay*2, 5*time.Second)
			continue
		}
		delay = 100 * time.Millisecond
		if err := a.acked(rp.Seq); err != nil {
			a.log.Error("FATAL: slave journal", "err", err)
			return
		}
	}
}
