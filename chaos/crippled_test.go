package chaos

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/abs-backup/abs/fixtures"
)

// TestCrippledMode is the disaster story of DESIGN.md §7 with real daemons:
// a normal master dumps and is SIGKILLed mid-job; a crippled master starts
// on a data directory of its own; the slave is re-pointed to it (config and
// SIGHUP) and both running jobs are adopted: one finishes there (its last
// dump continuing on a tape the crippled master labels), the other is
// aborted by the operator. More dumps run in crippled mode (volume,
// partition, server); the normal master's labeled tapes are unknown media
// to it; the dump log holds exactly the lines `abs report` prints; and a
// volume is restored from the tape and file found by grepping the dump log.
func TestCrippledMode(t *testing.T) {
	t.Parallel()
	realm := NewRealm(t)
	normal, spare := masterFor(t, realm, "normal"), masterFor(t, realm, "spare")
	spare.Args = []string{"--crippled"}
	normal.Start(t)
	defer normal.Kill(t)
	s := newSlaveSetup(t, realm, normal, 9, smallPartition, func(dir, certs, partition string) string {
		return switchConfigSleep(normal.Addr, dir, certs, partition, 3)
	})
	sp := startSlave(t, s.config)
	sp.waitLine(t, "registered with "+normal.Addr)
	journalN := statusOf(t, s.env).JournalID

	// A dump done in normal mode: its tape is VALID, and unknown to the
	// crippled master. Then two jobs run when the normal master dies: a dump
	// of server fs1 (in its slow volumes, vicepa's checkpointed) and one of
	// partition zslow.
	vol := filepath.Base(s.vols[0])
	if res := Run(t, s.env, "dump", "volume", vol, "--server", "fs1", "--partition", "vicepa", "--level", "full"); res.Code != 0 {
		t.Fatalf("a dump in normal mode: exit %d\n%s", res.Code, res.Stderr)
	}
	normalTape := reportOf(t, s.env)[0].Tapes[0]
	opN := realm.Operator(t, normal.Addr)
	job := s.detach(t, "server", "fs1", "--level", "full")
	slow := s.detach(t, "partition", "zslow", "--server", "fs1", "--level", "full")
	acked := waitCheckpoints(t, s.env, opN, job, len(s.vols), s.config+".log")
	normal.Kill(t)

	spare.Start(t)
	defer spare.Kill(t)
	envC := realm.OperatorEnv(spare)
	st := statusOf(t, envC)
	if st.Mode != "crippled" || st.JournalID == journalN {
		t.Fatalf("the crippled master's status: %+v (normal journal %s)", st, journalN)
	}
	if err := os.WriteFile(s.config, []byte(switchConfigSleep(spare.Addr, s.dir, s.certs, s.partition, 3)), 0o644); err != nil {
		t.Fatal(err)
	}
	sp.cmd.Process.Signal(syscall.SIGHUP)
	sp.waitLine(t, "registered with "+spare.Addr)

	// Both jobs are adopted, with the normal journal as their origin.
	jobs := jobsOf(t, envC)
	for _, id := range []string{job, slow} {
		if j, ok := jobs[id]; !ok || j.Origin != journalN || !strings.Contains(j.By, "adopted") || j.State == "done" {
			t.Fatalf("the crippled master does not list job %s as adopted (running) from %s: %+v (found %v)\n%s\n%s", id, journalN, j, ok, s.slaveLog(), spare.Stderr())
		}
	}
	if res := Run(t, envC, "abort", slow); res.Code != 0 {
		t.Fatalf("abs abort %s on the crippled master: exit %d\n%s%s", slow, res.Code, res.Stdout, res.Stderr)
	}
	opC := realm.Operator(t, spare.Addr)
	waitJob(t, opC, slow, 30*time.Second, "aborted", func(j jobRec) bool { return j.State == "aborted" })
	end := waitJob(t, opC, job, 30*time.Second, "done", func(j jobRec) bool { return j.State == "done" })
	if end.Volumes != int64(len(s.vols)+2) {
		t.Fatalf("job %s ended at the crippled master with %d volumes, want %d", job, end.Volumes, len(s.vols)+2)
	}
	recsC := jobRecords(reportOf(t, envC), job)
	if got := recordVolumes(recsC); !slices.Equal(got, []string{"s1", "s2"}) {
		t.Fatalf("the crippled master recorded %v of job %s, want [s1 s2] (vicepa's were acknowledged by the normal master: %v)", got, job, recordVolumes(acked))
	}
	crippledLabel := "athena-c" + st.JobPrefix + "-"
	if s2 := recsC[1]; len(s2.Tapes) != 2 || !strings.HasPrefix(s2.Tapes[1], crippledLabel) {
		t.Fatalf("s2 should continue on a tape the crippled master labeled (%s…): %+v", crippledLabel, s2)
	}

	// More dumps in crippled mode: a volume, a partition, a server.
	for _, args := range [][]string{
		{"dump", "volume", vol, "--server", "fs1", "--partition", "vicepa", "--level", "full"},
		{"dump", "partition", "vicepa", "--server", "fs1", "--level", "full"},
		{"dump", "server", "fs1"},
	} {
		if res := Run(t, envC, args...); res.Code != 0 || !strings.Contains(res.Stderr, " done") {
			t.Fatalf("abs %s on the crippled master: exit %d\n%s\nslave log:\n%s", strings.Join(args, " "), res.Code, res.Stderr, s.slaveLog())
		}
	}
	// The normal master's tape it never saw was offered and refused as
	// unknown media; only the tapes of the job it adopted are in its list.
	if !strings.Contains(s.slaveLog(), "label="+normalTape+" verdict=unknown") {
		t.Fatalf("the normal master's tape %s was not refused as unknown media:\n%s", normalTape, s.slaveLog())
	}
	if tp, ok := tapesOf(t, envC)[normalTape]; ok {
		t.Fatalf("the crippled master lists the normal master's tape %s: %+v", normalTape, tp)
	}

	// The dump log is exactly what abs report prints.
	dumpLog, err := os.ReadFile(filepath.Join(spare.Data, "dumplog"))
	if err != nil {
		t.Fatal(err)
	}
	report := mustRun(t, envC, "report").Stdout
	if sortedLines(string(dumpLog)) != sortedLines(report) || strings.Count(report, "\n") < 2+1+len(s.vols)+(len(s.vols)+1) {
		t.Fatalf("the dump log and abs report differ:\n--- dumplog\n%s--- report\n%s", dumpLog, report)
	}

	// A restore from the tape and file found by grepping the dump log.
	var line []string
	for _, l := range strings.Split(string(dumpLog), "\n") {
		if f := strings.Split(l, "\t"); len(f) == 9 && f[0] == vol && f[3] == "0" {
			line = f
			break
		}
	}
	if line == nil {
		t.Fatalf("no full dump of %s in the dump log:\n%s", vol, dumpLog)
	}
	target := filepath.Join(s.dir, "restored", vol)
	if res := Run(t, envC, "restore", "volume", vol, "--server", "fs1", "--partition", "vicepa", "--to", target, "--tape", line[2], "--file", line[6]); res.Code != 0 || !strings.Contains(res.Stderr, " done") {
		t.Fatalf("abs restore from tape %s file %s: exit %d\n%s\nslave log:\n%s", line[2], line[6], res.Code, res.Stderr, s.slaveLog())
	}
	want, _ := fixtures.Scan(s.vols[0])
	got, _ := fixtures.Scan(target)
	if d := want.Diff(got, fixtures.DiffOptions{MTimePrecision: time.Second}); len(d) > 0 {
		t.Fatalf("restore of %s from the dump log's tape %s file %s differs:\n%s", vol, line[2], line[6], strings.Join(d, "\n"))
	}
	// A wrong file number is refused by the slave, nothing is written.
	wrong := filepath.Join(s.dir, "restored", "wrong")
	if res := Run(t, envC, "restore", "volume", "s1", "--server", "fs1", "--partition", "zslow", "--to", wrong, "--tape", line[2], "--file", line[6]); res.Code != 1 || !strings.Contains(res.Stderr, "not the dump of fs1/zslow/s1") {
		t.Fatalf("a restore naming another volume's file: exit %d\n%s", res.Code, res.Stderr)
	}
}

func recordVolumes(recs []dumpRec) []string {
	var out []string
	for _, d := range recs {
		out = append(out, d.Volume)
	}
	slices.Sort(out)
	return out
}

func sortedLines(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	slices.Sort(lines)
	return strings.Join(lines, "\n")
}
