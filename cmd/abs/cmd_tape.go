package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/abs-backup/abs/slave/source"
	"github.com/abs-backup/abs/slave/tape"
)

type tapeCmd struct {
	New     tapeNewCmd     `cmd:"" help:"Make blank cartridges in a file-backed tape library."`
	Ls      tapeLsCmd      `cmd:"" help:"List a cartridge's label and files (no daemon needed)."`
	Extract tapeExtractCmd `cmd:"" help:"Restore tape files of a cartridge into a directory (no daemon needed)."`
}

type tapeNewCmd struct {
	Library string `required:"" type:"path" placeholder:"DIR" help:"The library directory (created if missing)."`
	Count   int    `required:"" help:"How many blank cartridges to make."`
	Prefix  string `default:"A" help:"Letters before the cartridge number (A00001, A00002, …)."`
}

func (c *tapeNewCmd) Help() string {
	return "Blank cartridges are empty files named by their external name (A00001.tape);\nnumbering continues after the highest existing one, and no existing file is\ntouched.\n\nExample:\n  abs tape new --library /var/lib/abs/tapes --count 10"
}

func (c *tapeNewCmd) Run() error {
	if c.Count < 1 {
		return fail(exitUsage, "--count must be at least 1")
	}
	if err := os.MkdirAll(c.Library, 0o750); err != nil {
		return fail(exitFailed, "%v", err)
	}
	names, err := tape.NewCartridges(c.Library, c.Count, c.Prefix)
	if err != nil {
		return fail(exitFailed, "%v", err)
	}
	fmt.Printf("made %d blank cartridges in %s: %s … %s\n", len(names), c.Library, names[0], names[len(names)-1])
	return nil
}

type tapeLsCmd struct {
	Cartridge string `arg:"" type:"existingfile" help:"The cartridge file (e.g. /var/lib/abs/tapes/A00001.tape)."`
	JSON      bool   `name:"json" help:"Print JSON."`
}

func (c *tapeLsCmd) Help() string {
	return `Reads the cartridge with no master or slave: its label, then one line per
tape file (number, volume, server/partition, dump date, increment date (0
for a full dump), part, size, SHA-256), verifying every payload's size and
checksum. Exit status 65 when anything is damaged (the listing says what).

Example:
  abs tape ls /var/lib/abs/tapes/A00001.tape`
}

type tapeFileJSON struct {
	Number        int    `json:"file"`
	Volume        string `json:"volume"`
	Server        string `json:"server"`
	Partition     string `json:"partition"`
	Job           string `json:"job"`
	DumpDate      string `json:"dump_date"`
	IncrementDate string `json:"increment_date"`
	Part          int    `json:"part"`
	Continues     bool   `json:"continues"`
	Bytes         int64  `json:"bytes"`
	SHA256        string `json:"sha256"`
	Complete      bool   `json:"complete"`
	Damage        string `json:"damage,omitempty"`
}

func incrementDate(t time.Time) string {
	if t.IsZero() {
		return "0"
	}
	return t.UTC().Format(time.RFC3339)
}

func (c *tapeLsCmd) Run() error {
	label, files, err := tape.List(c.Cartridge)
	if errors.Is(err, tape.ErrBlank) {
		fmt.Printf("%s: blank (no label)\n", c.Cartridge)
		return nil
	}
	if len(files) == 0 && err != nil {
		return fail(exitCorrupt, "%v", err)
	}
	if c.JSON {
		out := struct {
			Label   string         `json:"label"`
			Realm   string         `json:"realm"`
			Origin  string         `json:"origin"`
			Created string         `json:"created"`
			Files   []tapeFileJSON `json:"files"`
		}{Label: label.Label, Realm: label.Realm, Origin: label.Origin, Created: label.Created.UTC().Format(time.RFC3339), Files: []tapeFileJSON{}}
		for _, f := range files {
			out.Files = append(out.Files, tapeFileJSON{Number: f.Number, Volume: f.Volume, Server: f.Server, Partition: f.Partition, Job: f.Job,
				DumpDate: f.DumpDate.UTC().Format(time.RFC3339), IncrementDate: incrementDate(f.IncrementDate), Part: f.Part, Continues: f.Continues,
				Bytes: f.Size, SHA256: f.SHA256, Complete: f.Complete, Damage: f.Damage})
		}
		if perr := printJSON(out); perr != nil {
			return perr
		}
	} else {
		fmt.Printf("label %s  realm %s  created %s\n", label.Label, label.Realm, label.Created.UTC().Format(time.RFC3339))
		tw := tabwriter.NewWriter(os.Stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "FILE\tVOLUME\tSERVER/PARTITION\tDUMP DATE\tINCREMENT\tPART\tBYTES\tSHA256\tSTATUS")
		for _, f := range files {
			status := "ok"
			switch {
			case f.Damage != "":
				status = "DAMAGED: " + f.Damage
			case f.Continues:
				status = "continues on another cartridge"
			}
			sum := f.SHA256
			if len(sum) > 16 {
				sum = sum[:16]
			}
			fmt.Fprintf(tw, "%d\t%s\t%s/%s\t%s\t%s\t%d\t%d\t%s\t%s\n", f.Number, f.Volume, f.Server, f.Partition,
				f.DumpDate.UTC().Format(time.RFC3339), incrementDate(f.IncrementDate), f.Part, f.Size, sum, status)
		}
		tw.Flush()
	}
	if err != nil {
		return fail(exitCorrupt, "%v", err)
	}
	return nil
}

