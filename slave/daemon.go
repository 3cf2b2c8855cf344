package slave

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net"
	"net/http"
	"os"
	"os/signal"
	"slices"
	"sort"
	"sync"
	"syscall"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/abs-backup/abs/api"
	"github.com/abs-backup/abs/cluster"
	"github.com/abs-backup/abs/metrics"
	"github.com/abs-backup/abs/slave/tape"
)

// ClusterHashKey is the metadata key of the caller's cluster hash (the
// master checks it on every call; see master.ClusterHashKey).
const ClusterHashKey = "abs-cluster-hash"

// Options are the slave's knobs beyond its config file; the zero value is
// production.
type Options struct {
	Logger *slog.Logger
	// Ready, if set, gets one line when the slave serves, and one each time
	// it registers: "abs slave NAME registered with MASTER (epoch N)".
	Ready io.Writer
	// Reload delivers reload requests (SIGHUP in production).
	Reload <-chan os.Signal
}

// Slave is a running media slave.
type Slave struct {
	opts  Options
	log   *slog.Logger
	creds *cluster.Credentials
	addr  string

	ctx     context.Context
	agent   *agent
	met     *metrics.Slave
	waiting map[string]bool // jobs waiting for a blank tape (guarded by mu)
	library *tape.FileLibrary
	drives  chan int // free drive numbers

	mu       sync.Mutex
	cfg      *Config
	master   string // the master it registers with
	cancel   context.CancelFunc
	running  map[string]context.CancelFunc // jobs being run, for Abort
	held     map[string][]HeldTape         // tapes each running dump holds
	conn     *grpc.ClientConn              // to the current master
	connAddr string
	// regAddr and regJournal are the master this slave registered with
	// (its address and journal ID), empty until a registration with the
	// master the config names succeeds. Reports and tape calls wait for it,
	// so a master the slave just moved to has adopted the slave's jobs
	// before it hears of them; orders from any other master are refused.
	regAddr, regJournal string
}

// Run starts a slave from the config file at path and serves until ctx ends.
func Run(ctx context.Context, path string, opts Options) error {
	cfg, err := LoadConfig(path)
	if err != nil {
		return err
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.Reload == nil {
		ch := make(chan os.Signal, 1)
		signal.Notify(ch, syscall.SIGHUP)
		defer signal.Stop(ch)
		opts.Reload = ch
	}
	s := &Slave{opts: opts, cfg: cfg, log: opts.Logger.With("node", cfg.Node.Name)}
	if s.creds, err = cluster.LoadCredentials(cfg.Node.Certs); err != nil {
		return err
	}
	if err := s.creds.Require(cluster.RoleSlave); err != nil {
		return err
	}
	if s.creds.Identity.Name != cfg.Node.Name {
		return fmt.Errorf("slave: node.name is %s but the certificate in %s is for %s", cfg.Node.Name, cfg.Node.Certs, s.creds.Identity.Name)
	}
	if err := os.MkdirAll(cfg.Node.Data, 0o700); err != nil {
		return fmt.Errorf("slave: data directory: %w", err)
	}
	if s.agent, err = openAgent(s.log, cfg.Node.Data, cfg.Cluster.Realm); err != nil {
		return err
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	s.met, s.waiting = metrics.NewSlave(reg), map[string]bool{}
	s.agent.owed = func(n int) { s.met.ReportsOwed.Set(float64(n)) }
	if cfg.Node.Metrics != "" {
		mlis, err := net.Listen("tcp", cfg.Node.Metrics)
		if err != nil {
			return fmt.Errorf("slave: metrics listen on %s: %w", cfg.Node.Metrics, err)
		}
		mux := http.NewServeMux()
		mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{Registry: reg}))
		hs := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
		go hs.Serve(mlis)
		defer hs.Close()
	}
	defer s.agent.j.Close()
	if err := os.MkdirAll(cfg.Library.Path, 0o750); err != nil {
		return fmt.Errorf("slave: library: %w", err)
	}
	if s.library, err = tape.OpenLibrary(cfg.Library.Path, cfg.Library.Drives, cfg.Library.Bytes); err != nil {
		return err
	}
	s.ctx, s.running, s.held = ctx, map[string]context.CancelFunc{}, map[string][]HeldTape{}
	s.drives = make(chan int, cfg.Library.Drives)
	for d := range cfg.Library.Drives {
		s.drives <- d
	}
	// Orders a crash interrupted are not resumed: report them failed. The
	// volumes they checkpointed stay recorded; their torn tape file is cut by
	// the library at the next append.
	for _, job := range s.agent.inProgress() {
		s.log.Warn("job interrupted by a restart; reporting it failed", "job", job)
		if err := s.agent.queue(report{Kind: "done", Job: job, State: "failed", Note: "the slave restarted while the job ran; volumes checkpointed before stay recorded"}); err != nil {
			return err
		}
	}
	go s.agent.send(ctx, s.deliver)
	lis, err := net.Listen("tcp", cfg.Node.Listen)
	if err != nil {
		return fmt.Errorf("slave: listen on %s: %w", cfg.Node.Listen, err)
	}
	s.addr = lis.Addr().String()
	// The master calls the slave here (SlaveService); the standard health
	// service answers whether the slave is up.
	srv := grpc.NewServer(grpc.Creds(credentials.NewTLS(s.creds.ServerTLS())))
	healthpb.RegisterHealthServer(srv, health.NewServer())
	api.RegisterSlaveServiceServer(srv, &service{s: s})
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(lis) }()
	defer srv.Stop()
	if opts.Ready != nil {
		fmt.Fprintf(opts.Ready, "abs slave %s serving on %s\n", cfg.Node.Name, s.addr)
	}
	s.switchMaster(ctx, cfg)
	for {
		select {
		case <-ctx.Done():
			return nil
		case err := <-errc:
			return err
		case <-opts.Reload:
			s.reload(ctx, path)
		}
	}
}

