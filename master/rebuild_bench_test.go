package master

import (
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/abs-backup/abs/journal"
	"github.com/abs-backup/abs/statemachine"
)

// writeJournal writes n one-event records (jobs queued and aborted).
func writeJournal(tb testing.TB, dir string, n int) {
	now := time.Unix(1_700_000_000, 0)
	id, err := journal.NewIdentity("bench", "normal", now)
	if err != nil {
		tb.Fatal(err)
	}
	j, err := journal.Create(dir, id, journal.Options{})
	if err != nil {
		tb.Fatal(err)
	}
	defer j.Close()
	st := statemachine.NewState(journalInfo(id))
	var last *journal.Future
	for i := 0; i < n; i++ {
		var cmd statemachine.Command = statemachine.QueueDump{Target: statemachine.Target{Scope: statemachine.ScopeVolume, Server: "fs1", Partition: "vicepa", Volume: fmt.Sprintf("user.u%07d", i)}, By: "bench"}
		if i%2 == 1 {
			cmd = statemachine.AbortJob{ID: st.ActiveJobs()[0].ID, By: "bench"}
		}
		evs, err := statemachine.Decide(st, cmd, now)
		if err != nil {
			tb.Fatal(err)
		}
		p, _ := statemachine.EncodeEvents(evs)
		last = j.Submit(journal.Entry{Type: journal.TypeEvents, Epoch: 1, Time: now.UnixNano(), Payload: p})
		st.Apply(st.Applied+1, evs)
	}
	if _, err := last.Wait(); err != nil {
		tb.Fatal(err)
	}
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
