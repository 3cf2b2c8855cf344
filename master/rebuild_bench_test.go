package master

import (
	"path/filepath"
	"testing"
	"time"

	"github.com/abs-backup/abs/journal"
	"github.com/abs-backup/abs/statemachine"
)

// writeJournal creates a journal in dir holding n one-event records (jobs
// queued and aborted).
func writeJournal(tb testing.TB, dir string, n int) *statemachine.State {
	id, err := journal.NewIdentity("bench", "normal", time.Unix(1_700_000_000, 0))
	if err != nil {
		tb.Fatal(err)
	}
	j, err := journal.Create(dir, id, journal.Options{})
	if err != nil {
		tb.Fatal(err)
	}
	j.Close()
	st := statemachine.NewState(journalInfo(id))
	appendJobs(tb, dir, st, n)
	return st
}

func BenchmarkRebuild(b *testing.B) {
	dir := b.TempDir()
	const n = 200_000
	writeJournal(b, filepath.Join(dir, JournalDir), n)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		rep, err := Rebuild(dir)
		if err != nil {
			b.Fatal(err)
		}
		b.ReportMetric(float64(rep.Records)/rep.Duration.Seconds(), "events/s")
	}
}
