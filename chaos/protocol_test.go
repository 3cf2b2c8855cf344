package chaos

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/abs-backup/abs/api"
	"github.com/abs-backup/abs/cluster"
)

// TestTapeProtocol drives the master's side of the slave protocol with a
// scripted slave (a gRPC client with a slave certificate): the ABS label
// protocol, a checkpoint, a duplicate, a refused checkpoint, the job's end;
// then the operator listings (`abs report` in the volume report's exact
// format, `abs tapes`, `abs volumes`) before and after a SIGKILL.
func TestTapeProtocol(t *testing.T) {
	realm := NewRealm(t)
	m := realm.NewMaster(t, "green-acres")
	m.Start(t)
	defer m.Kill(t)
	cfg, err := cluster.Load(m.Config)
	if err != nil {
		t.Fatal(err)
	}
	ctx := metadata.AppendToOutgoingContext(context.Background(), "abs-cluster-hash", cfg.Cluster.Hash())
	env := realm.OperatorEnv(m)
	slave := slaveClient(t, realm.Issue(t, "slave", "tape1"), m.Addr)
	if _, err := slave.RegisterDevice(ctx, &api.RegisterDeviceRequest{Name: "tape1", Addr: "127.0.0.1:7401", Drives: 1,
		Reaches: []*api.Reach{{Server: "fs1", Partition: "vicepa"}}}); err != nil {
		t.Fatal(err)
	}
	job := strings.TrimSpace(mustRun(t, env, "dump", "partition", "vicepa", "--server", "fs1", "--level", "full", "--detach").Stdout)

	v, err := slave.ValidateTape(ctx, &api.ValidateTapeRequest{Slave: "tape1", Job: job, Cartridge: "A00001"})
	if err != nil || v.Verdict != "blank" || !v.Writable {
		t.Fatalf("ValidateTape of a blank cartridge: %v %v", v, err)
	}
	gl, err := slave.GenLabel(ctx, &api.GenLabelRequest{Slave: "tape1", Job: job, Cartridge: "A00001"})
	if err != nil || !strings.HasPrefix(gl.Label, "athena-") || gl.Realm != "athena" || gl.Origin == "" {
		t.Fatalf("GenLabel: %v %v", gl, err)
	}
	if _, err := slave.ValidateLabel(ctx, &api.ValidateLabelRequest{Slave: "tape1", Job: job, Label: gl.Label}); err != nil {
		t.Fatal(err)
	}
	if _, err := slave.ValidateLabel(ctx, &api.ValidateLabelRequest{Slave: "tape1", Job: job, Label: "otherrealm-x-1"}); status.Code(err) != codes.FailedPrecondition {
		t.Fatalf("ValidateLabel of a foreign label: %v", err)
	}
	if _, err := slave.JobStatus(ctx, &api.JobStatusRequest{Slave: "tape1", Seq: 1, Job: job, Note: "writing user.alice"}); err != nil {
		t.Fatal(err)
	}
	if out := mustRun(t, env, "jobs").Stdout; !strings.Contains(out, "running") || !strings.Contains(out, "writing user.alice") {
		t.Fatalf("jobs while running:\n%s", out)
	}
	dumpDate := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	cp := &api.DumpCheckpointRequest{Slave: "tape1", Seq: 2, Job: job, Volumes: 1, Bytes: 4096, Dump: &api.DumpRecord{
		Volume: "user.alice", Server: "fs1", Partition: "vicepa", DumpDateUnixNano: dumpDate.UnixNano(), Tapes: []string{gl.Label},
		File: 1, Bytes: 4096, Sha256: strings.Repeat("ab", 32)}}
	if ack, err := slave.DumpCheckpoint(ctx, cp); err != nil || ack.Duplicate {
		t.Fatalf("checkpoint: %v %v", ack, err)
	}
	if ack, err := slave.DumpCheckpoint(ctx, cp); err != nil || !ack.Duplicate {
		t.Fatalf("a repeated checkpoint must be acknowledged as a duplicate: %v %v", ack, err)
	}
	bad := &api.DumpCheckpointRequest{Slave: "tape1", Seq: 3, Job: job, Dump: &api.DumpRecord{Volume: "user.bob", Server: "fs1", Partition: "vicepa",
		DumpDateUnixNano: dumpDate.UnixNano(), Tapes: []string{"otherrealm-x-1"}, File: 2, Bytes: 1}}
	if _, err := slave.DumpCheckpoint(ctx, bad); status.Code(err) != codes.FailedPrecondition || !strings.Contains(err.Error(), "unknown media") {
		t.Fatalf("a checkpoint on a tape the job did not reserve: %v", err)
	}
	if _, err := slave.DumpCheckpoint(ctx, &api.DumpCheckpointRequest{Slave: "tape2", Seq: 9, Job: job, Dump: cp.Dump}); status.Code(err) != codes.PermissionDenied {
		t.Fatalf("a slave speaking for another: %v", err)
	}
	if _, err := slave.JobDone(ctx, &api.JobDoneRequest{Slave: "tape1", Seq: 4, Job: job, State: "done"}); err != nil {
		t.Fatal(err)
	}
	if v, _ := slave.ValidateTape(ctx, &api.ValidateTapeRequest{Slave: "tape1", Job: "other-1", Label: gl.Label}); v.Verdict != "valid" || v.Writable {
		t.Fatalf("a tape holding a dump must be valid and not writable: %v", v)
	}

	wantLine := "user.alice\t2026-03-01T12:00:00Z\t" + gl.Label + "\t0\tfs1\tvicepa\t1\t4096\t" + strings.Repeat("ab", 32) + "\n"
	check := func(when string) {
		if out := mustRun(t, env, "report").Stdout; out != wantLine {
			t.Fatalf("%s: abs report:\n%q\nwant\n%q", when, out, wantLine)
		}
		var tapes []map[string]any
		out := mustRun(t, env, "tapes", "--json").Stdout
		if err := json.Unmarshal([]byte(out), &tapes); err != nil || len(tapes) != 1 || tapes[0]["state"] != "valid" || tapes[0]["name"] != "A00001" || tapes[0]["files"].(float64) != 1 {
			t.Fatalf("%s: abs tapes --json: %v\n%s", when, err, out)
		}
		if out := mustRun(t, env, "volumes").Stdout; !strings.Contains(out, "user.alice") || !strings.Contains(out, "fs1/vicepa") {
			t.Fatalf("%s: abs volumes:\n%s", when, out)
		}
		if out := mustRun(t, env, "jobs", "--all", "--json").Stdout; !strings.Contains(out, `"state": "done"`) {
			t.Fatalf("%s: the job did not end done:\n%s", when, out)
		}
	}
	check("before the kill")
	m.Kill(t)
	m.Start(t)
	check("after SIGKILL and restart")
	if res := Run(t, env, "report", "--partition", "vicepa"); res.Code != 2 {
		t.Fatalf("report --partition without --server: exit %d", res.Code)
	}
}
