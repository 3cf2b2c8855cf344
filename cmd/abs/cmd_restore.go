package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/abs-backup/abs/api"
)

type restoreCmd struct {
	Volume restoreVolumeCmd `cmd:"" help:"Restore one volume from its dumps."`
}

type restoreVolumeCmd struct {
	Name      string   `arg:"" help:"Volume name."`
	To        string   `required:"" placeholder:"DIR" help:"Target directory on the slave's host (absolute; must be empty or missing)."`
	AsOf      string   `name:"as-of" placeholder:"TIME" help:"Restore the volume as it was at TIME (RFC 3339, or 2006-01-02 [15:04:05] local); default: the latest dumps."`
	Slave     string   `help:"The slave to restore on (default: any that reaches the volume)."`
	Tape      []string `sep:"none" placeholder:"LABEL[,LABEL]" help:"Restore the dump on this tape (labels in order for a dump spanning tapes), at --file; repeat --tape/--file for an incremental chain, full dump first."`
	File      []int    `placeholder:"N" help:"The tape file of the dump named by the --tape before it."`
	Server    string   `help:"The volume's server, when its name is not unique."`
	Partition string   `help:"The volume's partition, when its name is not unique."`
	Detach    bool     `help:"Print the job ID and return once the job is queued."`
	JSON      bool     `name:"json" help:"Print the queued job as JSON."`
}

func (c *restoreVolumeCmd) Help() string {
	return `Plans the restore from the master's catalog — the latest full dump at or
before the time, then every incremental that chains after it, in order —
queues it, and follows the job to its end (or with --detach prints its ID).
The slave reads each dump from the cartridges that carry it and checks its
size and SHA-256 against the catalog. Nothing is written outside the target.

Exit status: 0 done, 1 failed or aborted, 3 refused (no dump, a bad target).

With --tape and --file the dumps are named instead of planned: the way to
restore on a crippled master, which has no history — find the lines with
grep in its dump log (or a saved abs report): the third column is the tape,
the seventh the file. Give the full dump first, then its incrementals.

Examples:
  abs restore volume user.alice --to /srv/restore/user.alice
  abs restore volume user.alice --to /srv/restore/alice-monday --as-of 2026-11-16 --slave tape2
  grep user.alice dumplog
  abs restore volume user.alice --server fs1 --partition vicepa --to /srv/restore/alice \
      --tape athena-c7h2kq-000002 --file 3`
}

// parseTime reads RFC 3339, or a local date with an optional time.
func parseTime(s string) (time.Time, error) {
	for _, layout := range []string{time.RFC3339Nano, "2006-01-02 15:04:05", "2006-01-02T15:04:05", "2006-01-02"} {
		if layout == time.RFC3339Nano {
			if t, err := time.Parse(layout, s); err == nil {
				return t, nil
			}
			continue
		}
		if t, err := time.ParseInLocation(layout, s, time.Local); err == nil {
			if layout == "2006-01-02" {
				t = t.Add(24*time.Hour - time.Nanosecond) // the end of that day
			}
			return t, nil
		}
	}
	return time.Time{}, fmt.Errorf("--as-of %q: want RFC 3339 (2026-11-16T18:00:00Z) or a local date/time (2026-11-16, 2026-11-16 18:00:00)", s)
}

func (c *restoreVolumeCmd) Run(ctx context.Context, g *Globals) error {
	req := &api.RestoreRequest{Server: c.Server, Partition: c.Partition, Volume: c.Name, To: c.To, Slave: c.Slave}
	if !filepath.IsAbs(c.To) {
		return fail(exitUsage, "--to %q must be an absolute directory (on the slave's host)", c.To)
	}
	if len(c.Tape) != len(c.File) {
		return fail(exitUsage, "give one --file for each --tape (%d tapes, %d files)", len(c.Tape), len(c.File))
	}
	if len(c.Tape) > 0 && (c.Server == "" || c.Partition == "" || c.AsOf != "") {
		return fail(exitUsage, "--tape/--file need --server and --partition, and exclude --as-of")
	}
	for i, tapes := range c.Tape {
		ref := &api.DumpRef{Tapes: strings.Split(tapes, ","), File: uint32(max(c.File[i], 0))}
		if c.File[i] < 1 || slices.Contains(ref.Tapes, "") {
			return fail(exitUsage, "--tape %q --file %d: want labels and a file number of at least 1", tapes, c.File[i])
		}
		req.Dumps = append(req.Dumps, ref)
	}
	if c.AsOf != "" {
		t, err := parseTime(c.AsOf)
		if err != nil {
			return fail(exitUsage, "%v", err)
		}
		req.AsOfUnixNano = t.UnixNano()
	}
	return withClient(g, func(cl *operatorClient) error {
		var job *api.Job
		if err := cl.call(ctx, func(ctx context.Context) (err error) {
			job, err = cl.Restore(ctx, req)
			return err
		}); err != nil {
			return err
		}
		switch {
		case c.JSON:
			if err := printJSON(jobJSONOf(job)); err != nil {
				return err
			}
		case c.Detach:
			fmt.Println(job.Id)
		default:
			fmt.Fprintf(os.Stderr, "queued %s: restore of %s to %s\n", job.Id, targetString(job.Target), c.To)
		}
		if c.Detach {
			return nil
		}
		return follow(ctx, cl, job)
	})
}
