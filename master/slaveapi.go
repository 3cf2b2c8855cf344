package master

import (
	"context"
	"fmt"
	"maps"
	"slices"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/abs-backup/abs/api"
	"github.com/abs-backup/abs/statemachine"
)

// ClusterHashKey is the gRPC metadata key that carries the caller's
// canonical cluster-config hash on every daemon-to-daemon call.
const ClusterHashKey = "abs-cluster-hash"

// slaveAPI serves api.MasterService: the calls media slaves make.
type slaveAPI struct {
	api.UnimplementedMasterServiceServer
	m *Master
}

// checkClusterHash refuses a caller whose cluster section differs from
// ours (Spread's rule: nothing is acted on across configurations).
func (s *slaveAPI) checkClusterHash(ctx context.Context) error {
	md, _ := metadata.FromIncomingContext(ctx)
	theirs := md.Get(ClusterHashKey)
	ours := s.m.cfg.Cluster.Hash()
	switch {
	case len(theirs) == 0:
		return status.Errorf(codes.FailedPrecondition, "the call carries no cluster hash (%s); this master's is %s", ClusterHashKey, ours)
	case theirs[0] != ours:
		return status.Errorf(codes.FailedPrecondition, "cluster configuration differs: caller's hash %s, this master's %s (make the cluster: sections identical on every node)", theirs[0], ours)
	}
	return nil
}

func (s *slaveAPI) RegisterDevice(ctx context.Context, req *api.RegisterDeviceRequest) (*api.RegisterDeviceResponse, error) {
	if err := s.checkClusterHash(ctx); err != nil {
		return nil, err
	}
	name := caller(ctx)
	if req.GetName() != name {
		return nil, status.Errorf(codes.PermissionDenied, "certificate is for slave %s but registers as %q", name, req.GetName())
	}
	if allowed := s.m.cfg.Cluster.Slaves; len(allowed) > 0 && !slices.Contains(allowed, name) && !s.m.opts.Disaster {
		return nil, status.Errorf(codes.PermissionDenied, "slave %s is not in this realm's cluster.slaves %v", name, allowed)
	}
	sl := statemachine.Slave{Name: name, Addr: req.GetAddr(), Drives: int(req.GetDrives())}
	for _, r := range req.GetReaches() {
		switch {
		case r.GetPartition() == "":
			sl.Reaches = append(sl.Reaches, statemachine.Target{Scope: statemachine.ScopeServer, Server: r.GetServer()})
		default:
			sl.Reaches = append(sl.Reaches, statemachine.Target{Scope: statemachine.ScopePartition, Server: r.GetServer(), Partition: r.GetPartition()})
			for _, v := range r.GetVolumes() {
				sl.Reaches = append(sl.Reaches, statemachine.Target{Scope: statemachine.ScopeVolume, Server: r.GetServer(), Partition: r.GetPartition(), Volume: v})
			}
		}
	}
	jobs, err := slaveJobs(req.GetJobs())
	if err != nil {
		return nil, status.Errorf(codes.InvalidArgument, "slave %s: %v", name, err)
	}
	var ids []string
	for _, j := range jobs {
		ids = append(ids, string(j.ID))
	}
	s.m.loop.mu.Lock()
	epoch, journalID := s.m.loop.epoch, s.m.loop.journalID
	s.m.loop.mu.Unlock()
	for _, e := range req.GetEpochs() {
		if e.GetJournalId() == journalID && e.GetEpoch() > epoch {
			s.m.log.Error("refusing a registration: this master is stale", "slave", name, "epoch", epoch, "slave_saw", e.GetEpoch())
			return nil, status.Errorf(codes.FailedPrecondition, "this master (journal %s, epoch %d) is stale: slave %s already obeyed epoch %d of this journal, so the master moved elsewhere; stop this copy",
				journalID, epoch, name, e.GetEpoch())
		}
	}
	res, err := s.m.loop.propose(ctx, statemachine.RegisterSlave{Slave: sl, Jobs: jobs}, func(st *statemachine.State, evs []statemachine.Event) any {
		for _, e := range evs {
			if a, ok := e.(statemachine.JobAdopted); ok {
				s.m.log.Info("job adopted", "job", a.Job.ID, "slave", name, "origin", a.Job.Origin, "target", a.Job.Target.String(), "tapes", len(a.Tapes))
			}
		}
		return &api.RegisterDeviceResponse{JournalId: st.Journal.ID, Epoch: st.Master.Epoch, Realm: st.Journal.Realm}
	})
	if err != nil {
		return nil, rpcError(err)
	}
	s.m.log.Info("slave registered", "slave", name, "addr", sl.Addr, "drives", sl.Drives, "reaches", len(sl.Reaches), "jobs", len(jobs))
	s.resend(ctx, name, ids)
	return res.val.(*api.RegisterDeviceResponse), nil
}

