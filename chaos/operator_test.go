package chaos

import (
	"bufio"
	"encoding/json"
	"io"
	"net/http"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestOperatorFlow drives the CLI as an operator would: queue with and
// without --detach (following a queued job, then Ctrl-C), list as a table
// and as JSON, status as JSON, and read /metrics.
func TestOperatorFlow(t *testing.T) {
	realm := NewRealm(t)
	m := realm.NewMaster(t, "green-acres")
	m.Start(t)
	defer m.Kill(t)
	env := realm.OperatorEnv(m)

	id := strings.TrimSpace(mustRun(t, env, "dump", "volume", "user.alice", "--server", "fs1", "--partition", "vicepa", "--level", "full", "--detach").Stdout)
	if len(id) < 7 || !strings.Contains(id, "-") {
		t.Fatalf("dump --detach printed %q, want a job ID", id)
	}

	// Following: the job waits for a slave and says so; SIGINT stops
	// following and leaves the job queued.
	cmd := exec.Command(Binary(t), "dump", "server", "fs2")
	cmd.Env = append(cmd.Environ(), env...)
	stderr, _ := cmd.StderrPipe()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	sc := bufio.NewScanner(stderr)
	var lines []string
	waiting := false
	deadline := time.AfterFunc(30*time.Second, func() { cmd.Process.Kill() })
	defer deadline.Stop()
	for sc.Scan() {
		lines = append(lines, sc.Text())
		if strings.Contains(sc.Text(), "queued: waiting for a slave: none has registered") {
			waiting = true
			cmd.Process.Signal(syscall.SIGINT)
			break
		}
	}
	rest, _ := io.ReadAll(stderr)
	err := cmd.Wait()
	if !waiting {
		t.Fatalf("abs dump did not show the job waiting for a slave:\n%s", strings.Join(lines, "\n"))
	}
	if err != nil || !strings.Contains(string(rest), "stopped following") {
		t.Fatalf("after SIGINT: %v, output %q", err, rest)
	}

	var jobs []map[string]any
	out := mustRun(t, env, "jobs", "--json").Stdout
	if err := json.Unmarshal([]byte(out), &jobs); err != nil {
		t.Fatalf("jobs --json is not JSON: %v\n%s", err, out)
	}
	if len(jobs) != 2 || jobs[0]["id"] != id || jobs[0]["state"] != "queued" || jobs[0]["volume"] != "user.alice" || jobs[1]["scope"] != "server" {
		t.Fatalf("jobs --json: %s", out)
	}
	if !strings.Contains(jobs[0]["note"].(string), "waiting for a slave") {
		t.Fatalf("a queued job does not say what it waits for: %v", jobs[0])
	}
	table := mustRun(t, env, "jobs").Stdout
	if !strings.Contains(table, "ID") || !strings.Contains(table, id) || !strings.Contains(table, "fs1/vicepa/user.alice") {
		t.Fatalf("jobs table:\n%s", table)
	}

	var st map[string]any
	out = mustRun(t, env, "status", "--json").Stdout
	if err := json.Unmarshal([]byte(out), &st); err != nil {
		t.Fatalf("status --json: %v\n%s", err, out)
	}
	if st["realm"] != "athena" || st["mode"] != "normal" || st["epoch"].(float64) != 1 || st["jobs"].(map[string]any)["queued"].(float64) != 2 {
		t.Fatalf("status --json: %s", out)
	}

	resp, err := http.Get("http://" + m.Metrics + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, want := range []string{
		"abs_journal_append_duration_seconds_count", "abs_journal_fsync_duration_seconds_bucket", "abs_journal_batch_records_count",
		"abs_journal_size_bytes", "abs_journal_last_index", "abs_catalog_applied_index", "abs_catalog_lag_records",
		"abs_master_epoch 1", `abs_jobs{state="queued"} 2`,
	} {
		if !strings.Contains(string(body), want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}
}
