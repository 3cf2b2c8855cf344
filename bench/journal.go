package main

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/abs-backup/abs/journal"
	"github.com/tidwall/wal"
)

// Journal bench parameters.
const (
	jbPayload    = 100             // bytes per event payload
	jbRunFor     = 2 * time.Second // per concurrency level, ours alone
	jbRounds     = 8               // ours and raw wal alternate this many times per level
	jbBigRecords = 1_000_000       // records in the journal opened and scanned
	jbGoalRatio  = 0.8             // ours / raw wal at the same batch size
	jbGoalRate   = 100_000         // durable appends/s at 128 proposers
	jbGoalOpen   = 500 * time.Millisecond
	jbGoalScan   = 2_000_000 // records/s
)

// benchJournal measures the journal package: durable append throughput of
// group commit at 1, 16 and 128 concurrent proposers, each next to raw
// wal.WriteBatch (fsync on) writing the same number of records in batches of
// the size our group commit reached; then Open (full verification) of a
// 1M-record journal and Reader.Scan over it. It works in a temporary
// directory under dir, removed afterwards.
func benchJournal(w io.Writer, dir string) error {
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return err
	}
	tmp, err := os.MkdirTemp(dir, "journal-bench-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	id, err := journal.NewIdentity("bench", journal.ModeNormal, time.Now())
	if err != nil {
		return err
	}

	fmt.Fprintf(w, "\n## journal: durable appends (%d-byte payloads, %s per level), group commit vs raw wal\n", jbPayload, jbRunFor)
	fmt.Fprintf(w, "(ours and the baseline alternate in %d rounds, so that disk noise from elsewhere hits both alike)\n", jbRounds)
	fmt.Fprintf(w, "%-10s %14s %12s %14s %10s\n", "proposers", "ours appends/s", "mean batch", "raw wal rec/s", "ratio")
	for _, c := range []int{1, 16, 128} {
		res, err := jbCompare(filepath.Join(tmp, fmt.Sprintf("level-%d", c)), id, c)
		if err != nil {
			return err
		}
		ratio := res.ours / res.raw
		goals := fmt.Sprintf("goal ratio >= %.1f: %s", jbGoalRatio, verdict(ratio >= jbGoalRatio))
		if c == 128 {
			goals += fmt.Sprintf("; goal > %d/s: %s", jbGoalRate, verdict(res.ours > jbGoalRate))
		}
		fmt.Fprintf(w, "%-10d %14.0f %12.1f %14.0f %9.2f×   %s\n", c, res.ours, res.batch, res.raw, ratio, goals)
	}

	// A 1M-record journal: Open verifies every record and the chain.
	big := filepath.Join(tmp, "big")
	t0 := time.Now()
	if err := jbBuild(big, id, jbBigRecords); err != nil {
		return err
	}
	fmt.Fprintf(w, "\nwrote a %d-record journal in %s (%s)\n", jbBigRecords, time.Since(t0).Round(time.Millisecond), human(dirSize(big)))
	var open time.Duration
	for range 3 { // best of 3: the first may still fault pages in
		t0 = time.Now()
		j, err := journal.Open(big, journal.Options{})
		if err != nil {
			return err
		}
		d := time.Since(t0)
		if err := j.Close(); err != nil {
			return err
		}
		if open == 0 || d < open {
			open = d
		}
	}
	fmt.Fprintf(w, "%-44s %12s   %.1fM records/s   goal < %s: %s\n", "Open (verify whole chain + tail check)", open.Round(time.Microsecond),
		jbBigRecords/open.Seconds()/1e6, jbGoalOpen, verdict(open < jbGoalOpen))

	r, err := journal.OpenReader(big)
	if err != nil {
		return err
	}
	var scanRate float64
	for range 3 {
		t0 = time.Now()
		n := 0
		if err := r.Scan(1, func(journal.Record) error { n++; return nil }); err != nil {
			return err
		}
		if n != jbBigRecords {
			return fmt.Errorf("scan saw %d records, want %d", n, jbBigRecords)
		}
		scanRate = max(scanRate, float64(n)/time.Since(t0).Seconds())
	}
	fmt.Fprintf(w, "%-44s %12.0f   records/s   goal > %d: %s\n", "Reader.Scan (verify + deliver, best of 3)", scanRate, jbGoalScan, verdict(scanRate > jbGoalScan))
	return nil
}