type tapeExtractCmd struct {
	Cartridge string   `arg:"" type:"existingfile" help:"The cartridge file."`
	File      []string `required:"" name:"file" placeholder:"N|CARTRIDGE:N" help:"Tape file number on CARTRIDGE, or on another cartridge (repeatable: a full dump, then its incrementals in order, applied one after the other)."`
	To        string   `required:"" type:"path" placeholder:"DIR" help:"Restore target (must be empty or missing for a full dump)."`
}

// tapeFileRef is one --file: a tape file on a cartridge.
type tapeFileRef struct {
	cartridge string
	n         int
}

func (c *tapeExtractCmd) refs() ([]tapeFileRef, error) {
	var out []tapeFileRef
	for _, f := range c.File {
		ref := tapeFileRef{cartridge: c.Cartridge}
		num := f
		if i := strings.LastIndexByte(f, ':'); i >= 0 {
			ref.cartridge, num = f[:i], f[i+1:]
		}
		n, err := strconv.Atoi(num)
		if err != nil || n < 1 {
			return nil, fail(exitUsage, "--file %q: want a tape file number N or CARTRIDGE:N", f)
		}
		ref.n = n
		out = append(out, ref)
	}
	return out, nil
}

func (c *tapeExtractCmd) Help() string {
	return `The last-resort restore path: reads tape files straight from a cartridge
and restores them into a directory, with no master or slave. Give a full dump
first, then its incrementals in order (abs tape ls shows the dump and
increment dates); each is checked against the one before. Nothing is ever
written outside the target: archive entries with '..', absolute paths or
symlink tricks are refused.

Examples:
  abs tape extract A00001.tape --file 3 --to /tmp/user.alice
  abs tape extract A00001.tape --file 3 --file 7 --file A00002.tape:1 --to /tmp/user.alice`
}

func (c *tapeExtractCmd) Run(ctx context.Context) error {
	refs, err := c.refs()
	if err != nil {
		return err
	}
	// Check every payload named before writing anything.
	for _, ref := range refs {
		_, files, lerr := tape.List(ref.cartridge)
		if len(files) == 0 && lerr != nil {
			return fail(exitCorrupt, "%v", lerr)
		}
		found := false
		for _, f := range files {
			if f.Number == ref.n {
				found = true
				if f.Damage != "" {
					return fail(exitCorrupt, "tape file %d of %s is damaged (%s): nothing restored", ref.n, ref.cartridge, f.Damage)
				}
			}
		}
		if !found {
			return fail(exitUsage, "%s has no tape file %d (abs tape ls lists them)", ref.cartridge, ref.n)
		}
	}
	var after time.Time
	for i, ref := range refs {
		fi, r, err := tape.OpenFile(ref.cartridge, ref.n)
		if err != nil {
			return fail(exitCorrupt, "%v", err)
		}
		if fi.Part > 1 || fi.Continues {
			r.Close()
			return fail(exitFailed, "tape file %d of %s is part %d of a dump that spans cartridges; extract reads single-cartridge dumps only", ref.n, ref.cartridge, fi.Part)
		}
		if i == 0 && !fi.IncrementDate.IsZero() {
			r.Close()
			return fail(exitUsage, "tape file %d of %s is an incremental (since %s): give its full dump first (abs tape ls shows which file that is)", ref.n, ref.cartridge, incrementDate(fi.IncrementDate))
		}
		st, err := source.DirRestorer{}.Restore(ctx, c.To, r, source.RestoreOptions{After: after, Volume: fi.Volume})
		if cerr := r.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			if errors.Is(err, tape.ErrCorrupt) {
				return fail(exitCorrupt, "tape file %d of %s: %v", ref.n, ref.cartridge, err)
			}
			return fail(exitFailed, "tape file %d of %s: %v", ref.n, ref.cartridge, err)
		}
		kind := "incremental"
		if st.Full {
			kind = "full"
		}
		fmt.Printf("%s file %d: %s dump of %s (%s): %d files, %d directories, %d symlinks, %d deleted, %s\n", filepath.Base(ref.cartridge), ref.n, kind, st.Volume,
			st.DumpDate.UTC().Format(time.RFC3339), st.Files, st.Dirs, st.Symlinks, st.Deleted, humanBytes(st.Bytes))
		after = st.DumpDate
	}
	fmt.Printf("restored into %s\n", c.To)
	return nil
}
