package slave

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
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
	Kind  string     `msgpack:"k"` // accepted | report | acked | ended | epoch
	Job   string     `msgpack:"j,omitempty"`
	Order *DumpOrder `msgpack:"o,omitempty"`
	// Restore is set instead of Order for a restore order.
	Restore *RestoreOrder `msgpack:"ro,omitempty"`
	Report  *report       `msgpack:"r,omitempty"`
	Seq     uint64        `msgpack:"s,omitempty"`
	Epoch   uint64        `msgpack:"e,omitempty"`
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
	orders   map[string]*DumpOrder    // accepted, not ended
	restores map[string]*RestoreOrder // accepted, not ended
	pending  []*report                // not acknowledged, by seq
	seq      uint64
	epoch    uint64
	wake     chan struct{} // a report was queued
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
	a := &agent{log: log, j: j, orders: map[string]*DumpOrder{}, restores: map[string]*RestoreOrder{}, wake: make(chan struct{}, 1)}
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
		case "ended":
			delete(a.orders, ev.Job)
			delete(a.restores, ev.Job)
		case "report":
			reports = append(reports, ev.Report)
			a.seq = max(a.seq, ev.Report.Seq)
		case "acked":
			acked[ev.Seq] = true
		case "epoch":
			a.epoch = max(a.epoch, ev.Epoch)
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
		}
	}
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
	if _, ok := a.restores[o.Job]; ok {
		return false, nil
	}
	if err := a.append(slaveEvent{Kind: "accepted", Job: o.Job, Restore: &o}); err != nil {
		return false, err
	}
	a.restores[o.Job] = &o
	return true, nil
}

// acceptEpoch persists a higher master epoch before the slave obeys it; a
// lower one is refused.
func (a *agent) acceptEpoch(epoch uint64) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	switch {
	case epoch < a.epoch:
		return fmt.Errorf("master epoch %d is older than epoch %d this slave already obeys", epoch, a.epoch)
	case epoch == a.epoch:
		return nil
	}
	if err := a.append(slaveEvent{Kind: "epoch", Epoch: epoch}); err != nil {
		return err
	}
	a.epoch = epoch
	return nil
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
	if rp.Kind == "done" {
		if err := a.append(slaveEvent{Kind: "ended", Job: rp.Job}); err != nil {
			return err
		}
		delete(a.orders, rp.Job)
		delete(a.restores, rp.Job)
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
		a.pending = a.pending[1:]
	}
	if a.owed != nil {
		a.owed(len(a.pending))
	}
	return nil
}

// inProgress lists the orders not ended, and the last report sequence.
func (a *agent) inProgress() ([]string, uint64, uint64) {
	a.mu.Lock()
	defer a.mu.Unlock()
	var jobs []string
	for id := range a.orders {
		jobs = append(jobs, id)
	}
	for id := range a.restores {
		jobs = append(jobs, id)
	}
	sort.Strings(jobs)
	return jobs, a.seq, a.epoch
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
