package master

import (
	"cmp"
	"context"
	"errors"
	"slices"
	"strings"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/abs-backup/abs/api"
	"github.com/abs-backup/abs/cluster"
	"github.com/abs-backup/abs/statemachine"
)

// operator serves api.OperatorService. Every handler turns a request into a
// command or a query through the commit loop (never touching the state
// itself), or reads the catalog, which holds everything acknowledged.
type operator struct {
	api.UnimplementedOperatorServiceServer
	m *Master
}

func caller(ctx context.Context) string {
	id, _ := ctx.Value(identityKey{}).(cluster.Identity)
	return id.Name
}

// rpcError maps a refusal to its gRPC status; other errors are internal.
func rpcError(err error) error {
	if err == nil {
		return nil
	}
	if r, ok := statemachine.AsRefusal(err); ok {
		code := codes.Internal
		switch r.Code {
		case statemachine.InvalidArgument:
			code = codes.InvalidArgument
		case statemachine.NotFound:
			code = codes.NotFound
		case statemachine.FailedPrecondition:
			code = codes.FailedPrecondition
		case statemachine.Unavailable:
			code = codes.Unavailable
		case statemachine.Unregistered:
			code = codes.Unauthenticated // the slave must register (again) before this call
		}
		return status.Error(code, r.Msg)
	}
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return status.FromContextError(err).Err()
	}
	return status.Error(codes.Internal, err.Error())
}

func (o *operator) Dump(ctx context.Context, req *api.DumpRequest) (*api.Job, error) {
	t := req.GetTarget()
	if t == nil {
		return nil, status.Error(codes.InvalidArgument, "no dump target given")
	}
	scope, err := statemachine.ParseScope(t.GetScope())
	if err != nil {
		return nil, status.Error(codes.InvalidArgument, err.Error())
	}
	level, err := statemachine.ParseLevel(req.GetLevel())
	if err != nil {
		return nil, status.Error(codes.InvalidArgument, err.Error())
	}
	cmd := statemachine.QueueDump{
		Target: statemachine.Target{Scope: scope, Server: t.GetServer(), Partition: t.GetPartition(), Volume: t.GetVolume()},
		Level:  level,
		By:     caller(ctx),
	}
	return o.queue(ctx, cmd)
}

// queue decides a command that queues a job and answers with the job.
func (o *operator) queue(ctx context.Context, cmd statemachine.Command) (*api.Job, error) {
	res, err := o.m.loop.propose(ctx, cmd, func(_ *statemachine.State, evs []statemachine.Event) any {
		return evs[0].(statemachine.JobQueued).Job
	})
	if err != nil {
		return nil, rpcError(err)
	}
	j := res.val.(statemachine.Job)
	j.QueuedIndex = res.index
	return jobProto(j), nil
}

func (o *operator) Abort(ctx context.Context, req *api.AbortRequest) (*api.Job, error) {
	id := statemachine.JobID(strings.TrimSpace(req.GetId()))
	res, err := o.m.loop.propose(ctx, statemachine.AbortJob{ID: id, By: caller(ctx)}, func(s *statemachine.State, _ []statemachine.Event) any {
		j, _ := s.Job(id)
		return j
	})
	if r, ok := statemachine.AsRefusal(err); ok && r.Code == statemachine.NotFound {
		// The state remembers only recent jobs; the catalog knows them all.
		if j, found, cerr := o.m.cat.Job(id); cerr == nil && found {
			return nil, status.Errorf(codes.FailedPrecondition, "job %s already ended (%s)", id, j.State)
		}
	}
	if err != nil {
		return nil, rpcError(err)
	}
	return jobProto(res.val.(statemachine.Job)), nil
}

func (o *operator) GetJob(ctx context.Context, req *api.GetJobRequest) (*api.Job, error) {
	id := statemachine.JobID(strings.TrimSpace(req.GetId()))
	if id == "" {
		return nil, status.Error(codes.InvalidArgument, "no job ID given")
	}
	res, err := o.m.loop.propose(ctx, nil, func(s *statemachine.State, _ []statemachine.Event) any {
		j, ok := s.Job(id)
		if !ok {
			return nil
		}
		j.Why = s.Waiting(j)
		p := jobProto(j)
		if !j.State.Ended() {
			vols, bytes := s.Estimate(j)
			p.ExpectedVolumes, p.ExpectedBytes = int64(vols), bytes
		}
		return p
	})
	if err != nil {
		return nil, rpcError(err)
	}
	if j, ok := res.val.(*api.Job); ok {
		return j, nil
	}
	j, found, err := o.m.cat.Job(id)
	if err != nil {
		return nil, rpcError(err)
	}
	if !found {
		return nil, status.Errorf(codes.NotFound, "no job %s (`abs jobs --all` lists jobs)", id)
	}
	return jobProto(j), nil
}

// Listing bounds: a page of every job, and the most a "newest N" may ask
// for; both keep an answer far below gRPC's 4 MiB message limit.
const (
	jobsPage  = 2000
	maxNewest = 10000
)

