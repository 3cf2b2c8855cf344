package slave

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/abs-backup/abs/api"
	"github.com/abs-backup/abs/cluster"
)

// Metadata keys a master sends with its calls.
const (
	JournalIDKey = "abs-journal-id"
	EpochKey     = "abs-epoch"
)

// service serves api.SlaveService: the master's orders. Each returns once
// the order is durably queued on the slave; outcomes go back as reports.
type service struct {
	api.UnimplementedSlaveServiceServer
	s *Slave
}

func (v *service) Backup(ctx context.Context, req *api.BackupRequest) (*api.Queued, error) {
	origin, err := v.s.obey(ctx)
	if err != nil {
		return nil, err
	}
	t := req.GetTarget()
	if req.GetJob() == "" || t == nil {
		return nil, status.Error(codes.InvalidArgument, "a backup order needs a job and a target")
	}
	o := DumpOrder{Job: req.GetJob(), Scope: t.GetScope(), Server: t.GetServer(), Partition: t.GetPartition(), Volume: t.GetVolume(),
		Level: req.GetLevel(), Since: map[string]time.Time{}, Origin: origin}
	for _, vs := range req.GetSince() {
		o.Since[vs.GetServer()+"/"+vs.GetPartition()+"/"+vs.GetVolume()] = time.Unix(0, vs.GetSinceUnixNano()).UTC()
	}
	v.s.log.Info("backup order", "job", o.Job, "scope", o.Scope, "level", o.Level, "volumes_with_increment_date", len(o.Since))
	isNew, err := v.s.agent.accept(o)
	if err != nil {
		return nil, status.Errorf(codes.Internal, "slave journal: %v", err)
	}
	if isNew {
		v.s.start(o)
	}
	return &api.Queued{Already: !isNew}, nil
}

func (v *service) Restore(ctx context.Context, req *api.SlaveRestoreRequest) (*api.Queued, error) {
	origin, err := v.s.obey(ctx)
	if err != nil {
		return nil, err
	}
	if req.GetJob() == "" || req.GetVolume() == "" || len(req.GetPlan()) == 0 || req.GetTo() == "" {
		return nil, status.Error(codes.InvalidArgument, "a restore order needs a job, a volume, a target and a plan")
	}
	o := RestoreOrder{Job: req.GetJob(), Server: req.GetServer(), Partition: req.GetPartition(), Volume: req.GetVolume(), To: req.GetTo(), Origin: origin}
	for _, d := range req.GetPlan() {
		rec := DumpRecord{Volume: d.GetVolume(), Server: d.GetServer(), Partition: d.GetPartition(), DumpDate: time.Unix(0, d.GetDumpDateUnixNano()).UTC(),
			Tapes: d.GetTapes(), File: int(d.GetFile()), Bytes: d.GetBytes(), SHA256: d.GetSha256()}
		if d.GetIncrementDateUnixNano() != 0 {
			rec.IncrementDate = time.Unix(0, d.GetIncrementDateUnixNano()).UTC()
		}
		o.Plan = append(o.Plan, rec)
	}
	v.s.log.Info("restore order", "job", o.Job, "volume", o.Volume, "to", o.To, "dumps", len(o.Plan))
	isNew, err := v.s.agent.acceptRestore(o)
	if err != nil {
		return nil, status.Errorf(codes.Internal, "slave journal: %v", err)
	}
	if isNew {
		v.s.startJob(o.Job, "restore", func(ctx context.Context, drive int) (int, int64, error) { return v.s.runRestore(ctx, drive, o) })
	}
	return &api.Queued{Already: !isNew}, nil
}

func (v *service) Abort(ctx context.Context, req *api.SlaveAbortRequest) (*api.Queued, error) {
	if _, err := v.s.obey(ctx); err != nil {
		return nil, err
	}
	v.s.mu.Lock()
	cancel, ok := v.s.running[req.GetJob()]
	v.s.mu.Unlock()
	if ok {
		cancel()
	}
	return &api.Queued{Already: !ok}, nil
}