// jbObserver counts group commits.
type jbObserver struct{ records, batches atomic.Int64 }

func (o *jbObserver) Appended(records, _ int, _, _ time.Duration) {
	o.records.Add(int64(records))
	o.batches.Add(1)
}
func (o *jbObserver) Size(int64, uint64) {}

type jbResult struct {
	ours, raw float64 // records/s
	batch     float64 // mean records per group commit
}

// jbCompare alternates, jbRounds times: c proposers appending to our
// journal for jbRunFor/jbRounds, then raw wal writing as many records in
// batches of the mean group size that round reached. It returns the overall
// rates.
func jbCompare(dir string, id journal.Identity, c int) (jbResult, error) {
	var obs jbObserver
	j, err := journal.Create(filepath.Join(dir, "ours"), id, journal.Options{Observer: &obs})
	if err != nil {
		return jbResult{}, err
	}
	defer j.Close()
	l, err := wal.Open(filepath.Join(dir, "raw"), &wal.Options{NoSync: false, SegmentSize: journal.DefaultSegmentSize})
	if err != nil {
		return jbResult{}, err
	}
	defer l.Close()
	var (
		oursN, rawN      int
		oursT, rawT      time.Duration
		records, batches int64
		rawNext          = uint64(1)
	)
	for range jbRounds {
		obs.records.Store(0)
		obs.batches.Store(0)
		n, d, err := jbAppendFor(j, c, jbRunFor/jbRounds)
		if err != nil {
			return jbResult{}, err
		}
		oursN += n
		oursT += d
		r, b := obs.records.Load(), obs.batches.Load()
		records += r
		batches += b
		size := max(1, int(float64(r)/float64(b)+0.5))
		d, err = jbRawWAL(l, &rawNext, n, size)
		if err != nil {
			return jbResult{}, err
		}
		rawN += n
		rawT += d
	}
	return jbResult{
		ours:  float64(oursN) / oursT.Seconds(),
		raw:   float64(rawN) / rawT.Seconds(),
		batch: float64(records) / float64(batches),
	}, nil
}

// jbAppendFor runs c proposers, each appending in a loop, for about d; it
// returns how many appends were durable and the time taken.
func jbAppendFor(j *journal.Journal, c int, d time.Duration) (int, time.Duration, error) {
	payload := make([]byte, jbPayload)
	var (
		wg    sync.WaitGroup
		total atomic.Int64
		stop  atomic.Bool
		ferr  atomic.Pointer[error]
	)
	start := time.Now()
	for range c {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for !stop.Load() {
				if _, err := j.Append(journal.Entry{Type: journal.TypeEvents, Epoch: 1, Time: time.Now().UnixNano(), Payload: payload}); err != nil {
					ferr.Store(&err)
					return
				}
				total.Add(1)
			}
		}()
	}
	time.Sleep(d)
	stop.Store(true)
	wg.Wait()
	elapsed := time.Since(start)
	if e := ferr.Load(); e != nil {
		return 0, 0, *e
	}
	return int(total.Load()), elapsed, nil
}

// jbRawWAL writes n records of jbPayload bytes with bare wal (fsync inside
// every WriteBatch, same segment size) in batches of size, from one
// goroutine, and returns the time taken.
func jbRawWAL(l *wal.Log, next *uint64, n, size int) (time.Duration, error) {
	payload := make([]byte, jbPayload)
	var b wal.Batch
	start := time.Now()
	for left := n; left > 0; {
		b.Clear()
		for k := 0; k < size && left > 0; k++ {
			b.Write(*next, payload)
			*next++
			left--
		}
		if err := l.WriteBatch(&b); err != nil {
			return 0, err
		}
	}
	return time.Since(start), nil
}

// jbBuild writes a journal of n records (identity included), submitting in
// bulk so that group commits are large.
func jbBuild(dir string, id journal.Identity, n int) error {
	j, err := journal.Create(dir, id, journal.Options{})
	if err != nil {
		return err
	}
	payload := make([]byte, jbPayload)
	var last *journal.Future
	for i := 2; i <= n; i++ {
		last = j.Submit(journal.Entry{Type: journal.TypeEvents, Epoch: 1, Time: int64(i), Payload: payload})
		if i%50_000 == 0 { // bound the queue
			if _, err := last.Wait(); err != nil {
				return err
			}
		}
	}
	if _, err := last.Wait(); err != nil {
		return err
	}
	return j.Close()
}
