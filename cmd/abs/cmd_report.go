package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"text/tabwriter"
	"time"

	"github.com/abs-backup/abs/api"
	"github.com/abs-backup/abs/master"
	"github.com/abs-backup/abs/statemachine"
)

type reportCmd struct {
	Volume    string `help:"Only this volume."`
	Server    string `help:"Only this server."`
	Partition string `help:"Only this partition (with --server)."`
	JSON      bool   `name:"json" help:"Print JSON (an array of dump records)."`
}

func (c *reportCmd) Help() string {
	return `The volume report: one line per dump, tab-separated, no header, in this
column order (crippled mode's dump log uses exactly this format, so grep
works on both):

  volume  dump-date  tape  increment-date  server  partition  file  bytes  sha256

Dates are RFC 3339 UTC; the increment date is 0 for a full dump; a dump that
spans cartridges names its tapes in order, separated by commas.

Examples:
  abs report | grep user.alice
  abs report --server fs1 --partition vicepa --json`
}

// reportLine formats one dump record as a volume report line: the one
// format of the report and the crippled master's dump log.
func reportLine(d *api.DumpRecord) string {
	return master.ReportLine(statemachine.Dump{Volume: d.Volume, Server: d.Server, Partition: d.Partition, DumpDate: d.DumpDateUnixNano,
		IncrementDate: d.IncrementDateUnixNano, Tapes: d.Tapes, File: int(d.File), Bytes: d.Bytes, SHA256: d.Sha256})
}

type dumpJSON struct {
	Volume        string   `json:"volume"`
	DumpDate      string   `json:"dump_date"`
	Tapes         []string `json:"tapes"`
	IncrementDate string   `json:"increment_date"`
	Server        string   `json:"server"`
	Partition     string   `json:"partition"`
	File          uint32   `json:"file"`
	Bytes         int64    `json:"bytes"`
	SHA256        string   `json:"sha256"`
	Job           string   `json:"job"`
}

func (c *reportCmd) Run(ctx context.Context, g *Globals) error {
	if c.Partition != "" && c.Server == "" {
		return fail(exitUsage, "--partition needs --server")
	}
	return withClient(g, func(cl *operatorClient) error {
		var out []dumpJSON
		err := cl.call(ctx, func(ctx context.Context) error {
			stream, err := cl.Report(ctx, &api.ReportRequest{Server: c.Server, Partition: c.Partition, Volume: c.Volume})
			if err != nil {
				return err
			}
			for {
				d, err := stream.Recv()
				if errors.Is(err, io.EOF) {
					return nil
				}
				if err != nil {
					return err
				}
				if !c.JSON {
					fmt.Println(reportLine(d))
					continue
				}
				incr := "0"
				if d.IncrementDateUnixNano != 0 {
					incr = time.Unix(0, d.IncrementDateUnixNano).UTC().Format(time.RFC3339)
				}
				out = append(out, dumpJSON{Volume: d.Volume, DumpDate: time.Unix(0, d.DumpDateUnixNano).UTC().Format(time.RFC3339), Tapes: d.Tapes,
					IncrementDate: incr, Server: d.Server, Partition: d.Partition, File: d.File, Bytes: d.Bytes, SHA256: d.Sha256, Job: d.Job})
			}
		})
		if err != nil || !c.JSON {
			return err
		}
		if out == nil {
			out = []dumpJSON{}
		}
		return printJSON(out)
	})
}

type volumesCmd struct {
	JSON bool `name:"json" help:"Print JSON."`
}

func (c *volumesCmd) Help() string {
	return "Lists every volume the master has dumps of, with its latest full and latest dump.\n\nExample:\n  abs volumes --json"
}

func (c *volumesCmd) Run(ctx context.Context, g *Globals) error {
	return withClient(g, func(cl *operatorClient) error {
		var resp *api.ListVolumesResponse
		if err := cl.call(ctx, func(ctx context.Context) (err error) {
			resp, err = cl.ListVolumes(ctx, &api.ListVolumesRequest{})
			return err
		}); err != nil {
			return err
		}
		if c.JSON {
			type volJSON struct {
				Server    string `json:"server"`
				Partition string `json:"partition"`
				Volume    string `json:"volume"`
				LastFull  string `json:"last_full"`
				LastDump  string `json:"last_dump"`
				Dumps     uint32 `json:"dumps"`
				LastJob   string `json:"last_job"`
				LastTape  string `json:"last_tape"`
			}
			out := []volJSON{}
			for _, v := range resp.Volumes {
				out = append(out, volJSON{v.Server, v.Partition, v.Volume, stamp(v.LastFullUnixNano), stamp(v.LastDumpUnixNano), v.Dumps, v.LastJob, v.LastTape})
			}
			return printJSON(out)
		}
		if len(resp.Volumes) == 0 {
			fmt.Println("no volume has been dumped yet")
			return nil
		}
		tw := tabwriter.NewWriter(os.Stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "VOLUME\tSERVER/PARTITION\tLAST FULL\tLAST DUMP\tDUMPS\tLAST TAPE")
		for _, v := range resp.Volumes {
			fmt.Fprintf(tw, "%s\t%s/%s\t%s\t%s\t%d\t%s\n", v.Volume, v.Server, v.Partition, localTime(v.LastFullUnixNano), localTime(v.LastDumpUnixNano), v.Dumps, v.LastTape)
		}
		return tw.Flush()
	})
}

type tapesCmd struct {
	JSON bool `name:"json" help:"Print JSON."`
}

func (c *tapesCmd) Help() string {
	return "Lists every tape the master labeled: internal label, external name, state\n(reserved while a job writes it, valid once it holds dumps: never overwritten,\nexpired when reusable), files written.\n\nExample:\n  abs tapes --json"
}

func (c *tapesCmd) Run(ctx context.Context, g *Globals) error {
	return withClient(g, func(cl *operatorClient) error {
		var resp *api.ListTapesResponse
		if err := cl.call(ctx, func(ctx context.Context) (err error) {
			resp, err = cl.ListTapes(ctx, &api.ListTapesRequest{})
			return err
		}); err != nil {
			return err
		}
		if c.JSON {
			type tapeJSON struct {
				Label     string `json:"label"`
				Name      string `json:"name"`
				State     string `json:"state"`
				Job       string `json:"job,omitempty"`
				Slave     string `json:"slave"`
				Files     uint32 `json:"files"`
				UpdatedAt string `json:"updated_at"`
			}
			out := []tapeJSON{}
			for _, t := range resp.Tapes {
				out = append(out, tapeJSON{t.Label, t.Name, t.State, t.Job, t.Slave, t.Files, stamp(t.UpdatedAtUnixNano)})
			}
			return printJSON(out)
		}
		if len(resp.Tapes) == 0 {
			fmt.Println("no tape has been labeled yet")
			return nil
		}
		tw := tabwriter.NewWriter(os.Stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "LABEL\tNAME\tSTATE\tFILES\tSLAVE\tJOB\tUPDATED")
		for _, t := range resp.Tapes {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%s\t%s\t%s\n", t.Label, t.Name, t.State, t.Files, t.Slave, t.Job, localTime(t.UpdatedAtUnixNano))
		}
		return tw.Flush()
	})
}

func localTime(ns int64) string {
	if ns == 0 {
		return "-"
	}
	return time.Unix(0, ns).Local().Format(time.DateTime)
}