// obey checks that a call comes from the master this slave registered
// with (a master of the realm, with the same cluster configuration: only
// one master gives a slave orders), and records its epoch before the slave
// acts on it. It returns the master's journal ID.
func (s *Slave) obey(ctx context.Context) (string, error) {
	if _, err := cluster.Authorize(ctx, cluster.RoleMaster); err != nil {
		return "", err
	}
	md, _ := metadata.FromIncomingContext(ctx)
	s.mu.Lock()
	ours, regAddr, regJournal := s.cfg.Cluster.Hash(), s.regAddr, s.regJournal
	s.mu.Unlock()
	if h := md.Get(ClusterHashKey); len(h) == 0 || h[0] != ours {
		return "", status.Errorf(codes.FailedPrecondition, "cluster configuration differs (caller %v, this slave %s)", h, ours)
	}
	var journalID string
	if j := md.Get(JournalIDKey); len(j) > 0 {
		journalID = j[0]
	}
	switch {
	case regJournal == "":
		return "", status.Error(codes.Unavailable, "this slave has not registered with its master yet; try again")
	case journalID != regJournal:
		return "", status.Errorf(codes.FailedPrecondition, "this slave takes orders from the master at %s (journal %s), not from journal %q", regAddr, regJournal, journalID)
	}
	var epoch uint64
	if e := md.Get(EpochKey); len(e) > 0 {
		epoch, _ = strconv.ParseUint(e[0], 10, 64)
	}
	if err := s.agent.acceptEpoch(journalID, epoch); err != nil {
		return "", status.Error(codes.FailedPrecondition, err.Error())
	}
	return journalID, nil
}

// start runs an accepted dump order on a free drive.
func (s *Slave) start(o DumpOrder) {
	s.pruneHeld(s.agent.jobs())
	s.startJob(o.Job, "dump", func(ctx context.Context, drive int) (int, int64, error) {
		res, err := (&Runner{Library: s.library, Drive: drive, Config: s.config(), Master: &masterCalls{s: s}, Logger: s.log, Holding: s.holding}).Dump(ctx, o)
		return res.Volumes, res.Bytes, err
	})
}

// startJob runs a job on a free drive and reports its end.
func (s *Slave) startJob(job, direction string, run func(ctx context.Context, drive int) (int, int64, error)) {
	ctx, cancel := context.WithCancel(s.ctx)
	s.mu.Lock()
	s.running[job] = cancel
	s.mu.Unlock()
	go func() {
		defer cancel()
		drive := <-s.drives
		defer func() { s.drives <- drive }()
		s.met.Jobs.Inc()
		defer s.met.Jobs.Dec()
		began := time.Now()
		state, why := "done", ""
		volumes, bytes, err := run(ctx, drive)
		d := strconv.Itoa(drive)
		s.met.Bytes.WithLabelValues(d, direction).Add(float64(bytes))
		s.met.JobSeconds.WithLabelValues(d).Add(time.Since(began).Seconds())
		s.noteWaiting(job, "")
		switch {
		case errors.Is(err, ErrAborted):
			state, why = "aborted", "aborted by the master's order"
		case err != nil:
			state, why = "failed", err.Error()
		}
		s.log.Info("job ended", "job", job, "state", state, "volumes", volumes, "bytes", bytes, "why", why)
		if err := s.agent.queue(report{Kind: "done", Job: job, State: state, Note: why, Volumes: volumes, Bytes: bytes}); err != nil {
			s.log.Error("FATAL: slave journal", "err", err)
		}
		s.mu.Lock()
		delete(s.running, job)
		s.mu.Unlock()
	}()
}

// holding keeps what a running dump holds, for registrations.
func (s *Slave) holding(job string, tapes []HeldTape) {
	s.mu.Lock()
	s.held[job] = tapes
	s.mu.Unlock()
}

func (s *Slave) config() *Config {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.cfg
}

// masterConn returns a connection to the master the config names now.
func (s *Slave) masterConn() (*grpc.ClientConn, *Config, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.conn != nil && s.connAddr == s.cfg.Cluster.Master {
		return s.conn, s.cfg, nil
	}
	if s.conn != nil {
		s.conn.Close()
	}
	conn, err := grpc.NewClient(s.cfg.Cluster.Master, grpc.WithTransportCredentials(credentials.NewTLS(s.creds.ClientTLS(cluster.RoleMaster))))
	if err != nil {
		return nil, nil, err
	}
	s.conn, s.connAddr = conn, s.cfg.Cluster.Master
	return conn, s.cfg, nil
}

// errNotRegistered: the slave has not yet registered with the master its
// config names; reports and tape calls wait (are retried) until it has.
var errNotRegistered = errors.New("slave: not registered with the current master yet")

// call runs f against the current master with the cluster hash attached,
// once the slave is registered there.
func (s *Slave) call(ctx context.Context, f func(context.Context, api.MasterServiceClient, *Config) error) error {
	s.mu.Lock()
	registered := s.regAddr != "" && s.regAddr == s.cfg.Cluster.Master
	s.mu.Unlock()
	if !registered {
		return errNotRegistered
	}
	conn, cfg, err := s.masterConn()
	if err != nil {
		return err
	}
	ctx = metadata.AppendToOutgoingContext(ctx, ClusterHashKey, cfg.Cluster.Hash())
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	err = f(ctx, api.NewMasterServiceClient(conn), cfg)
	if status.Code(err) == codes.Unauthenticated {
		// The master at that address does not know this slave: another
		// master took its place there (a crippled one, a restored copy).
		// Register again; the call is retried once that is done.
		s.mu.Lock()
		stale := s.regAddr == cfg.Cluster.Master && s.cfg == cfg
		s.mu.Unlock()
		if stale {
			s.log.Warn("the master does not know this slave; registering again", "master", cfg.Cluster.Master, "err", err)
			s.switchMaster(s.ctx, cfg)
		}
	}
	return err
}

