package chaos

import (
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/abs-backup/abs/fixtures"
)

// TestDumpEndToEnd: a real master and a real slave on loopback dump a
// partition of generated volumes onto file-backed cartridges (full, then an
// incremental after changes), the CLI following the job to its end; the
// volume report lists every dump; the cartridges restore, with no daemon,
// byte-identical to the volumes.
func TestDumpEndToEnd(t *testing.T) {
	realm := NewRealm(t)
	m := masterFor(t, realm, "green-acres")
	m.Start(t)
	defer m.Kill(t)
	env := realm.OperatorEnv(m)

	dir := t.TempDir()
	partition := filepath.Join(dir, "vicepa")
	vols, err := fixtures.GenerateVolumes(partition, 3, fixtures.TreeOptions{Seed: 11, Files: 40, Dirs: 8, Large: 1, LargeSize: 512 << 10})
	if err != nil {
		t.Fatal(err)
	}
	mustRun(t, nil, "tape", "new", "--library", filepath.Join(dir, "tapes"), "--count", "4")
	config := filepath.Join(dir, "tape1.yaml")
	os.WriteFile(config, []byte(slaveConfig(m.Addr, "tape1", dir, realm.Issue(t, "slave", "tape1"), partition)), 0o644)
	s := startSlave(t, config)
	s.waitLine(t, "registered with "+m.Addr)

	res := Run(t, env, "dump", "partition", "vicepa", "--server", "fs1", "--level", "full")
	if res.Code != 0 || !strings.Contains(res.Stderr, " done") {
		b, _ := os.ReadFile(config + ".log")
		t.Fatalf("abs dump (following): exit %d\n%s\nslave log:\n%s", res.Code, res.Stderr, b)
	}
	full := time.Now()
	before := map[string]fixtures.Manifest{}
	for _, v := range vols {
		before[v], _ = fixtures.Scan(v)
	}
	time.Sleep(10 * time.Millisecond)
	for i, v := range vols {
		if _, err := fixtures.Mutate(v, uint64(i+1), 10, full.Add(2*time.Second)); err != nil {
			t.Fatal(err)
		}
	}
	if res := Run(t, env, "dump", "partition", "vicepa", "--server", "fs1"); res.Code != 0 {
		t.Fatalf("incremental dump: exit %d\n%s", res.Code, res.Stderr)
	}

	report := strings.TrimSpace(mustRun(t, env, "report").Stdout)
	lines := strings.Split(report, "\n")
	if len(lines) != 6 {
		t.Fatalf("want 6 dump records (3 volumes × full + incremental), got:\n%s", report)
	}
	incrementals := 0
	for _, l := range lines {
		f := strings.Split(l, "\t")
		if len(f) != 9 || f[4] != "fs1" || f[5] != "vicepa" || len(f[8]) != 64 {
			t.Fatalf("bad report line %q", l)
		}
		if f[3] != "0" {
			incrementals++
		}
	}
	if incrementals != 3 {
		b, _ := os.ReadFile(config + ".log")
		t.Fatalf("want 3 incrementals in the report:\n%s\nslave log:\n%s", report, b)
	}
	var tapes []map[string]any
	json.Unmarshal([]byte(mustRun(t, env, "tapes", "--json").Stdout), &tapes)
	if len(tapes) == 0 || tapes[0]["state"] != "valid" {
		t.Fatalf("tapes after the dumps: %v", tapes)
	}

	// The master's metrics count what happened.
	resp, err := http.Get("http://" + m.Metrics + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, want := range []string{"abs_dump_records_total 6", `abs_jobs_ended_total{kind="dump",state="done"} 2`, `abs_tapes{state="valid"} 2`,
		`abs_volume_last_dump_timestamp_seconds{partition="vicepa",server="fs1",volume="user.v001"}`, `abs_job_duration_seconds_count{kind="dump",state="done"} 2`} {
		if !strings.Contains(string(body), want) {
			t.Errorf("master /metrics lacks %q", want)
		}
	}

	// Restores through the master: the latest state, and as of a time
	// between the two dumps (the full alone), each identical.
	for _, v := range vols {
		name := filepath.Base(v)
		for _, tc := range []struct {
			args []string
			want fixtures.Manifest
		}{
			{nil, nil},
			{[]string{"--as-of", full.UTC().Format(time.RFC3339Nano)}, before[v]},
		} {
			target := filepath.Join(dir, "via-master", name+strings.Join(tc.args, ""))
			res := Run(t, env, append([]string{"restore", "volume", name, "--to", target}, tc.args...)...)
			if res.Code != 0 || !strings.Contains(res.Stderr, " done") {
				b, _ := os.ReadFile(config + ".log")
				t.Fatalf("abs restore %s %v: exit %d\n%s\nslave log:\n%s", name, tc.args, res.Code, res.Stderr, b)
			}
			want := tc.want
			if want == nil {
				want, _ = fixtures.Scan(v)
			}
			got, _ := fixtures.Scan(target)
			if d := want.Diff(got, fixtures.DiffOptions{MTimePrecision: time.Second}); len(d) > 0 {
				t.Fatalf("restore of %s %v differs:\n%s", name, tc.args, strings.Join(d, "\n"))
			}
		}
	}
	if res := Run(t, env, "restore", "volume", "nosuch", "--to", filepath.Join(dir, "x")); res.Code != 3 || !strings.Contains(res.Stderr, "no dump of volume nosuch") {
		t.Fatalf("restore of an unknown volume: exit %d\n%s", res.Code, res.Stderr)
	}

	// The last-resort path: extract each volume's full + incremental from
	// the cartridges `abs tape ls` shows, with no daemon, and compare. Job 2
	// could not append to job 1's VALID tapes: its dumps are on new ones.
	byVolume := map[string][]string{}
	for _, tp := range tapes {
		cart := filepath.Join(dir, "tapes", tp["name"].(string)+".tape")
		var listing struct{ Files []map[string]any }
		json.Unmarshal([]byte(mustRun(t, nil, "tape", "ls", cart, "--json").Stdout), &listing)
		for _, f := range listing.Files {
			v := f["volume"].(string)
			byVolume[v] = append(byVolume[v], f["dump_date"].(string)+"|"+cart+":"+strFloat(f["file"])+"|"+f["increment_date"].(string))
		}
	}
	for _, v := range vols {
		name := filepath.Base(v)
		refs := byVolume[name]
		sort.Strings(refs) // by dump date: the full first
		if len(refs) != 2 || !strings.HasSuffix(refs[0], "|0") {
			t.Fatalf("volume %s: want a full and an incremental, got %v", name, refs)
		}
		args := []string{"tape", "extract", strings.Split(strings.Split(refs[0], "|")[1], ":")[0]}
		for _, r := range refs {
			args = append(args, "--file", strings.Split(r, "|")[1])
		}
		target := filepath.Join(dir, "restored", name)
		mustRun(t, nil, append(args, "--to", target)...)
		live, _ := fixtures.Scan(v)
		got, _ := fixtures.Scan(target)
		if d := live.Diff(got, fixtures.DiffOptions{MTimePrecision: time.Second}); len(d) > 0 {
			t.Fatalf("volume %s restored from tape differs:\n%s", name, strings.Join(d, "\n"))
		}
	}
}

func strFloat(v any) string {
	b, _ := json.Marshal(v)
	return string(b)
}