// slaveJobs reads the jobs a registering slave lists.
func slaveJobs(in []*api.SlaveJob) ([]statemachine.SlaveJob, error) {
	var out []statemachine.SlaveJob
	for _, j := range in {
		sj := statemachine.SlaveJob{ID: statemachine.JobID(j.GetJob()), Origin: j.GetOrigin(), Volumes: int(j.GetVolumes()), Bytes: j.GetBytes()}
		t := j.GetTarget()
		scope, err := statemachine.ParseScope(t.GetScope())
		if err != nil {
			return nil, fmt.Errorf("job %s: %w", sj.ID, err)
		}
		sj.Target = statemachine.Target{Scope: scope, Server: t.GetServer(), Partition: t.GetPartition(), Volume: t.GetVolume()}
		switch j.GetKind() {
		case "dump":
			sj.Kind = statemachine.KindDump
			if sj.Level, err = statemachine.ParseLevel(j.GetLevel()); err != nil {
				return nil, fmt.Errorf("job %s: %w", sj.ID, err)
			}
			for _, h := range j.GetTapes() {
				sj.Tapes = append(sj.Tapes, statemachine.HeldTape{Label: h.GetLabel(), Name: h.GetCartridge(), Files: int(h.GetFiles())})
			}
		case "restore":
			sj.Kind = statemachine.KindRestore
			sj.Restore = &statemachine.RestoreSpec{To: j.GetTo()}
			for _, d := range j.GetPlan() {
				sj.Restore.Plan = append(sj.Restore.Plan, dumpFromProto(d))
			}
		default:
			return nil, fmt.Errorf("job %s is of unknown kind %q (want dump or restore)", sj.ID, j.GetKind())
		}
		out = append(out, sj)
	}
	return out, nil
}

// resend re-derives what a (re-)registering slave is owed: dispatched jobs
// it does not report in progress are dispatched again, aborts are sent
// again (both are idempotent on the slave).
func (s *slaveAPI) resend(ctx context.Context, name string, inProgress []string) {
	res, err := s.m.loop.propose(ctx, nil, func(st *statemachine.State, _ []statemachine.Event) any {
		var effects []statemachine.Effect
		for _, j := range st.ActiveJobs() {
			switch {
			case j.Slave != name:
			case j.AbortRequested:
				effects = append(effects, statemachine.SendAbort{Job: j.ID, Slave: name})
			case j.State == statemachine.StateDispatched && !slices.Contains(inProgress, string(j.ID)):
				effects = append(effects, statemachine.DispatchJob{Job: j, Slave: name})
			}
		}
		return effects
	})
	if err != nil {
		return
	}
	for _, e := range res.val.([]statemachine.Effect) {
		select {
		case s.m.loop.effects <- e:
		default: // re-derived again at the next registration or start
		}
	}
}

// ListSlaves is an operator call (OperatorService), kept beside the slave
// API it reports on.
func (o *operator) ListSlaves(ctx context.Context, _ *api.ListSlavesRequest) (*api.ListSlavesResponse, error) {
	res, err := o.m.loop.propose(ctx, nil, func(st *statemachine.State, _ []statemachine.Event) any {
		load := map[string]uint32{}
		for _, j := range st.Jobs {
			if j.Slave != "" {
				load[j.Slave]++
			}
		}
		resp := &api.ListSlavesResponse{}
		for _, name := range slices.Sorted(maps.Keys(st.Slaves)) {
			sl := st.Slaves[name]
			info := &api.SlaveInfo{Name: sl.Name, Addr: sl.Addr, Drives: uint32(sl.Drives), RegisteredAtUnixNano: sl.RegisteredAt, LastSeq: sl.LastSeq, Jobs: load[name]}
			for _, t := range sl.Reaches {
				info.Reaches = append(info.Reaches, targetProto(t))
			}
			resp.Slaves = append(resp.Slaves, info)
		}
		return resp
	})
	if err != nil {
		return nil, rpcError(err)
	}
	return res.val.(*api.ListSlavesResponse), nil
}

// checkSlave runs the checks every slave call shares: the cluster hash, and
// that the slave speaks for itself.
func (s *slaveAPI) checkSlave(ctx context.Context, claimed string) (string, error) {
	if err := s.checkClusterHash(ctx); err != nil {
		return "", err
	}
	name := caller(ctx)
	if claimed != name {
		return "", status.Errorf(codes.PermissionDenied, "certificate is for slave %s but the call is for %q", name, claimed)
	}
	return name, nil
}

