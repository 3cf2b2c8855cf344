package chaos

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc"

	"github.com/abs-backup/abs/api"
	"github.com/abs-backup/abs/fixtures"
)

// This file: a media slave's faults under real daemons on loopback — an
// abort mid-dump, a SIGKILL mid-dump and a restart, a SIGHUP switch to
// another master mid-job, and a dump spanning cartridges.

// slaveConfigCap is slaveConfig with another cartridge capacity.
func slaveConfigCap(master, name, dir, certs, partition, capacity string) string {
	return strings.Replace(slaveConfig(master, name, dir, certs, partition), "capacity: 64MiB", "capacity: "+capacity, 1)
}

// faultsConfig is a slave config whose server fs1 has the directory
// partition vicepa (real data) and, instead of slaveConfig's db, a command
// pair partition zslow whose volumes s1 and s2 each take sleep seconds to
// dump. A dump of server fs1 writes vicepa's volumes first (volumes go in
// server/partition/volume order), then sits in s1: a fault lands mid-dump
// at a known point, after every vicepa volume was checkpointed, however
// fast the machine.
func faultsConfig(master, dir, certs, partition string, sleep int) string {
	cfg := slaveConfigCap(master, "tape1", dir, certs, partition, "64MiB")
	return cfg[:strings.Index(cfg, "    db:\n")] + fmt.Sprintf(`    zslow:
      dump: "sh -c 'printf %%s {volume}; exec sleep %d'"
      restore: "sh -c 'cat >/dev/null'"
      volumes: [s1, s2]
`, sleep)
}

// smallPartition generates a partition of three volumes of real data.
func smallPartition(t *testing.T, dir string) (string, []string) {
	t.Helper()
	partition := filepath.Join(dir, "vicepa")
	vols, err := fixtures.GenerateVolumes(partition, 3, fixtures.TreeOptions{Seed: 23, Files: 40, Dirs: 8, Large: 1, LargeSize: 2 << 20})
	if err != nil {
		t.Fatal(err)
	}
	return partition, vols
}

// jobRec is a job as `abs jobs --json` prints it.
type jobRec struct {
	ID             string `json:"id"`
	By             string `json:"by"`
	Origin         string `json:"origin"`
	State          string `json:"state"`
	Slave          string `json:"slave"`
	Note           string `json:"note"`
	AbortRequested bool   `json:"abort_requested"`
	Volumes        int64  `json:"volumes"`
	Bytes          int64  `json:"bytes"`
}

func jobsOf(t *testing.T, env []string) map[string]jobRec {
	t.Helper()
	var jobs []jobRec
	out := mustRun(t, env, "jobs", "--all", "--json").Stdout
	if err := json.Unmarshal([]byte(out), &jobs); err != nil {
		t.Fatalf("abs jobs --all --json: %v\n%s", err, out)
	}
	m := map[string]jobRec{}
	for _, j := range jobs {
		m[j.ID] = j
	}
	return m
}

