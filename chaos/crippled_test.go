package chaos

import (
	"context"
	"crypto/sha256"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc/metadata"

	"github.com/abs-backup/abs/api"
	"github.com/abs-backup/abs/cluster"
	"github.com/abs-backup/abs/fixtures"
	"github.com/abs-backup/abs/journal"
	"github.com/abs-backup/abs/statemachine"
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
	// Disaster mode: a slave of the realm that cluster.slaves does not list
	// is accepted (the normal master refuses it: TestRegisterDevice).
	cfgC, err := cluster.Load(spare.Config)
	if err != nil {
		t.Fatal(err)
	}
	tape9 := slaveClient(t, realm.Issue(t, "slave", "tape9"), spare.Addr)
	hashCtx := metadata.AppendToOutgoingContext(context.Background(), "abs-cluster-hash", cfgC.Cluster.Hash())
	if _, err := tape9.RegisterDevice(hashCtx, &api.RegisterDeviceRequest{Name: "tape9", Addr: "127.0.0.1:1", Drives: 1}); err != nil {
		t.Fatalf("the crippled master in disaster mode refused slave tape9 of the realm: %v", err)
	}

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
	// The crippled master recorded the volumes checkpointed after the
	// normal master died: s2 at least (s1 too, unless the normal master
	// acknowledged it just before the kill; the merged report below holds
	// every volume once).
	recsC := jobRecords(reportOf(t, envC), job)
	recorded := recordVolumes(recsC)
	if !slices.Equal(recorded, []string{"s1", "s2"}) && !slices.Equal(recorded, []string{"s2"}) {
		t.Fatalf("the crippled master recorded %v of job %s, want s2 and maybe s1 (vicepa's were acknowledged by the normal master: %v)", recorded, job, recordVolumes(acked))
	}
	crippledLabel := "athena-c" + st.JobPrefix + "-"
	if s2 := recsC[len(recsC)-1]; len(s2.Tapes) != 2 || !strings.HasPrefix(s2.Tapes[1], crippledLabel) {
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
	// A wrong file number is refused by the slave.
	wrong := filepath.Join(s.dir, "restored", "wrong")
	if res := Run(t, envC, "restore", "volume", "s1", "--server", "fs1", "--partition", "zslow", "--to", wrong, "--tape", line[2], "--file", line[6]); res.Code != 1 || !strings.Contains(res.Stderr, "not the dump of fs1/zslow/s1") {
		t.Fatalf("a restore naming another volume's file: exit %d\n%s", res.Code, res.Stderr)
	}
	spare.Kill(t)
	mergeBack(t, normal, spare, string(dumpLog), s, sp)
}

// mergeBack is the return to normal mode: abs merge refuses a running
// master, a damaged crippled journal, another realm's journal and unnamed
// labels without a terminal, each changing nothing; a merge SIGKILLed
// halfway and run again writes what an uninterrupted one writes; a second
// merge writes nothing; the normal master then reports every dump once,
// the crippled ones included, and restores one of them.
func mergeBack(t *testing.T, normal, spare *Master, dumpLog string, s *slaveSetup, sp *slaveProc) {
	merge := func(into string, env []string, extra ...string) Result {
		return Run(t, env, append([]string{"merge", "--from", spare.Data, "--into", into}, extra...)...)
	}
	mainJournal := filepath.Join(normal.Data, "journal")
	unchanged := journalDigest(t, mainJournal)

	normal.Start(t)
	before := reportOf(t, s.env)
	if res := merge(normal.Data, nil); res.Code != 75 || !strings.Contains(res.Stderr, "stop the normal master first") {
		t.Fatalf("merge into a running master: exit %d\n%s", res.Code, res.Stderr)
	}
	normal.Kill(t)
	unchanged = journalDigest(t, mainJournal) // the master's restart wrote its start

	damaged := filepath.Join(t.TempDir(), "damaged")
	copyTree(t, spare.Data, damaged)
	seg := LastSegment(t, damaged)
	b, _ := os.ReadFile(seg)
	b[len(b)/3] ^= 0xff
	os.WriteFile(seg, b, 0o644)
	if res := Run(t, nil, "merge", "--from", damaged, "--into", normal.Data); res.Code != 65 || !strings.Contains(res.Stderr, "nothing was written") {
		t.Fatalf("merge of a damaged crippled journal: exit %d\n%s", res.Code, res.Stderr)
	}
	other := filepath.Join(t.TempDir(), "other")
	writeCrippledJournal(t, other, "elsewhere", nil)
	if res := Run(t, nil, "merge", "--from", other, "--into", normal.Data); res.Code != 3 || !strings.Contains(res.Stderr, `realm "elsewhere"`) {
		t.Fatalf("merge of another realm's journal: exit %d\n%s", res.Code, res.Stderr)
	}
	unnamed := filepath.Join(t.TempDir(), "unnamed")
	label := writeCrippledJournal(t, unnamed, "athena", []string{"", "A99"})
	if res := Run(t, nil, "merge", "--from", unnamed, "--into", normal.Data); res.Code != 3 || !strings.Contains(res.Stderr, label[0]) || strings.Contains(res.Stderr, label[1]) {
		t.Fatalf("merge with an unnamed label and no terminal: exit %d\n%s", res.Code, res.Stderr)
	}
	if got := journalDigest(t, mainJournal); got != unchanged {
		t.Fatal("a refused merge changed the master's journal")
	}

	// Interrupted (SIGKILL after 3 records) and run again, against an
	// uninterrupted merge of the same journals.
	// The uninterrupted merge reads a copy of the crippled journal with a
	// torn final record: the valid prefix is the whole journal.
	whole, torn := filepath.Join(t.TempDir(), "whole"), filepath.Join(t.TempDir(), "torn")
	copyTree(t, normal.Data, whole)
	copyTree(t, spare.Data, torn)
	AppendTo(t, LastSegment(t, torn), []byte{0x42, 0x00, 0x13, 0x37, 0x99})
	if res := Run(t, nil, "merge", "--from", torn, "--into", whole); res.Code != 0 || !strings.Contains(res.Stdout, "imported:") || !strings.Contains(res.Stdout, "torn record") {
		t.Fatalf("abs merge of a journal with a torn tail: exit %d\n%s%s", res.Code, res.Stdout, res.Stderr)
	}
	if res := merge(normal.Data, []string{"ABS_TEST_MERGE_KILL_AFTER=3"}); res.Code != -1 {
		t.Fatalf("the merge meant to be killed after 3 records: exit %d\n%s%s", res.Code, res.Stdout, res.Stderr)
	}
	res := merge(normal.Data, nil)
	if res.Code != 0 || !strings.Contains(res.Stdout, "already merged before") {
		t.Fatalf("abs merge after a killed merge: exit %d\n%s%s", res.Code, res.Stdout, res.Stderr)
	}
	if a, b := journalDigest(t, mainJournal), journalDigest(t, filepath.Join(whole, "journal")); a != b {
		t.Fatalf("a merge killed and run again wrote another journal than an uninterrupted one")
	}
	merged := journalDigest(t, mainJournal)
	if res := merge(normal.Data, nil); res.Code != 0 || !strings.Contains(res.Stdout, "nothing new") || journalDigest(t, mainJournal) != merged {
		t.Fatalf("a second merge: exit %d, journal changed %v\n%s%s", res.Code, journalDigest(t, mainJournal) != merged, res.Stdout, res.Stderr)
	}

	// The normal master reports every dump once: its own and the crippled
	// master's (every dump log line). The slave goes back to it.
	normal.Start(t)
	defer normal.Kill(t)
	if err := os.WriteFile(s.config, []byte(switchConfigSleep(normal.Addr, s.dir, s.certs, s.partition, 3)), 0o644); err != nil {
		t.Fatal(err)
	}
	sp.cmd.Process.Signal(syscall.SIGHUP)
	sp.waitLine(t, "registered with "+normal.Addr)
	report := mustRun(t, s.env, "report").Stdout
	lines := strings.Split(strings.TrimSpace(report), "\n")
	seen := map[string]int{}
	for _, l := range lines {
		seen[l]++
		if seen[l] > 1 {
			t.Fatalf("the report lists a dump twice: %s\n%s", l, report)
		}
	}
	for _, l := range strings.Split(strings.TrimSpace(dumpLog), "\n") {
		if seen[l] != 1 {
			t.Fatalf("the dump log line %q is not in the merged report:\n%s", l, report)
		}
	}
	if len(lines) != len(before)+len(strings.Split(strings.TrimSpace(dumpLog), "\n")) {
		t.Fatalf("the merged report has %d lines, want %d (normal) + the dump log's:\n%s", len(lines), len(before), report)
	}
	// A restore planned from the merged catalog: the latest dumps of a
	// volume, made in crippled mode.
	vol := filepath.Base(s.vols[1])
	target := filepath.Join(s.dir, "restored-merged", vol)
	if res := Run(t, s.env, "restore", "volume", vol, "--to", target); res.Code != 0 || !strings.Contains(res.Stderr, " done") {
		t.Fatalf("abs restore after the merge: exit %d\n%s", res.Code, res.Stderr)
	}
	want, _ := fixtures.Scan(s.vols[1])
	got, _ := fixtures.Scan(target)
	if d := want.Diff(got, fixtures.DiffOptions{MTimePrecision: time.Second}); len(d) > 0 {
		t.Fatalf("restore of %s after the merge differs:\n%s", vol, strings.Join(d, "\n"))
	}
}

// journalDigest is a digest of every record of a journal (index, type,
// epoch, time, payload).
func journalDigest(t *testing.T, dir string) string {
	t.Helper()
	r, err := journal.OpenReader(dir)
	if err != nil {
		t.Fatal(err)
	}
	h := sha256.New()
	if err := r.Scan(1, func(rec journal.Record) error {
		fmt.Fprintf(h, "%d %d %d %d %x\n", rec.Index, rec.Type, rec.Epoch, rec.Time, rec.Payload)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	return fmt.Sprintf("%x", h.Sum(nil))
}

// writeCrippledJournal writes a crippled journal of realm in dataDir/journal
// with one tape label per name (a name "" for a label no slave named), and
// returns the labels.
func writeCrippledJournal(t *testing.T, dataDir, realm string, names []string) []string {
	t.Helper()
	id, err := journal.NewIdentity(realm, journal.ModeCrippled, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	j, err := journal.Create(filepath.Join(dataDir, "journal"), id, journal.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer j.Close()
	st := statemachine.NewState(statemachine.JournalInfo{ID: id.JournalID, Realm: realm, Mode: journal.ModeCrippled})
	now := time.Now()
	cmds := []statemachine.Command{statemachine.StartMaster{Node: "spare", Disaster: true},
		statemachine.RegisterSlave{Slave: statemachine.Slave{Name: "tape1", Addr: "127.0.0.1:1", Reaches: []statemachine.Target{{Scope: statemachine.ScopeServer, Server: "fs1"}}}},
		statemachine.QueueDump{Target: statemachine.Target{Scope: statemachine.ScopeServer, Server: "fs1"}}, statemachine.Schedule{}}
	for _, n := range names {
		cmds = append(cmds, statemachine.GenLabel{Slave: "tape1", Job: statemachine.JobID(st.Prefix + "-1"), Name: n})
	}
	var labels []string
	for _, c := range cmds {
		evs, err := statemachine.Decide(st, c, now)
		if err != nil {
			t.Fatal(err)
		}
		p, err := statemachine.EncodeEvents(evs)
		if err != nil {
			t.Fatal(err)
		}
		idx, err := j.Append(journal.Entry{Type: journal.TypeEvents, Epoch: 1, Time: now.UnixNano(), Payload: p})
		if err != nil {
			t.Fatal(err)
		}
		st.Apply(idx, evs)
		for _, e := range evs {
			if tl, ok := e.(statemachine.TapeLabeled); ok {
				labels = append(labels, tl.Label)
			}
		}
	}
	return labels
}

// copyTree copies a directory tree (a master's data directory at rest).
func copyTree(t *testing.T, from, to string) {
	t.Helper()
	if out, err := exec.Command("cp", "-a", from, to).CombinedOutput(); err != nil {
		t.Fatalf("cp -a %s %s: %v\n%s", from, to, err, out)
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

// TestMasterReplacedAtSameAddress: the normal master dies mid-job and a
// crippled master is started at the same address (the same name moved to
// it), with no change to the slave's config and no SIGHUP. The slave's next
// report is refused as from a slave this master does not know; the slave
// registers again, the crippled master adopts the job, and it finishes
// there with nothing dropped.
func TestMasterReplacedAtSameAddress(t *testing.T) {
	t.Parallel()
	realm := NewRealm(t)
	normal := masterFor(t, realm, "normal")
	normal.Start(t)
	defer normal.Kill(t)
	s := newSlaveSetup(t, realm, normal, 4, smallPartition, func(dir, certs, partition string) string {
		return switchConfigSleep(normal.Addr, dir, certs, partition, 2)
	})
	sp := startSlave(t, s.config)
	sp.waitLine(t, "registered with "+normal.Addr)
	job := s.detach(t, "server", "fs1", "--level", "full")
	waitCheckpoints(t, s.env, realm.Operator(t, normal.Addr), job, len(s.vols), s.config+".log")
	normal.Kill(t)

	cfg, err := os.ReadFile(normal.Config)
	if err != nil {
		t.Fatal(err)
	}
	spare := &Master{Name: "spare", Addr: normal.Addr, Metrics: fmt.Sprintf("127.0.0.1:%d", FreePort(t)),
		Data: filepath.Join(t.TempDir(), "spare"), Config: filepath.Join(t.TempDir(), "spare.yaml"), Args: []string{"--crippled"}}
	text := strings.Replace(strings.Replace(string(cfg), normal.Data, spare.Data, 1), normal.Metrics, spare.Metrics, 1)
	if err := os.WriteFile(spare.Config, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	spare.Start(t)
	defer spare.Kill(t)
	end := waitJob(t, realm.Operator(t, spare.Addr), job, 30*time.Second, "done at the crippled master", func(j jobRec) bool { return j.State == "done" })
	if end.Volumes != int64(len(s.vols)+2) || !strings.Contains(s.slaveLog(), "registering again") || strings.Contains(s.slaveLog(), "the master refused a report") {
		t.Fatalf("job %s at the crippled master at the same address: %+v\n%s", job, end, s.slaveLog())
	}
	// s2 at least; s1 too unless the normal master acknowledged it just
	// before it died.
	if got := recordVolumes(jobRecords(reportOf(t, realm.OperatorEnv(spare)), job)); !slices.Equal(got, []string{"s1", "s2"}) && !slices.Equal(got, []string{"s2"}) {
		t.Fatalf("the crippled master recorded %v of job %s, want s2 and maybe s1", got, job)
	}
}