// reload re-reads the config (SIGHUP). A config that does not load changes
// nothing; a new master makes the slave register there; node settings that
// cannot change live are reported.
func (s *Slave) reload(ctx context.Context, path string) {
	cfg, err := LoadConfig(path)
	if err != nil {
		s.log.Error("reload refused: the config does not load; keeping the running one", "err", err)
		return
	}
	s.mu.Lock()
	old := s.cfg
	s.mu.Unlock()
	if cfg.Node != old.Node {
		s.log.Warn("node settings changed; they take effect at the next restart", "old", fmt.Sprintf("%+v", old.Node), "new", fmt.Sprintf("%+v", cfg.Node))
		cfg.Node = old.Node
	}
	s.log.Info("config reloaded", "master", cfg.Cluster.Master, "cluster_hash", cfg.Cluster.Hash())
	s.switchMaster(ctx, cfg)
}

// switchMaster adopts cfg and (re)starts registration with its master.
func (s *Slave) switchMaster(ctx context.Context, cfg *Config) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.cfg = cfg
	if s.cancel != nil {
		s.cancel()
	}
	rctx, cancel := context.WithCancel(ctx)
	s.cancel = cancel
	s.master = cfg.Cluster.Master
	// Reports and orders wait until this registration succeeds (a master
	// at the same address may be another one: it must adopt the jobs
	// before it hears of them).
	s.regAddr, s.regJournal = "", ""
	go s.register(rctx, cfg)
}

// register calls RegisterDevice on cfg's master until it is accepted,
// backing off between attempts (the master may be down or not yet moved).
func (s *Slave) register(ctx context.Context, cfg *Config) {
	conn, err := grpc.NewClient(cfg.Cluster.Master, grpc.WithTransportCredentials(credentials.NewTLS(s.creds.ClientTLS(cluster.RoleMaster))))
	if err != nil {
		s.log.Error("cannot dial the master", "master", cfg.Cluster.Master, "err", err)
		return
	}
	defer conn.Close()
	client := api.NewMasterServiceClient(conn)
	delay := 100 * time.Millisecond
	for attempt := 1; ; attempt++ {
		req := s.registration(cfg)
		cctx := metadata.AppendToOutgoingContext(ctx, ClusterHashKey, cfg.Cluster.Hash())
		cctx, cancel := context.WithTimeout(cctx, 10*time.Second)
		resp, err := client.RegisterDevice(cctx, req)
		cancel()
		if err == nil {
			s.mu.Lock()
			current := s.cfg.Cluster.Master == cfg.Cluster.Master && ctx.Err() == nil
			if current {
				s.regAddr, s.regJournal = cfg.Cluster.Master, resp.JournalId
			}
			s.mu.Unlock()
			if !current {
				return // the config moved on meanwhile
			}
			s.log.Info("registered", "master", cfg.Cluster.Master, "epoch", resp.Epoch, "journal", resp.JournalId, "jobs", len(req.Jobs))
			s.agent.wakeSender()
			if s.opts.Ready != nil {
				fmt.Fprintf(s.opts.Ready, "abs slave %s registered with %s (epoch %d)\n", cfg.Node.Name, cfg.Cluster.Master, resp.Epoch)
			}
			return
		}
		if ctx.Err() != nil {
			return
		}
		level := slog.LevelDebug
		if attempt%10 == 1 { // say it at once, then now and then
			level = slog.LevelWarn
		}
		s.log.Log(ctx, level, "registration failed; retrying", "master", cfg.Cluster.Master, "attempt", attempt, "err", err)
		select {
		case <-ctx.Done():
			return
		case <-time.After(delay):
		}
		delay = min(delay*2, 5*time.Second)
	}
}

