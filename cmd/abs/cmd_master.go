package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"

	"golang.org/x/term"

	"github.com/abs-backup/abs/cluster"
	"github.com/abs-backup/abs/master"
)

type masterCmd struct {
	Config   string `required:"" type:"existingfile" placeholder:"FILE" help:"The node's YAML config (cluster and node sections)."`
	LogLevel string `default:"info" enum:"debug,info,warn,error" help:"Log level (${enum})."`
	Crippled bool   `help:"Run a crippled master: its own journal in node.data (use a new directory), no catalog, a dump log."`
	Disaster bool   `default:"true" negatable:"" help:"With --crippled: accept any slave of the realm and adopt any job a slave reports (default; --no-disaster accepts only cluster.slaves)."`
	NoShell  bool   `name:"no-shell" help:"With --crippled on a terminal: do not offer the operator shell (run as a daemon)."`
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
Started on a terminal with an operator certificate (--certs or ABS_CERTS),
the crippled master offers the operator shell (abs shell) right there and
logs to node.data/master.log; leaving the shell stops the master.

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

func (c *masterCmd) Run(ctx context.Context, g *Globals) error {
	cfg, err := cluster.Load(c.Config)
	if err != nil {
		return err
	}
	if c.Crippled && !c.NoShell && term.IsTerminal(int(os.Stdin.Fd())) && term.IsTerminal(int(os.Stdout.Fd())) {
		if g.Certs != "" {
			return c.runWithShell(ctx, cfg, g)
		}
		fmt.Fprintln(os.Stderr, "abs master: give --certs (or ABS_CERTS) with an operator certificate to get the operator shell here; running as a daemon")
	}
	log := daemonLogger(c.LogLevel)
	err = master.Run(ctx, cfg, master.Options{Logger: log, Ready: os.Stdout, Crippled: c.Crippled, Disaster: c.Crippled && c.Disaster})
	if err != nil {
		return fmt.Errorf("master %s: %w", cfg.Node.Name, err)
	}
	return nil
}

// runWithShell runs a crippled master in this process, logging to a file,
// and the operator shell on the terminal against it; leaving the shell
// (exit, Ctrl-D) stops the master. Ctrl-C belongs to the shell's command.
func (c *masterCmd) runWithShell(ctx context.Context, cfg *cluster.Config, g *Globals) error {
	if err := os.MkdirAll(cfg.Node.Data, 0o700); err != nil {
		return fmt.Errorf("master: data directory: %w", err)
	}
	logPath := filepath.Join(cfg.Node.Data, "master.log")
	lf, err := os.OpenFile(logPath, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
	if err != nil {
		return err
	}
	defer lf.Close()
	var level slog.Level
	_ = level.UnmarshalText([]byte(c.LogLevel))
	log := slog.New(slog.NewTextHandler(lf, &slog.HandlerOptions{Level: level}))
	ctx, stop := signal.NotifyContext(context.WithoutCancel(ctx), syscall.SIGTERM, syscall.SIGHUP)
	defer stop()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	ready, readyW := io.Pipe()
	done := make(chan error, 1)
	go func() {
		done <- master.Run(ctx, cfg, master.Options{Logger: log, Ready: readyW, Crippled: true, Disaster: c.Disaster})
		readyW.Close()
	}()
	sc := bufio.NewScanner(ready)
	addr := ""
	for addr == "" && sc.Scan() {
		line := sc.Text()
		fmt.Println(line)
		if _, rest, ok := strings.Cut(line, " serving on "); ok {
			addr, _, _ = strings.Cut(rest, " ")
		}
	}
	if addr == "" {
		if err := <-done; err != nil {
			return fmt.Errorf("master %s: %w", cfg.Node.Name, err)
		}
		return fmt.Errorf("master %s stopped before serving (see %s)", cfg.Node.Name, logPath)
	}
	go func() {
		for sc.Scan() {
			fmt.Println(sc.Text())
		}
	}()
	fmt.Printf("logging to %s; the operator shell follows (help lists commands; exit or Ctrl-D stops the master)\n", logPath)
	sg := *g
	sg.MasterAddr = addr
	shellErr := runShell(ctx, &sg, os.Stdin, os.Stdout, shellOptions{})
	cancel()
	if err := <-done; err != nil {
		return fmt.Errorf("master %s: %w", cfg.Node.Name, err)
	}
	return shellErr
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