func (o *operator) ListJobs(ctx context.Context, req *api.ListJobsRequest) (*api.ListJobsResponse, error) {
	if !req.GetAll() {
		return o.activeJobs(ctx, req)
	}
	// Every job ever: from the catalog, which holds every acknowledged one
	// (replies are sent only after the catalog commit), in pages so that no
	// answer outgrows a gRPC message.
	resp := &api.ListJobsResponse{}
	var jobs []statemachine.Job
	var err error
	if limit := min(int(req.GetLimit()), maxNewest); limit > 0 {
		err = o.m.cat.JobsReverse(func(j statemachine.Job) bool {
			jobs = append(jobs, j)
			return len(jobs) < limit
		})
		slices.Reverse(jobs)
	} else {
		// A page ends between journal indices: the jobs adopted by one
		// registration share one, and the next page starts after it.
		more := false
		err = o.m.cat.Jobs(req.GetAfterIndex(), func(j statemachine.Job) bool {
			if len(jobs) >= jobsPage && j.QueuedIndex != jobs[len(jobs)-1].QueuedIndex {
				more = true
				return false
			}
			jobs = append(jobs, j)
			return true
		})
		if more {
			resp.NextAfterIndex = jobs[len(jobs)-1].QueuedIndex
		}
	}
	if err != nil {
		return nil, rpcError(err)
	}
	// Jobs not ended: show their live wait reason (the page's jobs only).
	ids := make([]statemachine.JobID, len(jobs))
	for i, j := range jobs {
		ids[i] = j.ID
	}
	live, err := o.m.loop.propose(ctx, nil, func(s *statemachine.State, _ []statemachine.Event) any {
		out := map[statemachine.JobID]statemachine.Job{}
		for _, id := range ids {
			if j, ok := s.Jobs[id]; ok {
				c := *j
				c.Why = s.Waiting(c)
				out[id] = c
			}
		}
		return out
	})
	if err != nil {
		return nil, rpcError(err)
	}
	active := live.val.(map[statemachine.JobID]statemachine.Job)
	for _, j := range jobs {
		if a, ok := active[j.ID]; ok {
			j = a
		}
		resp.Jobs = append(resp.Jobs, jobProto(j))
	}
	return resp, nil
}

// activeJobs lists the jobs not ended, from the state, a page at a time in
// queueing order.
func (o *operator) activeJobs(ctx context.Context, req *api.ListJobsRequest) (*api.ListJobsResponse, error) {
	after := req.GetAfterIndex()
	limit := jobsPage
	if n := int(req.GetLimit()); n > 0 && n < limit {
		limit = n
	}
	res, err := o.m.loop.propose(ctx, nil, func(s *statemachine.State, _ []statemachine.Event) any {
		var page []statemachine.Job
		for _, j := range s.Jobs {
			if j.QueuedIndex > after {
				page = append(page, *j)
			}
		}
		slices.SortFunc(page, func(a, b statemachine.Job) int {
			return cmp.Or(cmp.Compare(a.QueuedIndex, b.QueuedIndex), cmp.Compare(a.ID, b.ID))
		})
		// A page ends between journal indices (jobs adopted together share one).
		n := min(len(page), limit)
		for n < len(page) && n > 0 && page[n].QueuedIndex == page[n-1].QueuedIndex {
			n++
		}
		more := len(page) > n
		page = page[:n]
		for i := range page {
			page[i].Why = s.Waiting(page[i])
		}
		return activePage{page, more}
	})
	if err != nil {
		return nil, rpcError(err)
	}
	p := res.val.(activePage)
	resp := &api.ListJobsResponse{}
	for _, j := range p.jobs {
		resp.Jobs = append(resp.Jobs, jobProto(j))
	}
	if p.more && req.GetLimit() == 0 {
		resp.NextAfterIndex = p.jobs[len(p.jobs)-1].QueuedIndex
	}
	return resp, nil
}

type activePage struct {
	jobs []statemachine.Job
	more bool
}

func (o *operator) Status(ctx context.Context, _ *api.StatusRequest) (*api.StatusResponse, error) {
	m := o.m
	res, err := m.loop.propose(ctx, nil, func(s *statemachine.State, _ []statemachine.Event) any {
		r := &api.StatusResponse{
			Realm: s.Journal.Realm, Mode: s.Journal.Mode, JournalId: s.Journal.ID, JobPrefix: s.Prefix,
			Epoch: s.Master.Epoch, LastIndex: s.Applied,
			Slaves: uint32(len(s.Slaves)), Tapes: uint32(len(s.Tapes)), Volumes: uint32(len(s.Volumes)),
			JobsByState: map[string]uint64{},
		}
		for st, n := range s.JobCounts() {
			r.JobsByState[st.String()] = n
		}
		return r
	})
	if err != nil {
		return nil, rpcError(err)
	}
	r := res.val.(*api.StatusResponse)
	r.Node, r.Listen, r.Metrics = m.cfg.Node.Name, m.addr, m.metrics
	r.StartedAtUnixNano = m.started.UnixNano()
	r.ClusterHash = m.cfg.Cluster.Hash()
	if meta, err := m.cat.Meta(); err == nil {
		r.AppliedIndex = meta.Applied
	}
	r.JournalBytes = journalBytes(m.j.Dir())
	return r, nil
}

func targetProto(t statemachine.Target) *api.Target {
	return &api.Target{Scope: t.Scope.String(), Server: t.Server, Partition: t.Partition, Volume: t.Volume}
}

func jobProto(j statemachine.Job) *api.Job {
	level := j.Level.String()
	if j.Kind != statemachine.KindDump {
		level = ""
	}
	return &api.Job{
		Id: string(j.ID), Kind: j.Kind.String(), Target: targetProto(j.Target), Level: level,
		State: j.State.String(), By: j.By, Slave: j.Slave, Why: j.Why, AbortRequested: j.AbortRequested,
		QueuedAtUnixNano: j.QueuedAt, UpdatedAtUnixNano: j.UpdatedAt, EndedAtUnixNano: j.EndedAt,
		QueuedIndex: j.QueuedIndex, Volumes: int64(j.Volumes), Bytes: j.Bytes, Origin: j.Origin,
	}
}
