package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/abs-backup/abs/cluster"
	"github.com/abs-backup/abs/master"
)

type masterCmd struct {
	Config   string `required:"" type:"existingfile" placeholder:"FILE" help:"The node's YAML config (cluster and node sections)."`
	LogLevel string `default:"info" enum:"debug,info,warn,error" help:"Log level (${enum})."`
	Crippled bool   `help:"Run a crippled master: its own journal in node.data (use a new directory), no catalog, a dump log."`
	Disaster bool   `default:"true" negatable:"" help:"With --crippled: accept any slave of the realm and adopt any job a slave reports (default; --no-disaster accepts only cluster.slaves)."`
}

func (c *masterCmd) Help() string {
	return `Runs the master: opens (or creates) the journal in node.data, recovers the
state from the catalog and the journal's tail, and serves the operator API on
node.listen (mutual TLS with the certificates in node.certs) and /metrics on
node.metrics.

The master is crash-only: SIGTERM and SIGINT stop it at once, as SIGKILL would,
and every start recovers from the journal. A damaged journal is refused with
the file, offset and index (exit 65); a journal held by another process exits
75; a failed journal write or fsync ends the master (exit 74).

With --crippled it runs a crippled master for when the normal master's host
or catalog is gone (DESIGN.md §7): a new journal of its own in node.data (give
it a data directory of its own), no catalog, the same protocol. Dumps are
"dump this now"; restores name their tape and file, found by grepping the dump
log (node.data/dumplog, one line per dump in the format of abs report). Tapes
that carry an abs label are unknown media to it: only blank tapes are written.
In disaster mode (the default) it accepts any slave of the realm and adopts
the jobs slaves report. Point the slaves at it (config master: and SIGHUP);
afterwards, with the normal master stopped, abs merge brings its journal back.

Example config:

  cluster:
    realm: athena
    master: 127.0.0.1:7400
  node:
    name: green-acres
    data: /var/lib/abs/master
    listen: 127.0.0.1:7400
    metrics: 127.0.0.1:7480
    certs: /etc/abs/green-acres`
}

func (c *masterCmd) Run(ctx context.Context) error {
	cfg, err := cluster.Load(c.Config)
	if err != nil {
		return err
	}
	log := daemonLogger(c.LogLevel)
	err = master.Run(ctx, cfg, master.Options{Logger: log, Ready: os.Stdout, Crippled: c.Crippled, Disaster: c.Crippled && c.Disaster})
	if err != nil {
		return fmt.Errorf("master %s: %w", cfg.Node.Name, err)
	}
	return nil
}

// daemonLogger is a daemon's structured log on stderr. It also makes the
// daemon crash-only: SIGTERM and SIGINT end the process at once, as SIGKILL
// would, because nothing depends on a clean stop.
func daemonLogger(levelName string) *slog.Logger {
	var level slog.Level
	_ = level.UnmarshalText([]byte(levelName))
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, os.Interrupt, syscall.SIGTERM)
	go func() {
		s := <-sig
		log.Info("stopping at once (crash-only)", "signal", s.String())
		os.Exit(exitOK)
	}()
	return log
}
