package chaos

import (
	"context"
	"encoding/json"
	"os"
	"strings"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/abs-backup/abs/api"
	"github.com/abs-backup/abs/cluster"
)

// slaveClient dials the master's MasterService with a slave identity.
func slaveClient(t *testing.T, certs, addr string) api.MasterServiceClient {
	t.Helper()
	creds, err := cluster.LoadCredentials(certs)
	if err != nil {
		t.Fatal(err)
	}
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(credentials.NewTLS(creds.ClientTLS(cluster.RoleMaster))))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return api.NewMasterServiceClient(conn)
}

// TestRegisterDevice: a slave registers through MasterService (mutual TLS,
// role slave, its certificate's name, listed in cluster.slaves, same
// cluster hash); `abs slaves` lists it; queued jobs it reaches are
// dispatched to it; every mismatch is refused and writes nothing.
func TestRegisterDevice(t *testing.T) {
	realm := NewRealm(t)
	m := realm.NewMaster(t, "green-acres")
	cfg, _ := os.ReadFile(m.Config)
	os.WriteFile(m.Config, []byte(strings.Replace(string(cfg), "cluster:\n", "cluster:\n  slaves: [tape1, tape2]\n", 1)), 0o644)
	loaded, err := cluster.Load(m.Config)
	if err != nil {
		t.Fatal(err)
	}
	hash := loaded.Cluster.Hash()
	m.Start(t)
	defer m.Kill(t)
	env := realm.OperatorEnv(m)
	queued := strings.TrimSpace(mustRun(t, env, "dump", "partition", "vicepa", "--server", "fs1", "--detach").Stdout)

	tape1 := slaveClient(t, realm.Issue(t, "slave", "tape1"), m.Addr)
	withHash := func(h string) context.Context {
		return metadata.AppendToOutgoingContext(context.Background(), "abs-cluster-hash", h)
	}
	reg := &api.RegisterDeviceRequest{Name: "tape1", Addr: "127.0.0.1:7401", Drives: 2,
		Reaches: []*api.Reach{{Server: "fs1", Partition: "vicepa", Volumes: []string{"user.alice"}}, {Server: "fs2"}}}

	op := realm.Operator(t, m.Addr)
	journalID := statusOf(t, env).JournalID
	stale := &api.RegisterDeviceRequest{Name: "tape1", Addr: "127.0.0.1:7401", Epochs: []*api.JournalEpoch{{JournalId: "other", Epoch: 7}, {JournalId: journalID, Epoch: 2}}}
	badJob := &api.RegisterDeviceRequest{Name: "tape1", Addr: "127.0.0.1:7401", Jobs: []*api.SlaveJob{{Job: "zzzzz-1", Kind: "copy", Target: &api.Target{Scope: "server", Server: "fs1"}}}}
	before := lastIndex(t, op)
	refusals := []struct {
		name string
		ctx  context.Context
		c    api.MasterServiceClient
		req  *api.RegisterDeviceRequest
		code codes.Code
		msg  string
	}{
		{"no cluster hash", context.Background(), tape1, reg, codes.FailedPrecondition, "carries no cluster hash"},
		{"other cluster hash", withHash("0123456789abcdef"), tape1, reg, codes.FailedPrecondition, "cluster configuration differs"},
		{"name differs from certificate", withHash(hash), tape1, &api.RegisterDeviceRequest{Name: "tape2", Addr: "x:1"}, codes.PermissionDenied, "certificate is for slave tape1"},
		{"not in cluster.slaves", withHash(hash), slaveClient(t, realm.Issue(t, "slave", "tape9"), m.Addr), &api.RegisterDeviceRequest{Name: "tape9", Addr: "x:1"}, codes.PermissionDenied, "not in this realm's cluster.slaves"},
		{"operator certificate", withHash(hash), slaveClient(t, realm.OpCerts, m.Addr), reg, codes.PermissionDenied, "needs role slave"},
		{"no address", withHash(hash), tape1, &api.RegisterDeviceRequest{Name: "tape1"}, codes.InvalidArgument, "without an address"},
		{"the slave obeyed a later epoch of this journal", withHash(hash), tape1, stale, codes.FailedPrecondition, "is stale"},
		{"a job of unknown kind", withHash(hash), tape1, badJob, codes.InvalidArgument, `unknown kind "copy"`},
	}
	for _, tc := range refusals {
		_, err := tc.c.RegisterDevice(tc.ctx, tc.req)
		if status.Code(err) != tc.code || !strings.Contains(err.Error(), tc.msg) {
			t.Errorf("%s: got %v, want %s containing %q", tc.name, err, tc.code, tc.msg)
		}
	}
	if after := lastIndex(t, op); after != before {
		t.Fatalf("refused registrations wrote to the journal (%d → %d)", before, after)
	}

	resp, err := tape1.RegisterDevice(withHash(hash), reg)
	if err != nil {
		t.Fatal(err)
	}
	if resp.Epoch != 1 || resp.Realm != "athena" || resp.JournalId == "" {
		t.Fatalf("register answer: %+v", resp)
	}
	// The same registration again changes nothing.
	mid := lastIndex(t, op)
	if _, err := tape1.RegisterDevice(withHash(hash), reg); err != nil {
		t.Fatal(err)
	}
	if got := lastIndex(t, op); got != mid {
		t.Fatalf("a repeated registration wrote %d records", got-mid)
	}

	var slaves []map[string]any
	out := mustRun(t, env, "slaves", "--json").Stdout
	if err := json.Unmarshal([]byte(out), &slaves); err != nil || len(slaves) != 1 || slaves[0]["name"] != "tape1" || slaves[0]["drives"].(float64) != 2 {
		t.Fatalf("slaves --json: %v\n%s", err, out)
	}
	if !strings.Contains(out, "partition fs1/vicepa") || !strings.Contains(out, "volume fs1/vicepa/user.alice") || !strings.Contains(out, "server fs2") {
		t.Fatalf("slaves --json lacks its reach:\n%s", out)
	}
	// The queued partition dump is now dispatched to tape1, durably: it
	// survives a restart.
	m.Kill(t)
	m.Start(t)
	jobs := mustRun(t, env, "jobs", "--json").Stdout
	if !strings.Contains(jobs, `"id": "`+queued+`"`) || !strings.Contains(jobs, `"state": "dispatched"`) || !strings.Contains(jobs, `"slave": "tape1"`) {
		t.Fatalf("the queued job was not dispatched to tape1:\n%s", jobs)
	}
}
