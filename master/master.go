// Package master is the abs master daemon: it opens (or creates) the
// journal, recovers its state from the catalog's snapshot and the journal's
// tail, runs the commit loop (loop.go), and serves the operator API over
// mutual TLS and /metrics over HTTP. It is crash-only: SIGKILL at any moment
// is a supported way to stop it, and start-up is the only recovery path.
package master

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"

	"github.com/abs-backup/abs/api"
	"github.com/abs-backup/abs/cluster"
	"github.com/abs-backup/abs/journal"
	"github.com/abs-backup/abs/master/catalog"
	"github.com/abs-backup/abs/metrics"
	"github.com/abs-backup/abs/statemachine"
)

// Options are the master's knobs beyond its config file. The zero value is
// production: real clock, fatal errors end the process.
type Options struct {
	Logger *slog.Logger // default: slog.Default()
	// Ready, if set, gets one line when the master serves:
	// "abs master NODE serving on ADDR (metrics ADDR)". Tests parse it to
	// learn ports bound with :0.
	Ready io.Writer
	Clock func() time.Time // default time.Now
	// Fatal ends the process on a journal or catalog failure. Default: log
	// and os.Exit(journal.ExitIO).
	Fatal func(error)
	// Crippled runs a crippled master (DESIGN.md §7): a journal of its own
	// (mode crippled) in the data directory, no catalog on disk (listings
	// come from an in-memory projection rebuilt from that journal at each
	// start), and the dump log. Disaster (crippled only) accepts any slave
	// of the realm and adopts any job a slave reports.
	Crippled, Disaster bool
}

// Master is a running master.
type Master struct {
	cfg     *cluster.Config
	opts    Options
	log     *slog.Logger
	creds   *cluster.Credentials
	j       *journal.Journal
	cat     *catalog.Catalog
	reader  *journal.Reader
	loop    *loop
	met     *metrics.Master
	reg     *prometheus.Registry
	started time.Time
	addr    string
	metrics string
	conns   slaveConns
	dumpLog *dumpLog // crippled mode only
}

// Run starts a master from cfg and serves until ctx ends or a listener
// fails. Errors before serving are returned with enough context to act on
// (*journal.CorruptError, *journal.LockedError, ErrCatalog, ...).
func Run(ctx context.Context, cfg *cluster.Config, opts Options) error {
	m, err := start(cfg, opts)
	if err != nil {
		return err
	}
	defer m.close()
	return m.serve(ctx)
}

func start(cfg *cluster.Config, opts Options) (*Master, error) {
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.Clock == nil {
		opts.Clock = time.Now
	}
	if opts.Fatal == nil {
		opts.Fatal = func(err error) {
			fmt.Fprintf(os.Stderr, "abs master: FATAL: %v\n", err)
			os.Exit(journal.ExitIO)
		}
	}
	m := &Master{cfg: cfg, opts: opts, log: opts.Logger.With("node", cfg.Node.Name), started: opts.Clock()}
	creds, err := cluster.LoadCredentials(cfg.Node.Certs)
	if err != nil {
		return nil, err
	}
	if err := creds.Require(cluster.RoleMaster); err != nil {
		return nil, err
	}
	m.creds = creds
	if err := os.MkdirAll(cfg.Node.Data, 0o700); err != nil {
		return nil, fmt.Errorf("master: data directory: %w", err)
	}
	m.reg = prometheus.NewRegistry()
	m.reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	m.met = metrics.NewMaster(m.reg)

	if opts.Disaster && !opts.Crippled {
		return nil, errors.New("master: disaster mode is a crippled master's (--crippled)")
	}
	mode := journal.ModeNormal
	if opts.Crippled {
		mode = journal.ModeCrippled
	}
	jopts := journal.Options{Observer: m.met, Fatal: opts.Fatal}
	jdir := filepath.Join(cfg.Node.Data, JournalDir)
	j, err := journal.Open(jdir, jopts)
	if errors.Is(err, journal.ErrNotExist) {
		id, ierr := journal.NewIdentity(cfg.Cluster.Realm, mode, opts.Clock())
		if ierr != nil {
			return nil, ierr
		}
		j, err = journal.Create(jdir, id, jopts)
		if err == nil {
			m.log.Info("created a new journal", "journal", id.JournalID, "realm", id.Realm, "dir", jdir)
		}
	}
	if err != nil {
		return nil, err
	}
	m.j = j
	if rep := j.Repaired(); rep != nil {
		m.log.Warn("journal tail repaired", "file", rep.File, "offset", rep.Offset, "cut_bytes", rep.CutBytes, "copy", rep.Broken, "reason", rep.Reason)
	}
	id := j.Identity()
	if id.Realm != cfg.Cluster.Realm {
		m.close()
		return nil, fmt.Errorf("master: the journal in %s belongs to realm %q but the config says realm %q", jdir, id.Realm, cfg.Cluster.Realm)
	}
	switch {
	case id.Mode == mode:
	case opts.Crippled:
		m.close()
		return nil, fmt.Errorf("master: the journal in %s is a %s-mode journal: a crippled master runs on a data directory of its own (a new one), never on a normal master's", jdir, id.Mode)
	default:
		m.close()
		return nil, fmt.Errorf("master: the journal in %s is a %s-mode journal: run it with `abs master --crippled`, or merge it into a normal master with `abs merge`", jdir, id.Mode)
	}
	// A crippled master has no catalog on disk: its projection lives in
	// memory and is rebuilt from its (short) journal at every start.
	if m.cat, err = catalog.Open(filepath.Join(cfg.Node.Data, CatalogDir), catalog.Options{Logger: m.log, InMemory: opts.Crippled}); err != nil {
		m.close()
		return nil, err
	}
	if m.reader, err = journal.OpenReader(jdir); err != nil {
		m.close()
		return nil, err
	}
	st, err := recoverState(m.reader, m.cat)
	if err == nil {
		err = m.cat.Sync() // what recovery wrote need not be replayed again
	}
	if err != nil {
		m.close()
		return nil, err
	}
	if opts.Crippled {
		if m.dumpLog, err = openDumpLog(filepath.Join(cfg.Node.Data, DumpLogFile), m.cat); err != nil {
			m.close()
			return nil, err
		}
	}
	m.loop = newLoop(m.log, j, m.cat, m.met, opts.Clock, st, opts.Fatal)
	m.loop.dumpLog = m.dumpLog
	m.loop.dm = metrics.NewDumps(m.reg)
	for _, v := range st.Volumes {
		m.loop.dm.VolumeLastDump.WithLabelValues(v.Server, v.Partition, v.Name).Set(float64(v.LastDump) / 1e9)
	}
	return m, nil
}

