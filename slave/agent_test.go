package slave

import (
	"log/slog"
	"maps"
	"slices"
	"strings"
	"testing"
)

// reopen closes the agent's journal and opens the agent again from it, as
// a restart would.
func reopen(t *testing.T, a *agent, dir string) *agent {
	t.Helper()
	if err := a.j.Close(); err != nil {
		t.Fatal(err)
	}
	b, err := openAgent(slog.New(slog.DiscardHandler), dir, "athena")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.j.Close() })
	return b
}

// TestAgentEpochsPerJournal: epochs are counted per master journal (a
// crippled master starts at 1 again); a lower epoch of the same journal is
// refused, and the epochs survive a restart.
func TestAgentEpochsPerJournal(t *testing.T) {
	dir := t.TempDir()
	a, err := openAgent(slog.New(slog.DiscardHandler), dir, "athena")
	if err != nil {
		t.Fatal(err)
	}
	for _, step := range []struct {
		journal string
		epoch   uint64
		refused bool
	}{{"normal", 5, false}, {"crippled", 1, false}, {"normal", 5, false}, {"normal", 4, true}, {"crippled", 2, false}, {"crippled", 1, true}} {
		err := a.acceptEpoch(step.journal, step.epoch)
		if (err != nil) != step.refused {
			t.Fatalf("epoch %d of %s: err %v, want refused=%v", step.epoch, step.journal, err, step.refused)
		}
		if err != nil && !strings.Contains(err.Error(), "stale") {
			t.Fatalf("refusal does not say why: %v", err)
		}
	}
	a = reopen(t, a, dir)
	if got, want := a.epochsSeen(), map[string]uint64{"normal": 5, "crippled": 2}; !maps.Equal(got, want) {
		t.Fatalf("epochs after a restart: %v, want %v", got, want)
	}
	if err := a.acceptEpoch("normal", 4); err == nil {
		t.Fatal("a lower epoch was accepted after a restart")
	}
}

// TestAgentKeepsEndedJobsWhileOwing: a job that ended is still described
// (for adoption) while it owes reports, is not run again if ordered again,
// counts only acknowledged checkpoints as written, and is forgotten once
// every report is acknowledged — across a restart too.
func TestAgentKeepsEndedJobsWhileOwing(t *testing.T) {
	dir := t.TempDir()
	a, err := openAgent(slog.New(slog.DiscardHandler), dir, "athena")
	if err != nil {
		t.Fatal(err)
	}
	o := DumpOrder{Job: "q7k2m-1", Scope: "server", Server: "fs1", Origin: "journal-a"}
	if isNew, err := a.accept(o); err != nil || !isNew {
		t.Fatalf("accept: %v %v", isNew, err)
	}
	for _, rp := range []report{
		{Kind: "checkpoint", Job: o.Job, Dump: &DumpRecord{Volume: "v1", Tapes: []string{"L1"}}},
		{Kind: "checkpoint", Job: o.Job, Dump: &DumpRecord{Volume: "v2", Tapes: []string{"L1", "L2"}}},
		{Kind: "done", Job: o.Job, State: "done"},
	} {
		if err := a.queue(rp); err != nil {
			t.Fatal(err)
		}
	}
	if got := a.inProgress(); len(got) != 0 {
		t.Fatalf("an ended job is in progress: %v", got)
	}
	if err := a.acked(a.next().Seq); err != nil { // v1's checkpoint
		t.Fatal(err)
	}
	a = reopen(t, a, dir)
	jobs := a.jobs()
	aj, ok := jobs[o.Job]
	if !ok || aj.order == nil || aj.order.Origin != "journal-a" || !maps.Equal(aj.written, map[string]int{"L1": 1}) {
		t.Fatalf("an ended job owing reports after a restart: %+v (listed %v)", aj, ok)
	}
	if isNew, err := a.accept(o); err != nil || isNew {
		t.Fatalf("an ended job ordered again was accepted as new (%v, %v): it would run twice", isNew, err)
	}
	var seqs []uint64
	for rp := a.next(); rp != nil; rp = a.next() {
		seqs = append(seqs, rp.Seq)
		if err := a.acked(rp.Seq); err != nil {
			t.Fatal(err)
		}
	}
	if !slices.Equal(seqs, []uint64{2, 3}) {
		t.Fatalf("reports resent after the restart: %v, want [2 3]", seqs)
	}
	if jobs := a.jobs(); len(jobs) != 0 {
		t.Fatalf("a job whose reports were all acknowledged is still kept: %+v", jobs)
	}
	a = reopen(t, a, dir)
	if jobs := a.jobs(); len(jobs) != 0 || a.next() != nil {
		t.Fatalf("after a restart: jobs %+v, next %+v", jobs, a.next())
	}
}
