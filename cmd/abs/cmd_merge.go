package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"strings"

	"golang.org/x/term"

	"github.com/abs-backup/abs/master"
	"github.com/abs-backup/abs/statemachine"
)

type mergeCmd struct {
	From     string            `required:"" type:"existingdir" placeholder:"CRIPPLED_DATA_DIR" help:"The crippled master's data directory (read only)."`
	Into     string            `required:"" type:"existingdir" placeholder:"MASTER_DATA_DIR" help:"The normal master's data directory (the master must be stopped)."`
	TapeName map[string]string `name:"tape-name" placeholder:"LABEL=NAME" help:"The external name (the sticker) of a cartridge labeled in crippled mode; repeat for each."`
	JSON     bool              `name:"json" help:"Print the report as JSON."`
}

func (c *mergeCmd) Help() string {
	return `Brings what a crippled master did back into the normal master's journal,
offline: stop the normal master first (merge takes its journal's lock). The
crippled journal is read, never changed (a torn tail is fine; damage
elsewhere is refused with its position, and nothing is written). Each of its
records is replayed as one record of the main journal that keeps its origin
(crippled journal ID and index), so merging the same journal again, or a
longer copy of it, imports only what is new, and a merge interrupted
anywhere can simply be run again.

Imported: its jobs, dump records and tape labels, and the ends of jobs it
adopted. Every label it wrote is paired with the cartridge's external name:
the name the slave reported, a --tape-name, or an answer on a terminal;
without a terminal a missing name is an error and nothing is written.

Then start the normal master: its catalog catches up from the journal, abs
report lists the crippled-mode dumps, and abs restore uses them.

Exit status: 0 merged (or nothing new), 3 refused (another realm, missing
names, not a crippled journal), 65 damaged journal, 75 a master is running.

Example:
  abs merge --from /var/lib/abs/crippled --into /var/lib/abs/master \
      --tape-name athena-c7h2kq-000001=A00017`
}

func (c *mergeCmd) Run(ctx context.Context) error {
	opts := master.MergeOptions{From: c.From, Into: c.Into, Names: c.TapeName}
	if term.IsTerminal(int(os.Stdin.Fd())) && term.IsTerminal(int(os.Stderr.Fd())) {
		in := bufio.NewReader(os.Stdin)
		opts.Ask = func(label string, job statemachine.JobID) (string, error) {
			fmt.Fprintf(os.Stderr, "external name of the cartridge labeled %s (written by job %s): ", label, job)
			line, err := in.ReadString('\n')
			if err != nil {
				return "", fail(exitRefused, "no name given for %s; nothing was written", label)
			}
			return strings.TrimSpace(line), nil
		}
	}
	rep, err := master.Merge(opts)
	var missing *master.MissingNamesError
	if errors.As(err, &missing) {
		return fail(exitRefused, "%v", err)
	}
	if err != nil {
		var ee *exitError
		if errors.As(err, &ee) {
			return err
		}
		if code := exitCode(err); code != exitFailed {
			return err
		}
		return fail(exitRefused, "%v", err)
	}
	if c.JSON {
		return printJSON(map[string]any{
			"origin": rep.Origin.JournalID, "realm": rep.Origin.Realm, "already_merged": rep.AlreadyMerged, "last_index": rep.LastIndex,
			"records": rep.Records, "events": rep.Events, "written": rep.Written, "jobs": rep.Jobs, "dumps": rep.Dumps, "tapes": rep.Tapes,
			"skipped": rep.Skipped, "seconds": rep.Duration.Seconds(),
		})
	}
	if rep.Records == 0 {
		fmt.Printf("nothing new: crippled journal %s is merged up to its last index %d\n", rep.Origin.JournalID, rep.LastIndex)
		return nil
	}
	fmt.Printf("merged crippled journal %s (realm %s): records %d to %d, %d events in %s\n",
		rep.Origin.JournalID, rep.Origin.Realm, max(rep.AlreadyMerged+1, 2), rep.LastIndex, rep.Events, rep.Duration.Round(1e6))
	fmt.Printf("  imported: %d jobs, %d dumps, %d tapes (%d records appended to the master's journal)\n", rep.Jobs, rep.Dumps, rep.Tapes, rep.Written)
	fmt.Printf("  skipped:  %d events (the crippled master's own starts and registrations, what the master already had)\n", rep.Skipped)
	if rep.AlreadyMerged > 0 {
		fmt.Printf("  already merged before: records 2 to %d\n", rep.AlreadyMerged)
	}
	if rep.TailDamage != nil {
		fmt.Printf("  the crippled journal ends in a torn record (%d bytes at %s offset %d), not merged\n", rep.TailDamage.CutBytes, rep.TailDamage.File, rep.TailDamage.Offset)
	}
	fmt.Println("start the master: its catalog catches up from the journal")
	return nil
}