func (s *slaveAPI) ValidateTape(ctx context.Context, req *api.ValidateTapeRequest) (*api.ValidateTapeResponse, error) {
	if _, err := s.checkSlave(ctx, req.GetSlave()); err != nil {
		return nil, err
	}
	res, err := s.m.loop.propose(ctx, nil, func(st *statemachine.State, _ []statemachine.Event) any {
		v, why := st.ValidateTape(statemachine.JobID(req.GetJob()), req.GetLabel())
		return &api.ValidateTapeResponse{Verdict: verdictName(v), Writable: v.Writable(), Reason: why}
	})
	if err != nil {
		return nil, rpcError(err)
	}
	return res.val.(*api.ValidateTapeResponse), nil
}

// verdictName is the wire name of a tape verdict.
func verdictName(v statemachine.TapeVerdict) string {
	switch v {
	case statemachine.TapeBlank:
		return "blank"
	case statemachine.TapeMine:
		return "mine"
	case statemachine.TapeHoldsValidDumps:
		return "valid"
	case statemachine.TapeReservedByOther:
		return "reserved"
	case statemachine.TapeExpiredVerdict:
		return "expired"
	}
	return "unknown"
}

func (s *slaveAPI) GenLabel(ctx context.Context, req *api.GenLabelRequest) (*api.GenLabelResponse, error) {
	name, err := s.checkSlave(ctx, req.GetSlave())
	if err != nil {
		return nil, err
	}
	cmd := statemachine.GenLabel{Slave: name, Job: statemachine.JobID(req.GetJob()), Name: req.GetCartridge()}
	res, err := s.m.loop.propose(ctx, cmd, func(st *statemachine.State, evs []statemachine.Event) any {
		return &api.GenLabelResponse{Label: evs[0].(statemachine.TapeLabeled).Label, Realm: st.Journal.Realm, Origin: st.Journal.ID}
	})
	if err != nil {
		return nil, rpcError(err)
	}
	return res.val.(*api.GenLabelResponse), nil
}

func (s *slaveAPI) ValidateLabel(ctx context.Context, req *api.ValidateLabelRequest) (*api.ValidateLabelResponse, error) {
	name, err := s.checkSlave(ctx, req.GetSlave())
	if err != nil {
		return nil, err
	}
	cmd := statemachine.ValidateLabel{Slave: name, Job: statemachine.JobID(req.GetJob()), Label: req.GetLabel()}
	if _, err := s.m.loop.propose(ctx, cmd, nil); err != nil {
		return nil, rpcError(err)
	}
	return &api.ValidateLabelResponse{}, nil
}

// report decides a slave's report; a report whose seq was already applied
// changes nothing and is acknowledged as a duplicate.
func (s *slaveAPI) report(ctx context.Context, r statemachine.Report) (*api.ReportAck, error) {
	res, err := s.m.loop.propose(ctx, r, func(_ *statemachine.State, evs []statemachine.Event) any {
		return &api.ReportAck{Duplicate: len(evs) == 0}
	})
	if err != nil {
		return nil, rpcError(err)
	}
	return res.val.(*api.ReportAck), nil
}

func (s *slaveAPI) DumpCheckpoint(ctx context.Context, req *api.DumpCheckpointRequest) (*api.ReportAck, error) {
	name, err := s.checkSlave(ctx, req.GetSlave())
	if err != nil {
		return nil, err
	}
	d := req.GetDump()
	if d == nil {
		return nil, status.Error(codes.InvalidArgument, "a checkpoint without its dump record")
	}
	dump := dumpFromProto(d)
	dump.Job = ""
	return s.report(ctx, statemachine.Report{Slave: name, Seq: req.GetSeq(), ID: statemachine.JobID(req.GetJob()),
		Volumes: int(req.GetVolumes()), Bytes: req.GetBytes(), Dump: &dump})
}

func (s *slaveAPI) JobStatus(ctx context.Context, req *api.JobStatusRequest) (*api.ReportAck, error) {
	name, err := s.checkSlave(ctx, req.GetSlave())
	if err != nil {
		return nil, err
	}
	return s.report(ctx, statemachine.Report{Slave: name, Seq: req.GetSeq(), ID: statemachine.JobID(req.GetJob()),
		Volumes: int(req.GetVolumes()), Bytes: req.GetBytes(), Why: req.GetNote()})
}

func (s *slaveAPI) JobDone(ctx context.Context, req *api.JobDoneRequest) (*api.ReportAck, error) {
	name, err := s.checkSlave(ctx, req.GetSlave())
	if err != nil {
		return nil, err
	}
	var end statemachine.JobState
	switch req.GetState() {
	case "done":
		end = statemachine.StateDone
	case "failed":
		end = statemachine.StateFailed
	case "aborted":
		end = statemachine.StateAborted
	default:
		return nil, status.Errorf(codes.InvalidArgument, "a job ends done, failed or aborted, not %q", req.GetState())
	}
	return s.report(ctx, statemachine.Report{Slave: name, Seq: req.GetSeq(), ID: statemachine.JobID(req.GetJob()), End: end, Why: req.GetWhy()})
}
