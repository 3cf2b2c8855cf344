package main

import (
	"context"
	"fmt"
	"os"
	"time"

	"golang.org/x/term"

	"github.com/abs-backup/abs/api"
)

type dumpCmd struct {
	Volume    dumpVolumeCmd    `cmd:"" help:"Dump one volume."`
	Partition dumpPartitionCmd `cmd:"" help:"Dump every volume of a partition."`
	Server    dumpServerCmd    `cmd:"" help:"Dump every partition of a server."`
}

// dumpFlags are shared by the three dump commands.
type dumpFlags struct {
	Level  string `default:"auto" enum:"auto,full,incremental" help:"Dump level: full, incremental, or auto (incremental when the volume has a full dump, else full)."`
	Detach bool   `help:"Print the job ID and return once the job is queued, instead of following it."`
	JSON   bool   `name:"json" help:"Print the queued job as JSON."`
}

type dumpVolumeCmd struct {
	Name      string `arg:"" help:"Volume name."`
	Server    string `help:"Server holding the volume (optional: any slave that reaches it)."`
	Partition string `help:"Partition holding the volume (needs --server)."`
	dumpFlags
}

type dumpPartitionCmd struct {
	Name   string `arg:"" help:"Partition name."`
	Server string `required:"" help:"Server holding the partition."`
	dumpFlags
}

type dumpServerCmd struct {
	Name string `arg:"" help:"Server name."`
	dumpFlags
}

const dumpHelp = `Queues a dump job on the master and follows it to its end, or with --detach
prints its ID and returns. The job runs on a media slave that reaches the
target; while none does it stays queued and 'abs jobs' says what it waits for.

Exit status: 0 done (or queued, with --detach), 1 failed or aborted, 3 refused.

Examples:
  abs dump volume user.alice --server fs1 --partition vicepa --level full --detach
  abs dump partition vicepa --server fs1
  abs dump server fs1 --level incremental`

func (c *dumpVolumeCmd) Help() string    { return dumpHelp }
func (c *dumpPartitionCmd) Help() string { return dumpHelp }
func (c *dumpServerCmd) Help() string    { return dumpHelp }

func (c *dumpVolumeCmd) Run(ctx context.Context, g *Globals) error {
	return queueDump(ctx, g, &api.Target{Scope: "volume", Server: c.Server, Partition: c.Partition, Volume: c.Name}, c.dumpFlags)
}

func (c *dumpPartitionCmd) Run(ctx context.Context, g *Globals) error {
	return queueDump(ctx, g, &api.Target{Scope: "partition", Server: c.Server, Partition: c.Name}, c.dumpFlags)
}

func (c *dumpServerCmd) Run(ctx context.Context, g *Globals) error {
	return queueDump(ctx, g, &api.Target{Scope: "server", Server: c.Name}, c.dumpFlags)
}

func queueDump(ctx context.Context, g *Globals, t *api.Target, f dumpFlags) error {
	level := f.Level
	if level == "auto" {
		level = ""
	}
	return withClient(g, func(c *operatorClient) error {
		var job *api.Job
		err := c.call(ctx, func(ctx context.Context) (err error) {
			job, err = c.Dump(ctx, &api.DumpRequest{Target: t, Level: level})
			return err
		})
		if err != nil {
			return err
		}
		switch {
		case f.JSON:
			if err := printJSON(jobJSONOf(job)); err != nil {
				return err
			}
		case f.Detach:
			fmt.Println(job.Id)
		default:
			fmt.Fprintf(os.Stderr, "queued %s: dump of %s %s\n", job.Id, t.Scope, targetString(job.Target))
		}
		if f.Detach {
			return nil
		}
		return follow(ctx, c, job)
	})
}

// progressLine says how far a running job is: volumes and bytes (of the
// expected, when the master can estimate them), rate, elapsed time and,
// with an estimate, the time left.
func progressLine(job *api.Job, elapsed time.Duration) string {
	rate := float64(job.Bytes) / max(elapsed.Seconds(), 0.001)
	vols := fmt.Sprintf("%d volumes", job.Volumes)
	if job.ExpectedVolumes > 0 {
		vols = fmt.Sprintf("%d/%d volumes", job.Volumes, job.ExpectedVolumes)
	}
	bytes := humanBytes(job.Bytes)
	left := ""
	if job.ExpectedBytes > 0 {
		bytes += " of ~" + humanBytes(job.ExpectedBytes)
		if rest := job.ExpectedBytes - job.Bytes; rest > 0 && rate > 0 {
			left = fmt.Sprintf(", ~%s left", time.Duration(float64(rest)/rate*float64(time.Second)).Round(time.Second))
		}
	}
	return fmt.Sprintf("%s, %s, %s/s, %s elapsed%s", vols, bytes, humanBytes(int64(rate)), elapsed.Round(time.Second), left)
}

// follow polls a job until it ends, printing each change of state and, on
// a terminal, a progress line (volumes, bytes, rate, elapsed, time left). It polls fast
// at first, so a short job's end is seen at once, then every 100 ms (a
// GetJob is a read of the master's memory).
// Ctrl-C stops following; the job goes on.
func follow(ctx context.Context, c *operatorClient, job *api.Job) error {
	tty := term.IsTerminal(int(os.Stderr.Fd()))
	start := time.Now()
	last, progress := "", false
	delay := 10 * time.Millisecond
	for {
		line := job.State
		if job.Why != "" {
			line += ": " + job.Why
		}
		if line != last {
			if progress {
				fmt.Fprintln(os.Stderr)
				progress = false
			}
			fmt.Fprintf(os.Stderr, "%s  %s %s\n", time.Now().Format("15:04:05"), job.Id, line)
			last = line
		}
		if tty && job.State == "running" {
			fmt.Fprintf(os.Stderr, "\r  %s   ", progressLine(job, time.Since(start)))
			progress = true
		}
		switch job.State {
		case "done":
			if progress {
				fmt.Fprintln(os.Stderr)
			}
			return nil
		case "failed", "aborted":
			if progress {
				fmt.Fprintln(os.Stderr)
			}
			return fail(exitFailed, "job %s %s: %s", job.Id, job.State, job.Why)
		}
		select {
		case <-ctx.Done():
			fmt.Fprintf(os.Stderr, "\nstopped following %s; it goes on (see `abs jobs`)\n", job.Id)
			return nil
		case <-time.After(delay):
		}
		delay = min(delay*3/2, 100*time.Millisecond)
		err := c.call(ctx, func(ctx context.Context) (err error) {
			job, err = c.GetJob(ctx, &api.GetJobRequest{Id: job.Id})
			return err
		})
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return err
		}
	}
}
