package main

import (
	"context"
	"fmt"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/abs-backup/abs/api"
)

type slavesCmd struct {
	JSON bool `name:"json" help:"Print JSON (an array of slaves)."`
}

func (c *slavesCmd) Help() string {
	return `Lists the media slaves that registered with the master: address, drives,
what they reach, and how many jobs each has.

Examples:
  abs slaves
  abs slaves --json`
}

type slaveJSON struct {
	Name         string   `json:"name"`
	Addr         string   `json:"addr"`
	Drives       uint32   `json:"drives"`
	Reaches      []string `json:"reaches"`
	RegisteredAt string   `json:"registered_at"`
	LastSeq      uint64   `json:"last_seq"`
	Jobs         uint32   `json:"jobs"`
}

func (c *slavesCmd) Run(ctx context.Context, g *Globals) error {
	return withClient(g, func(cl *operatorClient) error {
		var resp *api.ListSlavesResponse
		err := cl.call(ctx, func(ctx context.Context) (err error) {
			resp, err = cl.ListSlaves(ctx, &api.ListSlavesRequest{})
			return err
		})
		if err != nil {
			return err
		}
		out := make([]slaveJSON, 0, len(resp.Slaves))
		for _, s := range resp.Slaves {
			j := slaveJSON{Name: s.Name, Addr: s.Addr, Drives: s.Drives, RegisteredAt: stamp(s.RegisteredAtUnixNano), LastSeq: s.LastSeq, Jobs: s.Jobs, Reaches: []string{}}
			for _, t := range s.Reaches {
				j.Reaches = append(j.Reaches, t.Scope+" "+targetString(t))
			}
			out = append(out, j)
		}
		if c.JSON {
			return printJSON(out)
		}
		if len(out) == 0 {
			fmt.Println("no slave has registered with this master")
			return nil
		}
		tw := tabwriter.NewWriter(os.Stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "NAME\tADDRESS\tDRIVES\tJOBS\tREGISTERED\tREACHES")
		for _, s := range out {
			at, _ := time.Parse(time.RFC3339Nano, s.RegisteredAt)
			fmt.Fprintf(tw, "%s\t%s\t%d\t%d\t%s\t%s\n", s.Name, s.Addr, s.Drives, s.Jobs, at.Local().Format(time.DateTime), strings.Join(s.Reaches, ", "))
		}
		return tw.Flush()
	})
}