// waitJob polls the master's operator API (a CLI run costs about a
// second under -race, so polls go through the API; assertions use the CLI)
// until job id satisfies ok.
func waitJob(t *testing.T, op api.OperatorServiceClient, id string, within time.Duration, what string, ok func(jobRec) bool) jobRec {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		jobs, err := AllJobs(ctx, op)
		cancel()
		if err != nil {
			t.Fatal(err)
		}
		var j jobRec
		aj, found := jobs[id]
		if found {
			j = jobRec{ID: aj.Id, State: aj.State, Slave: aj.Slave, Note: aj.Why, AbortRequested: aj.AbortRequested, Volumes: aj.Volumes, Bytes: aj.Bytes}
			if ok(j) {
				return j
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("job %s not %s within %v: %+v (found %v)", id, what, within, j, found)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// apiRecords counts job's dump records through the operator API.
func apiRecords(t *testing.T, op api.OperatorServiceClient, job string) int {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	stream, err := op.Report(ctx, &api.ReportRequest{}, grpc.WaitForReady(true))
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for {
		d, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			return n
		}
		if err != nil {
			t.Fatal(err)
		}
		if d.Job == job {
			n++
		}
	}
}

// dumpRec is a dump record as `abs report --json` prints it.
type dumpRec struct {
	Volume        string   `json:"volume"`
	DumpDate      string   `json:"dump_date"`
	Tapes         []string `json:"tapes"`
	IncrementDate string   `json:"increment_date"`
	Server        string   `json:"server"`
	Partition     string   `json:"partition"`
	File          int      `json:"file"`
	Bytes         int64    `json:"bytes"`
	SHA256        string   `json:"sha256"`
	Job           string   `json:"job"`
}

func reportOf(t *testing.T, env []string) []dumpRec {
	t.Helper()
	var recs []dumpRec
	out := mustRun(t, env, "report", "--json").Stdout
	if err := json.Unmarshal([]byte(out), &recs); err != nil {
		t.Fatalf("abs report --json: %v\n%s", err, out)
	}
	return recs
}

// waitCheckpoints polls the operator API until job has n dump records,
// and returns them as `abs report` prints them.
func waitCheckpoints(t *testing.T, env []string, op api.OperatorServiceClient, job string, n int, slaveLog string) []dumpRec {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for apiRecords(t, op, job) < n {
		if time.Now().After(deadline) {
			b, _ := os.ReadFile(slaveLog)
			t.Fatalf("job %s has fewer than %d checkpoints after 30s; slave log:\n%s", job, n, b)
		}
		time.Sleep(50 * time.Millisecond)
	}
	return jobRecords(reportOf(t, env), job)
}

// tapeRec is a tape as `abs tapes --json` prints it.
type tapeRec struct {
	Label string `json:"label"`
	Name  string `json:"name"`
	State string `json:"state"`
	Job   string `json:"job"`
	Files int    `json:"files"`
}

func tapesOf(t *testing.T, env []string) map[string]tapeRec {
	t.Helper()
	var tapes []tapeRec
	out := mustRun(t, env, "tapes", "--json").Stdout
	if err := json.Unmarshal([]byte(out), &tapes); err != nil {
		t.Fatalf("abs tapes --json: %v\n%s", err, out)
	}
	m := map[string]tapeRec{}
	for _, tp := range tapes {
		m[tp.Label] = tp
	}
	return m
}

// lsFile is a tape file as `abs tape ls --json` prints it.
type lsFile struct {
	File      int    `json:"file"`
	Volume    string `json:"volume"`
	Job       string `json:"job"`
	Part      int    `json:"part"`
	Continues bool   `json:"continues"`
	Bytes     int64  `json:"bytes"`
	SHA256    string `json:"sha256"`
	Complete  bool   `json:"complete"`
	Damage    string `json:"damage"`
}

// tapeLs lists a cartridge with `abs tape ls --json`. Exit 65 (damage after
// the good files, e.g. a torn tail) still prints the listing.
func tapeLs(t *testing.T, cart string) (string, []lsFile) {
	t.Helper()
	res := Run(t, nil, "tape", "ls", cart, "--json")
	if res.Code != 0 && res.Code != 65 {
		t.Fatalf("abs tape ls %s: exit %d\n%s%s", cart, res.Code, res.Stdout, res.Stderr)
	}
	var l struct {
		Label string   `json:"label"`
		Files []lsFile `json:"files"`
	}
	if err := json.Unmarshal([]byte(res.Stdout), &l); err != nil {
		t.Fatalf("abs tape ls %s --json: %v\n%s%s", cart, err, res.Stdout, res.Stderr)
	}
	return l.Label, l.Files
}

// checkOnTape checks that every dump record is on its cartridges as `abs
// tape ls` reads them with no daemon: the part on each tape complete and
// undamaged, a single-part dump with the record's size and SHA-256.
func checkOnTape(t *testing.T, lib string, tapes map[string]tapeRec, recs []dumpRec) {
	t.Helper()
	for _, d := range recs {
		for i, label := range d.Tapes {
			tp, ok := tapes[label]
			if !ok {
				t.Fatalf("dump of %s names tape %s the master does not list", d.Volume, label)
			}
			cart := filepath.Join(lib, tp.Name+".tape")
			got, files := tapeLs(t, cart)
			if got != label {
				t.Fatalf("%s carries label %q, the master says %s", cart, got, label)
			}
			var f *lsFile
			for k := range files {
				if files[k].Volume == d.Volume && files[k].Part == i+1 && (i > 0 || files[k].File == d.File) {
					f = &files[k]
				}
			}
			if f == nil || !f.Complete || f.Damage != "" || f.Continues != (i < len(d.Tapes)-1) {
				t.Fatalf("dump of %s (%s file %d) part %d: not intact on %s: %+v\nlisting: %+v", d.Volume, d.Tapes, d.File, i+1, cart, f, files)
			}
			if len(d.Tapes) == 1 && (f.Bytes != d.Bytes || f.SHA256 != d.SHA256) {
				t.Fatalf("dump of %s: tape says %d bytes %s, the record %d bytes %s", d.Volume, f.Bytes, f.SHA256, d.Bytes, d.SHA256)
			}
		}
	}
}

// extractEquals restores a single-cartridge full dump with `abs tape
// extract` (no daemon) and compares it with the volume directory.
func extractEquals(t *testing.T, lib string, tapes map[string]tapeRec, d dumpRec, vol, target string) {
	t.Helper()
	cart := filepath.Join(lib, tapes[d.Tapes[0]].Name+".tape")
	mustRun(t, nil, "tape", "extract", cart, "--file", strFloat(d.File), "--to", target)
	want, err := fixtures.Scan(vol)
	if err != nil {
		t.Fatal(err)
	}
	got, err := fixtures.Scan(target)
	if err != nil {
		t.Fatal(err)
	}
	if diff := want.Diff(got, fixtures.DiffOptions{MTimePrecision: time.Second}); len(diff) > 0 {
		t.Fatalf("volume %s extracted from %s file %d differs:\n%s", d.Volume, cart, d.File, strings.Join(diff, "\n"))
	}
}

func jobRecords(recs []dumpRec, job string) []dumpRec {
	var out []dumpRec
	for _, d := range recs {
		if d.Job == job {
			out = append(out, d)
		}
	}
	return out
}

// containsRecords fails unless every record of want is in got.
func containsRecords(t *testing.T, what string, got, want []dumpRec) {
	t.Helper()
	for _, w := range want {
		if !slices.ContainsFunc(got, func(g dumpRec) bool {
			return g.Volume == w.Volume && g.DumpDate == w.DumpDate && g.SHA256 == w.SHA256 && slices.Equal(g.Tapes, w.Tapes) && g.File == w.File
		}) {
			t.Fatalf("%s: the record of %s (%s, tapes %v file %d) is gone:\n%+v", what, w.Volume, w.DumpDate, w.Tapes, w.File, got)
		}
	}
}

// slaveSetup is a master's operator environment, a slave's config, its
// library and partition, for the tests below.
type slaveSetup struct {
	env       []string
	dir, lib  string
	config    string
	certs     string
	partition string
	vols      []string
}

// newSlaveSetup generates the partition, makes blank cartridges and writes
// the slave's config with config(dir, certs, partition).
func newSlaveSetup(t *testing.T, realm *Realm, m *Master, blanks int, partition func(t *testing.T, dir string) (string, []string),
	config func(dir, certs, partition string) string) *slaveSetup {
	t.Helper()
	dir := t.TempDir()
	s := &slaveSetup{env: realm.OperatorEnv(m), dir: dir, lib: filepath.Join(dir, "tapes"), config: filepath.Join(dir, "tape1.yaml"),
		certs: realm.Issue(t, "slave", "tape1")}
	s.partition, s.vols = partition(t, dir)
	mustRun(t, nil, "tape", "new", "--library", s.lib, "--count", strFloat(blanks))
	if err := os.WriteFile(s.config, []byte(config(dir, s.certs, s.partition)), 0o644); err != nil {
		t.Fatal(err)
	}
	return s
}

func (s *slaveSetup) slaveLog() string {
	b, _ := os.ReadFile(s.config + ".log")
	return string(b)
}

// detach queues a dump with --detach and returns its job ID.
func (s *slaveSetup) detach(t *testing.T, args ...string) string {
	t.Helper()
	id := strings.TrimSpace(mustRun(t, s.env, append(append([]string{"dump"}, args...), "--detach")...).Stdout)
	if id == "" || strings.ContainsAny(id, " \n") {
		t.Fatalf("abs dump --detach printed %q, not a job ID", id)
	}
	return id
}

func volumeDir(vols []string, name string) string {
	for _, v := range vols {
		if filepath.Base(v) == name {
			return v
		}
	}
	return ""
}

// checkValid fails unless every tape the records name is VALID.
func checkValid(t *testing.T, tapes map[string]tapeRec, recs []dumpRec) {
	t.Helper()
	for _, d := range recs {
		for _, label := range d.Tapes {
			if tp := tapes[label]; tp.State != "valid" {
				t.Fatalf("tape %s holding the dump of %s: %+v (want valid)", label, d.Volume, tp)
			}
		}
	}
}

// TestSlaveAbortMidDump: a dump of server fs1 is aborted while it sits in
// its first slow volume, after vicepa's three volumes were checkpointed.
// The job ends "aborted" (a second abort is refused: it has ended); the
// three records stay in the report and no other arrives; their tape is
// VALID; `abs tape ls` lists the three files intact (the torn file of the
// aborted volume after them may be reported as damage), and one extracts
// identical to its volume.
func TestSlaveAbortMidDump(t *testing.T) {
	t.Parallel()
	realm := NewRealm(t)
	m := masterFor(t, realm, "abort-master")
	m.Start(t)
	defer m.Kill(t)
	s := newSlaveSetup(t, realm, m, 3, smallPartition, func(dir, certs, partition string) string {
		return faultsConfig(m.Addr, dir, certs, partition, 20)
	})
	op := realm.Operator(t, m.Addr)
	sp := startSlave(t, s.config)
	sp.waitLine(t, "registered with "+m.Addr)

	job := s.detach(t, "server", "fs1", "--level", "full")
	waitCheckpoints(t, s.env, op, job, len(s.vols), s.config+".log")
	if j := waitJob(t, op, job, 0, "running", func(jobRec) bool { return true }); j.State != "running" {
		t.Fatalf("job %s after vicepa's checkpoints: %+v (want running: s1 takes 20s)", job, j)
	}
	aborted := time.Now()
	res := mustRun(t, s.env, "abort", job)
	if !strings.Contains(res.Stdout, job) {
		t.Fatalf("abs abort %s printed %q", job, res.Stdout)
	}
	j := waitJob(t, op, job, 15*time.Second, "ended", func(j jobRec) bool { return j.State != "running" && j.State != "dispatched" })
	if j.State != "aborted" {
		t.Fatalf("job %s ended %q, not aborted: %+v\nslave log:\n%s", job, j.State, j, s.slaveLog())
	}
	t.Logf("job %s aborted %v after the order: %+v", job, time.Since(aborted).Round(time.Millisecond), j)
	// abs dump exits 1 for an aborted job when following it; a job that
	// has ended cannot be aborted again (exit 3).
	if res := Run(t, s.env, "abort", job); res.Code != 3 {
		t.Fatalf("a second abort of the ended job %s: exit %d (want 3: refused)\n%s%s", job, res.Code, res.Stdout, res.Stderr)
	}

	recs := jobRecords(reportOf(t, s.env), job)
	if len(recs) != len(s.vols) || j.Volumes != int64(len(s.vols)) {
		t.Fatalf("job %s aborted in s1: want exactly vicepa's %d records (job says %d volumes), got %+v", job, len(s.vols), j.Volumes, recs)
	}
	for _, d := range recs {
		if d.Partition != "vicepa" {
			t.Fatalf("job %s recorded %s/%s, which it was aborted in", job, d.Partition, d.Volume)
		}
	}
	tapes := tapesOf(t, s.env)
	checkValid(t, tapes, recs)
	checkOnTape(t, s.lib, tapes, recs)
	extractEquals(t, s.lib, tapes, recs[0], volumeDir(s.vols, recs[0].Volume), filepath.Join(s.dir, "extracted"))
	if log := s.slaveLog(); !strings.Contains(log, "job="+job+" state=aborted") {
		t.Fatalf("the slave log does not say job %s ended aborted:\n%s", job, log)
	}
	if j := jobsOf(t, s.env)[job]; j.State != "aborted" || apiRecords(t, op, job) != len(recs) {
		t.Fatalf("job %s in abs jobs at the end: %+v; %d records (want %d)", job, j, apiRecords(t, op, job), len(recs))
	}
}

// fileSums maps cartridge names to the SHA-256 and size of their file.
func fileSums(t *testing.T, lib string, names []string) map[string]string {
	t.Helper()
	out := map[string]string{}
	for _, n := range names {
		b, err := os.ReadFile(filepath.Join(lib, n+".tape"))
		if err != nil {
			t.Fatal(err)
		}
		sum := sha256.Sum256(b)
		out[n] = fmt.Sprintf("%x/%d", sum, len(b))
	}
	return out
}

// blankCartridges names the library's empty cartridge files.
func blankCartridges(t *testing.T, lib string) []string {
	t.Helper()
	ents, err := os.ReadDir(lib)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range ents {
		if fi, err := e.Info(); err == nil && fi.Mode().IsRegular() && fi.Size() == 0 && strings.HasSuffix(e.Name(), ".tape") {
			out = append(out, strings.TrimSuffix(e.Name(), ".tape"))
		}
	}
	return out
}

// TestSlaveKilledMidDump: the slave is SIGKILLed while a dump of server
// fs1 sits in its first slow volume, vicepa's three volumes checkpointed.
// Restarted with the same config it reports the job failed, saying it
// restarted; the master turns the job's tape VALID; the three dumps stay
// recorded and intact (tape ls; tape extract equal to the volume); no byte
// of any labeled cartridge changes afterwards (torn tail included: nothing
// appends to a VALID tape); and a new dump succeeds on a cartridge that was
// blank at the kill.
func TestSlaveKilledMidDump(t *testing.T) {
	t.Parallel()
	realm := NewRealm(t)
	m := masterFor(t, realm, "kill-master")
	m.Start(t)
	defer m.Kill(t)
	s := newSlaveSetup(t, realm, m, 3, smallPartition, func(dir, certs, partition string) string {
		// s1 sleeps 8s: long enough to be killed in, short enough that the
		// orphaned sleep (the slave's child) ends soon after the test.
		return faultsConfig(m.Addr, dir, certs, partition, 8)
	})
	op := realm.Operator(t, m.Addr)
	sp := startSlave(t, s.config)
	sp.waitLine(t, "registered with "+m.Addr)

	job := s.detach(t, "server", "fs1", "--level", "full")
	acked := waitCheckpoints(t, s.env, op, job, len(s.vols), s.config+".log")
	sp.cmd.Process.Signal(syscall.SIGKILL)
	sp.cmd.Wait()
	firstLog := s.slaveLog()
	if j := jobsOf(t, s.env)[job]; j.State != "running" {
		t.Fatalf("job %s at the kill: %+v (want running)", job, j)
	}

	// Every labeled cartridge's bytes at the kill.
	tapes := tapesOf(t, s.env)
	checkOnTape(t, s.lib, tapes, acked)
	var labeled []string
	for _, tp := range tapes {
		labeled = append(labeled, tp.Name)
	}
	before := fileSums(t, s.lib, labeled)
	blanks := blankCartridges(t, s.lib)
	if len(blanks) == 0 {
		t.Fatal("no blank cartridge left at the kill")
	}

	sp = startSlave(t, s.config)
	sp.waitLine(t, "registered with "+m.Addr)
	waitJob(t, op, job, 15*time.Second, "ended", func(j jobRec) bool { return j.State != "running" })
	j := jobsOf(t, s.env)[job]
	if j.State != "failed" || !strings.Contains(j.Note, "restarted") {
		t.Fatalf("job %s after the slave's restart: %+v (want failed, saying the slave restarted)\nslave log before the kill:\n%s\nafter:\n%s", job, j, firstLog, s.slaveLog())
	}
	recs := jobRecords(reportOf(t, s.env), job)
	if len(recs) != len(acked) {
		t.Fatalf("job %s: %d records at the kill, %d after the restart", job, len(acked), len(recs))
	}
	containsRecords(t, "after the restart", recs, acked)
	tapes = tapesOf(t, s.env)
	checkValid(t, tapes, recs)
	checkOnTape(t, s.lib, tapes, recs)
	extractEquals(t, s.lib, tapes, acked[0], volumeDir(s.vols, acked[0].Volume), filepath.Join(s.dir, "extracted"))

	// A new dump goes to a cartridge that was blank, never to a VALID one.
	vol := filepath.Base(s.vols[len(s.vols)-1])
	if res := Run(t, s.env, "dump", "volume", vol, "--server", "fs1", "--partition", "vicepa", "--level", "full"); res.Code != 0 || !strings.Contains(res.Stderr, " done") {
		t.Fatalf("a dump after the restart: exit %d\n%s\nslave log:\n%s", res.Code, res.Stderr, s.slaveLog())
	}
	tapes = tapesOf(t, s.env)
	var fresh []dumpRec
	for _, d := range reportOf(t, s.env) {
		if d.Job != job && d.Volume == vol {
			fresh = append(fresh, d)
		}
	}
	if len(fresh) != 1 {
		t.Fatalf("want one record of the new dump of %s, got %+v", vol, fresh)
	}
	for _, label := range fresh[0].Tapes {
		if name := tapes[label].Name; !slices.Contains(blanks, name) {
			t.Fatalf("the new dump of %s went to cartridge %s (%s), not blank at the kill (blank then: %v)", vol, name, label, blanks)
		}
	}
	checkOnTape(t, s.lib, tapes, fresh)
	if after := fileSums(t, s.lib, labeled); !maps.Equal(after, before) {
		t.Fatalf("labeled cartridges changed after the kill:\nbefore %v\nafter  %v", before, after)
	}
}

// TestSlaveSwitchesMasterMidJob: a dump of server fs1 runs on the slave for
// master A; vicepa's volumes checkpointed (A acknowledged them), the
// slave's config is rewritten to name master B and it gets SIGHUP while it
// sits in the slow volumes. The slave registers with B listing the job, B
// adopts it (DESIGN.md §8): `abs jobs` on B shows it, with A's journal as
// its origin; its remaining checkpoints land at B, including one whose
// dump fills A's cartridge and continues on a blank one B labels; it ends
// done at B with its tapes VALID there. Every volume is recorded once
// across A and B, its data on tape is intact, a new dump ordered by B
// succeeds, A's orders are refused by the slave, and A keeps every
// checkpoint it acknowledged, after a restart too.
func TestSlaveSwitchesMasterMidJob(t *testing.T) {
	t.Parallel()
	realm := NewRealm(t)
	a, b := masterFor(t, realm, "alpha"), masterFor(t, realm, "beta")
	a.Start(t)
	defer a.Kill(t)
	b.Start(t)
	defer b.Kill(t)
	s := newSlaveSetup(t, realm, a, 3, smallPartition, func(dir, certs, partition string) string {
		return switchConfig(a.Addr, dir, certs, partition)
	})
	opA := realm.Operator(t, a.Addr)
	sp := startSlave(t, s.config)
	sp.waitLine(t, "registered with "+a.Addr)
	journalA := statusOf(t, s.env).JournalID

	job := s.detach(t, "server", "fs1", "--level", "full")
	acked := waitCheckpoints(t, s.env, opA, job, len(s.vols), s.config+".log")
	if err := os.WriteFile(s.config, []byte(switchConfig(b.Addr, s.dir, s.certs, s.partition)), 0o644); err != nil {
		t.Fatal(err)
	}
	sp.cmd.Process.Signal(syscall.SIGHUP)
	sp.waitLine(t, "registered with "+b.Addr)
	if strings.Contains(s.slaveLog(), "job="+job+" state=") {
		t.Fatalf("job %s ended before the slave switched to beta: the switch was not mid-job\n%s", job, s.slaveLog())
	}
	envB := realm.OperatorEnv(b)
	if out := mustRun(t, envB, "slaves").Stdout; !strings.Contains(out, "tape1") {
		t.Fatalf("beta does not list tape1 after the switch:\n%s", out)
	}
	adopted, ok := jobsOf(t, envB)[job]
	if !ok || adopted.Origin != journalA || !strings.Contains(adopted.By, "adopted") || adopted.Slave != "tape1" {
		t.Fatalf("beta does not list job %s as adopted from alpha's journal %s: %+v (found %v)", job, journalA, adopted, ok)
	}

	// The job finishes at beta.
	opB := realm.Operator(t, b.Addr)
	end := waitJob(t, opB, job, 30*time.Second, "done at beta", func(j jobRec) bool { return j.State == "done" })
	if end.Volumes != int64(len(s.vols)+2) {
		t.Fatalf("job %s ended at beta with %d volumes, want %d: %+v", job, end.Volumes, len(s.vols)+2, end)
	}
	if n := strings.Count(s.slaveLog(), "the master refused a report"); n != 0 {
		t.Fatalf("the slave logged %d refused reports:\n%s", n, s.slaveLog())
	}
	// Every volume recorded once across alpha and beta, the later ones at
	// beta; s2 spans two cartridges, the second labeled by beta.
	recsA, recsB := jobRecords(reportOf(t, s.env), job), jobRecords(reportOf(t, envB), job)
	count := map[string]int{}
	for _, d := range append(slices.Clone(recsA), recsB...) {
		count[d.Volume]++
	}
	for _, v := range append(volumeNames(s.vols), "s1", "s2") {
		if count[v] != 1 {
			t.Fatalf("volume %s is recorded %d times across alpha and beta (want once): alpha %+v\nbeta %+v", v, count[v], recsA, recsB)
		}
	}
	tapesB := tapesOf(t, envB)
	var s2 dumpRec
	for _, d := range recsB {
		if d.Volume == "s2" {
			s2 = d
		}
		for _, label := range d.Tapes {
			if tapesB[label].State != "valid" {
				t.Fatalf("beta: tape %s of job %s is %q after the job, want valid: %+v", label, job, tapesB[label].State, tapesB)
			}
		}
	}
	if len(s2.Tapes) != 2 || !strings.Contains(s2.Tapes[1], statusOf(t, envB).JobPrefix) {
		t.Fatalf("s2 should span alpha's cartridge and one beta labeled (prefix %s): %+v", statusOf(t, envB).JobPrefix, s2)
	}
	checkOnTape(t, s.lib, tapesB, recsB)

	// Its data on tape: every volume of fs1 once, complete, undamaged; the
	// records A acknowledged match their files; one extracts identical.
	seen := map[string]int{}
	for _, cart := range nonBlank(t, s.lib) {
		_, files := tapeLs(t, cart)
		for _, f := range files {
			if f.Job != job {
				continue
			}
			if !f.Complete || f.Damage != "" {
				t.Fatalf("%s file %d of job %s is not intact: %+v", cart, f.File, job, f)
			}
			if f.Part == 1 {
				seen[f.Volume]++
			}
		}
	}
	for _, v := range append(volumeNames(s.vols), "s1", "s2") {
		if seen[v] != 1 {
			t.Fatalf("job %s: volume %s is on tape %d times (want once): %v", job, v, seen[v], seen)
		}
	}
	tapesA := tapesOf(t, s.env)
	checkOnTape(t, s.lib, tapesA, acked)
	extractEquals(t, s.lib, tapesA, acked[0], volumeDir(s.vols, acked[0].Volume), filepath.Join(s.dir, "extracted"))

	// The slave serves B: a new dump B orders succeeds on a cartridge that
	// was blank (A's labels are unknown media to B).
	blanks := blankCartridges(t, s.lib)
	vol := filepath.Base(s.vols[0])
	if res := Run(t, envB, "dump", "volume", vol, "--server", "fs1", "--partition", "vicepa", "--level", "full"); res.Code != 0 || !strings.Contains(res.Stderr, " done") {
		t.Fatalf("a dump ordered by beta after the switch: exit %d\n%s\nslave log:\n%s", res.Code, res.Stderr, s.slaveLog())
	}
	var fresh []dumpRec
	for _, d := range reportOf(t, envB) {
		if d.Job != job {
			fresh = append(fresh, d)
		}
	}
	tapesB = tapesOf(t, envB)
	if len(fresh) != 1 || fresh[0].Volume != vol || !slices.Contains(blanks, tapesB[fresh[0].Tapes[0]].Name) {
		t.Fatalf("beta's dump of %s: want one record on a cartridge blank before it (%v), got %+v (tapes %+v)", vol, blanks, fresh, tapesB)
	}
	checkOnTape(t, s.lib, tapesB, fresh)

	// A's orders are no longer obeyed: a dump A queues stays dispatched.
	idA := s.detach(t, "volume", vol, "--server", "fs1", "--partition", "vicepa")
	time.Sleep(time.Second)
	if j := jobsOf(t, s.env)[idA]; j.State != "dispatched" || strings.Contains(s.slaveLog(), "job="+idA) {
		t.Fatalf("alpha's job %s after the slave moved to beta: %+v (want dispatched, never run)\n%s", idA, j, s.slaveLog())
	}

	// A keeps what it acknowledged, and after a restart too.
	containsRecords(t, "alpha after the switch", reportOf(t, s.env), acked)
	a.Kill(t)
	a.Start(t)
	containsRecords(t, "alpha after its restart", reportOf(t, s.env), acked)
}

// switchConfig is faultsConfig with 10 MiB cartridges and an s2 that dumps
// 6 MB: vicepa's three volumes (about 7 MiB) fit on the first cartridge,
// s2 (dumped after the switch) continues on another.
func switchConfig(master, dir, certs, partition string) string {
	return switchConfigSleep(master, dir, certs, partition, 2)
}

func switchConfigSleep(master, dir, certs, partition string, sleep int) string {
	cfg := strings.Replace(faultsConfig(master, dir, certs, partition, sleep), "capacity: 64MiB", "capacity: 10MiB", 1)
	return strings.Replace(cfg, "printf %s {volume};", "printf %s {volume}; [ {volume} != s2 ] || head -c 6000000 /dev/zero;", 1)
}

// statusRec is the part of `abs status --json` tests read.
type statusRec struct {
	JournalID string `json:"journal_id"`
	JobPrefix string `json:"job_prefix"`
	Mode      string `json:"mode"`
}

func statusOf(t *testing.T, env []string) statusRec {
	t.Helper()
	var st statusRec
	out := mustRun(t, env, "status", "--json").Stdout
	if err := json.Unmarshal([]byte(out), &st); err != nil {
		t.Fatalf("abs status --json: %v\n%s", err, out)
	}
	return st
}

// nonBlank lists the library's labeled cartridge files.
func nonBlank(t *testing.T, lib string) []string {
	t.Helper()
	ents, err := os.ReadDir(lib)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range ents {
		if fi, err := e.Info(); err == nil && fi.Mode().IsRegular() && fi.Size() > 0 && strings.HasSuffix(e.Name(), ".tape") {
			out = append(out, filepath.Join(lib, e.Name()))
		}
	}
	return out
}

func volumeNames(vols []string) []string {
	var out []string
	for _, v := range vols {
		out = append(out, filepath.Base(v))
	}
	return out
}

// TestDumpSpansCartridges: with 2 MiB cartridges, a full dump of a ~5 MiB
// volume follows to done; its record names several tapes (comma-separated
// in `abs report`), each part is intact on its cartridge, and a restore
// through the master (the slave reading every part) is identical to the
// volume.
func TestDumpSpansCartridges(t *testing.T) {
	t.Parallel()
	realm := NewRealm(t)
	m := masterFor(t, realm, "span-master")
	m.Start(t)
	defer m.Kill(t)
	s := newSlaveSetup(t, realm, m, 6, func(t *testing.T, dir string) (string, []string) {
		partition := filepath.Join(dir, "vicepa")
		vols, err := fixtures.GenerateVolumes(partition, 1, fixtures.TreeOptions{Seed: 5, Files: 30, Dirs: 6, Large: 1, LargeSize: 5 << 20})
		if err != nil {
			t.Fatal(err)
		}
		return partition, vols
	}, func(dir, certs, partition string) string {
		return slaveConfigCap(m.Addr, "tape1", dir, certs, partition, "2MiB")
	})
	sp := startSlave(t, s.config)
	sp.waitLine(t, "registered with "+m.Addr)

	vol := filepath.Base(s.vols[0])
	if res := Run(t, s.env, "dump", "volume", vol, "--level", "full"); res.Code != 0 || !strings.Contains(res.Stderr, " done") {
		t.Fatalf("abs dump volume %s: exit %d\n%s\nslave log:\n%s", vol, res.Code, res.Stderr, s.slaveLog())
	}
	lines := strings.Split(strings.TrimSpace(mustRun(t, s.env, "report").Stdout), "\n")
	if len(lines) != 1 {
		t.Fatalf("want one dump record, got:\n%s", strings.Join(lines, "\n"))
	}
	f := strings.Split(lines[0], "\t")
	if len(f) != 9 || f[0] != vol || f[3] != "0" || len(strings.Split(f[2], ",")) < 3 {
		t.Fatalf("want a full dump of %s on at least 3 tapes (5 MiB on 2 MiB cartridges), got %q", vol, lines[0])
	}
	recs := reportOf(t, s.env)
	tapes := tapesOf(t, s.env)
	checkValid(t, tapes, recs)
	checkOnTape(t, s.lib, tapes, recs)

	target := filepath.Join(s.dir, "restored", vol)
	if res := Run(t, s.env, "restore", "volume", vol, "--to", target); res.Code != 0 || !strings.Contains(res.Stderr, " done") {
		t.Fatalf("abs restore volume %s: exit %d\n%s\nslave log:\n%s", vol, res.Code, res.Stderr, s.slaveLog())
	}
	want, _ := fixtures.Scan(s.vols[0])
	got, _ := fixtures.Scan(target)
	if d := want.Diff(got, fixtures.DiffOptions{MTimePrecision: time.Second}); len(d) > 0 {
		t.Fatalf("restore of %s from %s differs:\n%s", vol, f[2], strings.Join(d, "\n"))
	}
}