// registration describes this slave to the master: its address, drives,
// every server and partition it reaches (with the volumes it can list), its
// jobs (for adoption) and the epochs it obeyed.
func (s *Slave) registration(cfg *Config) *api.RegisterDeviceRequest {
	req := &api.RegisterDeviceRequest{Name: cfg.Node.Name, Addr: s.addr, Drives: uint32(cfg.Library.Drives), Jobs: s.jobsToReport()}
	epochs := s.agent.epochsSeen()
	for _, id := range slices.Sorted(maps.Keys(epochs)) {
		req.Epochs = append(req.Epochs, &api.JournalEpoch{JournalId: id, Epoch: epochs[id]})
	}
	for _, srv := range cfg.Servers {
		// The server itself (a Reach with no partition): the slave dumps a
		// server as every partition its config gives it (Runner.expand).
		// Without it the master never dispatches `abs dump server` to a
		// slave (statemachine.reaches needs a server-scope reach for a
		// server target), and such a job stays queued forever.
		req.Reaches = append(req.Reaches, &api.Reach{Server: srv.Name})
		for _, p := range srv.Partitions {
			r := &api.Reach{Server: srv.Name, Partition: p.Name, Volumes: p.Volumes}
			if p.Path != "" {
				r.Volumes = listVolumes(p.Path)
			}
			req.Reaches = append(req.Reaches, r)
		}
	}
	return req
}

// jobsToReport describes, for a registration, every job the slave has in
// progress or owes reports for, so that a master that did not order it can
// adopt it: what it does, who ordered it, its progress and, for a dump, the
// tapes it holds with the dump files the master already acknowledged.
func (s *Slave) jobsToReport() []*api.SlaveJob {
	jobs := s.agent.jobs()
	s.mu.Lock()
	held := maps.Clone(s.held)
	s.mu.Unlock()
	var out []*api.SlaveJob
	for _, id := range slices.Sorted(maps.Keys(jobs)) {
		aj := jobs[id]
		sj := &api.SlaveJob{Job: id}
		if o := aj.restore; o != nil {
			sj.Kind, sj.Origin, sj.To = "restore", o.Origin, o.To
			sj.Target = &api.Target{Scope: "volume", Server: o.Server, Partition: o.Partition, Volume: o.Volume}
			for _, d := range o.Plan {
				sj.Plan = append(sj.Plan, d.proto(""))
			}
			out = append(out, sj)
			continue
		}
		o := aj.order
		sj.Kind, sj.Origin, sj.Level = "dump", o.Origin, o.Level
		sj.Target = &api.Target{Scope: o.Scope, Server: o.Server, Partition: o.Partition, Volume: o.Volume}
		// The tapes the running dump holds (with their cartridge names),
		// and any other its acknowledged checkpoints name (after a restart).
		for _, h := range held[id] {
			sj.Tapes = append(sj.Tapes, &api.HeldTape{Label: h.Label, Cartridge: h.Cartridge, Files: uint32(aj.written[h.Label])})
		}
		for _, label := range slices.Sorted(maps.Keys(aj.written)) {
			if !slices.ContainsFunc(held[id], func(h HeldTape) bool { return h.Label == label }) {
				sj.Tapes = append(sj.Tapes, &api.HeldTape{Label: label, Files: uint32(aj.written[label])})
			}
		}
		out = append(out, sj)
	}
	s.pruneHeld(jobs)
	return out
}

// pruneHeld forgets the tapes of jobs the slave no longer speaks of.
func (s *Slave) pruneHeld(jobs map[string]agentJob) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for id := range s.held {
		if _, ok := jobs[id]; !ok {
			delete(s.held, id)
		}
	}
}

// listVolumes names the subdirectories of a partition directory (a missing
// or unreadable partition reaches no volume yet, and says so in the log of
// the dump that needs it).
func listVolumes(dir string) []string {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil
	}
	var out []string
	for _, e := range ents {
		if e.IsDir() {
			out = append(out, e.Name())
		}
	}
	sort.Strings(out)
	return out
}