func (m *Master) close() {
	if m.dumpLog != nil {
		m.dumpLog.close()
	}
	if m.cat != nil {
		m.cat.Close()
	}
	if m.j != nil {
		m.j.Close()
	}
}

// serviceRoles is the authorization table: the role that may call each
// service. A method of a service not listed is refused.
var serviceRoles = map[string]cluster.Role{
	api.OperatorService_ServiceDesc.ServiceName: cluster.RoleOperator,
	api.MasterService_ServiceDesc.ServiceName:   cluster.RoleSlave,
}

func authorize(ctx context.Context, fullMethod string) (cluster.Identity, error) {
	svc := fullMethod
	if i := len(svc); i > 0 && svc[0] == '/' {
		svc = svc[1:]
	}
	for j := 0; j < len(svc); j++ {
		if svc[j] == '/' {
			svc = svc[:j]
			break
		}
	}
	role, ok := serviceRoles[svc]
	if !ok {
		return cluster.Identity{}, fmt.Errorf("no such service %q", svc)
	}
	return cluster.Authorize(ctx, role)
}

type identityKey struct{}

func (m *Master) serve(ctx context.Context) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	lis, err := net.Listen("tcp", m.cfg.Node.Listen)
	if err != nil {
		return fmt.Errorf("master: listen on %s: %w", m.cfg.Node.Listen, err)
	}
	m.addr = lis.Addr().String()
	var mlis net.Listener
	if m.cfg.Node.Metrics != "" {
		if mlis, err = net.Listen("tcp", m.cfg.Node.Metrics); err != nil {
			lis.Close()
			return fmt.Errorf("master: metrics listen on %s: %w", m.cfg.Node.Metrics, err)
		}
		m.metrics = mlis.Addr().String()
	}

	go m.loop.decide(ctx)
	go m.loop.complete(ctx)
	go m.runEffects(ctx)

	// The incarnation's first decision: a new epoch. Pending effects owed by
	// earlier incarnations are re-derived once it is durable.
	res, err := m.loop.propose(ctx, statemachine.StartMaster{Node: m.cfg.Node.Name, Addr: m.addr, Disaster: m.opts.Disaster},
		func(s *statemachine.State, _ []statemachine.Event) any {
			return statemachine.Pending(s)
		})
	if err != nil {
		lis.Close()
		return fmt.Errorf("master: start: %w", err)
	}
	for _, e := range res.val.([]statemachine.Effect) {
		select {
		case m.loop.effects <- e:
		default: // re-derived again at the next start
		}
	}

	srv := grpc.NewServer(
		grpc.Creds(credentials.NewTLS(m.creds.ServerTLS())),
		grpc.ChainUnaryInterceptor(func(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
			id, err := authorize(ctx, info.FullMethod)
			if err != nil {
				return nil, err
			}
			return h(context.WithValue(ctx, identityKey{}, id), req)
		}),
		// Streaming calls (the volume report) are authorized the same way.
		grpc.ChainStreamInterceptor(func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, h grpc.StreamHandler) error {
			if _, err := authorize(ss.Context(), info.FullMethod); err != nil {
				return err
			}
			return h(srv, ss)
		}),
	)
	api.RegisterOperatorServiceServer(srv, &operator{m: m})
	api.RegisterMasterServiceServer(srv, &slaveAPI{m: m})
	errc := make(chan error, 2)
	go func() { errc <- srv.Serve(lis) }()
	if mlis != nil {
		mux := http.NewServeMux()
		mux.Handle("/metrics", promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{Registry: m.reg}))
		hs := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
		go func() { errc <- hs.Serve(mlis) }()
		defer hs.Close()
	}
	m.log.Info("serving", "listen", m.addr, "metrics", m.metrics, "journal", m.j.Identity().JournalID, "mode", m.j.Identity().Mode,
		"disaster", m.opts.Disaster, "last_index", m.j.LastIndex())
	if m.opts.Ready != nil {
		fmt.Fprintf(m.opts.Ready, "abs master %s serving on %s (metrics %s)\n", m.cfg.Node.Name, m.addr, orNone(m.metrics))
		if m.dumpLog != nil {
			fmt.Fprintf(m.opts.Ready, "crippled mode (journal %s): dump log %s\n", m.j.Identity().JournalID, m.dumpLog.path)
		}
	}
	select {
	case <-ctx.Done():
		srv.Stop()
		return nil
	case err := <-errc:
		srv.Stop()
		return err
	}
}

// journalBytes is the journal's size on disk (segment files).
func journalBytes(dir string) int64 {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return 0
	}
	var n int64
	for _, e := range ents {
		if fi, err := e.Info(); err == nil && fi.Mode().IsRegular() && len(e.Name()) == 20 {
			n += fi.Size()
		}
	}
	return n
}

func orNone(s string) string {
	if s == "" {
		return "none"
	}
	return s
}
