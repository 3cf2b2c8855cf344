// Command abs is the one binary of the abs backup system: daemons (master),
// operator commands (dump, jobs, abort, status) and offline tools (journal,
// certs). Each command lives in a cmd_*.go file of its own: an options struct
// with a Run method; this file parses, wires and maps errors to exit codes.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/alecthomas/kong"
)

// CLI is the command tree.
type CLI struct {
	Globals

	Master  masterCmd  `cmd:"" help:"Run the master daemon."`
	Slave   slaveCmd   `cmd:"" help:"Run a media slave daemon."`
	Dump    dumpCmd    `cmd:"" help:"Queue a dump of a volume, a partition or a server."`
	Restore restoreCmd `cmd:"" help:"Restore a volume from its dumps."`
	Jobs    jobsCmd    `cmd:"" help:"List jobs."`
	Abort   abortCmd   `cmd:"" help:"Abort a job."`
	Status  statusCmd  `cmd:"" help:"Show the master at a glance."`
	Slaves  slavesCmd  `cmd:"" help:"List the media slaves that registered."`
	Volumes volumesCmd `cmd:"" help:"List the volumes dumped, with their latest dumps."`
	Tapes   tapesCmd   `cmd:"" help:"List the tapes the master labeled."`
	Report  reportCmd  `cmd:"" help:"The volume report: one tab-separated line per dump."`
	Shell   shellCmd   `cmd:"" help:"An interactive shell for the operator commands: completion, history, prompts."`
	Certs   certsCmd   `cmd:"" help:"Make a realm CA and node or operator certificates."`
	Tape    tapeCmd    `cmd:"" help:"Make, list and extract cartridges of a file-backed tape library (no daemon needed)."`
	Journal journalCmd `cmd:"" help:"Check or rebuild a master's data offline."`
	Merge   mergeCmd   `cmd:"" help:"Merge a crippled master's journal into the stopped normal master's (offline)."`
	Demo    demoCmd    `cmd:"" help:"Run the guided demo in a temporary directory (what 'make demo' runs)."`
	Version versionCmd `cmd:"" help:"Print the version."`
}

// Globals are the flags every operator command shares.
type Globals struct {
	MasterAddr string `name:"master" env:"ABS_MASTER" placeholder:"HOST:PORT" help:"Address of the master (env ABS_MASTER)."`
	Certs      string `name:"certs" env:"ABS_CERTS" placeholder:"DIR" help:"Directory with this operator's ca.crt, node.crt and node.key (env ABS_CERTS)."`
	Timeout    string `default:"30s" help:"How long to wait for the master to answer a call."`
}

const description = `abs — backup orchestration: a crash-only, event-sourced master; media slaves; operator tools.

Exit status:
  0   success
  1   the work failed (a job failed or was aborted)
  2   usage error (bad command line)
  3   the master refused the request (bad argument, unknown job, wrong state)
  4   cannot reach or authenticate with the master
  65  a journal or catalog is damaged (nothing was changed; see the message)
  74  a journal write or fsync failed (the master ends; restart it)
  75  the journal is locked by another process
  78  the configuration is invalid

Examples:
  abs certs init-ca --dir ca
  abs certs issue --ca ca --role master --name green-acres --dir certs/green-acres
  abs master --config master.yaml
  abs --master 127.0.0.1:7400 --certs certs/alice dump volume user.alice --server fs1 --partition vicepa --detach
  abs --master 127.0.0.1:7400 --certs certs/alice jobs --all --json`

func main() {
	os.Exit(run(os.Args[1:]))
}

func run(args []string) int {
	var cli CLI
	parser, err := kong.New(&cli,
		kong.Name("abs"),
		kong.Description(description),
		kong.UsageOnError(),
		kong.ConfigureHelp(kong.HelpOptions{Compact: true}),
		kong.Exit(func(code int) { panic(exitPanic(code)) }),
	)
	if err != nil {
		fmt.Fprintf(os.Stderr, "abs: %v\n", err)
		return exitSoftware
	}
	code, done := func() (code int, done bool) {
		defer func() {
			if r := recover(); r != nil {
				if c, ok := r.(exitPanic); ok {
					code, done = int(c), true
					return
				}
				panic(r)
			}
		}()
		kctx, err := parser.Parse(args)
		if err != nil {
			fmt.Fprintf(os.Stderr, "abs: %v\n", err)
			if kctx != nil {
				fmt.Fprintf(os.Stderr, "run `abs %s --help` for usage\n", kctx.Command())
			}
			return exitUsage, true
		}
		ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
		defer stop()
		kctx.BindTo(ctx, (*context.Context)(nil))
		err = kctx.Run(&cli.Globals)
		return report(err), true
	}()
	if done {
		return code
	}
	return exitOK
}

// exitPanic carries kong's exit (after --help) out of the parser.
type exitPanic int