// deliver sends one owed report to the current master.
func (s *Slave) deliver(ctx context.Context, rp *report) error {
	return s.call(ctx, func(ctx context.Context, c api.MasterServiceClient, cfg *Config) error {
		name := cfg.Node.Name
		var err error
		switch rp.Kind {
		case "checkpoint":
			_, err = c.DumpCheckpoint(ctx, &api.DumpCheckpointRequest{Slave: name, Seq: rp.Seq, Job: rp.Job, Volumes: int64(rp.Volumes), Bytes: rp.Bytes,
				Dump: rp.Dump.proto(rp.Job)})
		case "status":
			_, err = c.JobStatus(ctx, &api.JobStatusRequest{Slave: name, Seq: rp.Seq, Job: rp.Job, Volumes: int64(rp.Volumes), Bytes: rp.Bytes, Note: rp.Note})
		case "done":
			_, err = c.JobDone(ctx, &api.JobDoneRequest{Slave: name, Seq: rp.Seq, Job: rp.Job, State: rp.State, Why: rp.Note})
		default:
			return fmt.Errorf("unknown report kind %q", rp.Kind)
		}
		if code := status.Code(err); code == codes.NotFound || code == codes.FailedPrecondition || code == codes.InvalidArgument {
			// The master will never take it (an unknown job, a refused
			// record): retrying cannot help. Say so and move on.
			s.log.Error("the master refused a report; dropping it", "seq", rp.Seq, "kind", rp.Kind, "job", rp.Job, "err", err)
			return nil
		}
		return err
	})
}

// masterCalls is the runner's view of the master: the tape label protocol
// is asked synchronously; checkpoints and status become durable reports.
type masterCalls struct{ s *Slave }

func (m *masterCalls) ValidateTape(ctx context.Context, job, label, cartridge string) (verdict string, writable bool, reason string, err error) {
	err = m.s.call(ctx, func(ctx context.Context, c api.MasterServiceClient, cfg *Config) error {
		r, err := c.ValidateTape(ctx, &api.ValidateTapeRequest{Slave: cfg.Node.Name, Job: job, Label: label, Cartridge: cartridge})
		if err == nil {
			verdict, writable, reason = r.Verdict, r.Writable, r.Reason
		}
		return err
	})
	return
}

func (m *masterCalls) GenLabel(ctx context.Context, job, cartridge string) (label, realm, origin string, err error) {
	err = m.s.call(ctx, func(ctx context.Context, c api.MasterServiceClient, cfg *Config) error {
		r, err := c.GenLabel(ctx, &api.GenLabelRequest{Slave: cfg.Node.Name, Job: job, Cartridge: cartridge})
		if err == nil {
			label, realm, origin = r.Label, r.Realm, r.Origin
		}
		return err
	})
	return
}

func (m *masterCalls) ValidateLabel(ctx context.Context, job, label string) error {
	return m.s.call(ctx, func(ctx context.Context, c api.MasterServiceClient, cfg *Config) error {
		_, err := c.ValidateLabel(ctx, &api.ValidateLabelRequest{Slave: cfg.Node.Name, Job: job, Label: label})
		return err
	})
}

func (m *masterCalls) DumpCheckpoint(ctx context.Context, job string, d DumpRecord, volumes int, bytes int64) error {
	return m.s.agent.queue(report{Kind: "checkpoint", Job: job, Dump: &d, Volumes: volumes, Bytes: bytes})
}

// noteWaiting keeps the waiting-for-a-tape metrics from the runner's notes.
func (s *Slave) noteWaiting(job, note string) {
	waiting := strings.HasPrefix(note, "waiting for a blank tape")
	s.mu.Lock()
	defer s.mu.Unlock()
	switch {
	case waiting && !s.waiting[job]:
		s.waiting[job] = true
		s.met.TapeWaits.Inc()
		s.met.WaitingTape.Inc()
	case !waiting && s.waiting[job]:
		delete(s.waiting, job)
		s.met.WaitingTape.Dec()
	}
}

func (m *masterCalls) JobStatus(ctx context.Context, job string, volumes int, bytes int64, note string) error {
	m.s.noteWaiting(job, note)
	return m.s.agent.queue(report{Kind: "status", Job: job, Volumes: volumes, Bytes: bytes, Note: note})
}

var (
	_ Master                 = (*masterCalls)(nil)
	_ api.SlaveServiceServer = (*service)(nil)
)
