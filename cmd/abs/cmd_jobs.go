package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/abs-backup/abs/api"
)

type jobsCmd struct {
	All   bool `help:"Every job ever, not only those still queued or running."`
	Limit uint `help:"With --all, only the newest N jobs (0: all; at most 10000)."`
	JSON  bool `name:"json" help:"Print JSON (an array of jobs)."`
}

func (c *jobsCmd) Help() string {
	return `Lists jobs in the order they were queued: ID, state, kind, target, level,
who asked, when, and what a queued job waits for or why a job ended.

Examples:
  abs jobs
  abs jobs --all --limit 20
  abs jobs --all --json | jq '.[] | select(.state=="failed")'`
}

func (c *jobsCmd) Run(ctx context.Context, g *Globals) error {
	return withClient(g, func(cl *operatorClient) error {
		resp := &api.ListJobsResponse{}
		req := &api.ListJobsRequest{All: c.All, Limit: uint32(c.Limit)}
		for {
			var page *api.ListJobsResponse
			err := cl.call(ctx, func(ctx context.Context) (err error) {
				page, err = cl.ListJobs(ctx, req)
				return err
			})
			if err != nil {
				return err
			}
			resp.Jobs = append(resp.Jobs, page.Jobs...)
			if page.NextAfterIndex == 0 {
				break
			}
			req.AfterIndex = page.NextAfterIndex
		}
		if c.JSON {
			out := make([]jobJSON, 0, len(resp.Jobs))
			for _, j := range resp.Jobs {
				out = append(out, jobJSONOf(j))
			}
			return printJSON(out)
		}
		if len(resp.Jobs) == 0 {
			if c.All {
				fmt.Println("no jobs")
			} else {
				fmt.Println("no jobs queued or running (abs jobs --all lists ended ones)")
			}
			return nil
		}
		tw := tabwriter.NewWriter(os.Stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "ID\tSTATE\tKIND\tTARGET\tLEVEL\tBY\tQUEUED\tNOTE")
		for _, j := range resp.Jobs {
			by := j.By
			if j.Origin != "" { // adopted: say from which master's journal
				by += " (journal " + j.Origin[:min(8, len(j.Origin))] + "…)"
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s %s\t%s\t%s\t%s\t%s\n", j.Id, j.State, j.Kind, j.Target.GetScope(), targetString(j.Target),
				j.Level, by, time.Unix(0, j.QueuedAtUnixNano).Local().Format("2006-01-02 15:04:05"), j.Why)
		}
		return tw.Flush()
	})
}

type abortCmd struct {
	Job  string `arg:"" placeholder:"JOB" help:"Job ID, as printed by abs dump or abs jobs."`
	JSON bool   `name:"json" help:"Print the job as JSON."`
}

func (c *abortCmd) Help() string {
	return `A queued job is aborted at once; a running one at the slave's next
opportunity (abs jobs shows it ending). Exit status 3 for an unknown job or
one that has already ended.

Example:
  abs abort q7k2m-12`
}

func (c *abortCmd) Run(ctx context.Context, g *Globals) error {
	return withClient(g, func(cl *operatorClient) error {
		var job *api.Job
		err := cl.call(ctx, func(ctx context.Context) (err error) {
			job, err = cl.Abort(ctx, &api.AbortRequest{Id: c.Job})
			return err
		})
		if err != nil {
			return err
		}
		if c.JSON {
			return printJSON(jobJSONOf(job))
		}
		if job.State == "aborted" {
			fmt.Printf("aborted %s\n", job.Id)
		} else {
			fmt.Printf("abort of %s requested; slave %s stops it at its next opportunity\n", job.Id, job.Slave)
		}
		return nil
	})
}

type statusCmd struct {
	JSON bool `name:"json" help:"Print JSON."`
}

func (c *statusCmd) Run(ctx context.Context, g *Globals) error {
	return withClient(g, func(cl *operatorClient) error {
		var st *api.StatusResponse
		err := cl.call(ctx, func(ctx context.Context) (err error) {
			st, err = cl.Status(ctx, &api.StatusRequest{})
			return err
		})
		if err != nil {
			return err
		}
		if c.JSON {
			return printJSON(statusJSON{
				Realm: st.Realm, Node: st.Node, Mode: st.Mode, JournalID: st.JournalId, JobPrefix: st.JobPrefix, Epoch: st.Epoch,
				LastIndex: st.LastIndex, AppliedIndex: st.AppliedIndex, JournalBytes: st.JournalBytes, Jobs: st.JobsByState,
				Slaves: st.Slaves, Tapes: st.Tapes, Volumes: st.Volumes, Listen: st.Listen, Metrics: st.Metrics,
				ClusterHash: st.ClusterHash, StartedAt: stamp(st.StartedAtUnixNano),
			})
		}
		fmt.Printf("master   %s (realm %s, %s mode, epoch %d), up since %s\n", st.Node, st.Realm, st.Mode, st.Epoch,
			time.Unix(0, st.StartedAtUnixNano).Local().Format(time.DateTime))
		fmt.Printf("journal  %s: last index %d, %s; catalog applied %d\n", st.JournalId, st.LastIndex, humanBytes(st.JournalBytes), st.AppliedIndex)
		var states []string
		for s := range st.JobsByState {
			states = append(states, s)
		}
		sort.Strings(states)
		var parts []string
		for _, s := range states {
			parts = append(parts, fmt.Sprintf("%s %d", s, st.JobsByState[s]))
		}
		fmt.Printf("jobs     %s\n", strings.Join(parts, ", "))
		fmt.Printf("slaves   %d registered; tapes %d; volumes %d\n", st.Slaves, st.Tapes, st.Volumes)
		fmt.Printf("serving  %s; metrics %s; cluster config %s\n", st.Listen, orDash(st.Metrics), st.ClusterHash)
		return nil
	})
}

type statusJSON struct {
	Realm        string            `json:"realm"`
	Node         string            `json:"node"`
	Mode         string            `json:"mode"`
	JournalID    string            `json:"journal_id"`
	JobPrefix    string            `json:"job_prefix"`
	Epoch        uint64            `json:"epoch"`
	LastIndex    uint64            `json:"last_index"`
	AppliedIndex uint64            `json:"applied_index"`
	JournalBytes int64             `json:"journal_bytes"`
	Jobs         map[string]uint64 `json:"jobs"`
	Slaves       uint32            `json:"slaves"`
	Tapes        uint32            `json:"tapes"`
	Volumes      uint32            `json:"volumes"`
	Listen       string            `json:"listen"`
	Metrics      string            `json:"metrics"`
	ClusterHash  string            `json:"cluster_hash"`
	StartedAt    string            `json:"started_at"`
}

// jobJSON is the stable JSON form of a job for scripts.
type jobJSON struct {
	ID             string `json:"id"`
	State          string `json:"state"`
	Kind           string `json:"kind"`
	Scope          string `json:"scope"`
	Server         string `json:"server,omitempty"`
	Partition      string `json:"partition,omitempty"`
	Volume         string `json:"volume,omitempty"`
	Level          string `json:"level"`
	By             string `json:"by,omitempty"`
	Slave          string `json:"slave,omitempty"`
	Note           string `json:"note,omitempty"`
	AbortRequested bool   `json:"abort_requested,omitempty"`
	QueuedAt       string `json:"queued_at"`
	UpdatedAt      string `json:"updated_at"`
	EndedAt        string `json:"ended_at,omitempty"`
	QueuedIndex    uint64 `json:"queued_index"`
	Volumes        int64  `json:"volumes"`
	Bytes          int64  `json:"bytes"`
	Origin         string `json:"origin,omitempty"` // adopted: the journal ID of the master that queued it
}

func jobJSONOf(j *api.Job) jobJSON {
	return jobJSON{
		ID: j.Id, State: j.State, Kind: j.Kind, Scope: j.Target.GetScope(), Server: j.Target.GetServer(),
		Partition: j.Target.GetPartition(), Volume: j.Target.GetVolume(), Level: j.Level, By: j.By, Slave: j.Slave,
		Note: j.Why, AbortRequested: j.AbortRequested, QueuedAt: stamp(j.QueuedAtUnixNano), UpdatedAt: stamp(j.UpdatedAtUnixNano),
		EndedAt: stamp(j.EndedAtUnixNano), QueuedIndex: j.QueuedIndex, Volumes: j.Volumes, Bytes: j.Bytes, Origin: j.Origin,
	}
}

func stamp(ns int64) string {
	if ns == 0 {
		return ""
	}
	return time.Unix(0, ns).UTC().Format(time.RFC3339Nano)
}

func printJSON(v any) error {
	enc := json.NewEncoder(os.Stdout)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

func targetString(t *api.Target) string {
	part := func(s string) string {
		if s == "" {
			return "*"
		}
		return s
	}
	switch t.GetScope() {
	case "server":
		return part(t.GetServer())
	case "partition":
		return part(t.GetServer()) + "/" + part(t.GetPartition())
	}
	return part(t.GetServer()) + "/" + part(t.GetPartition()) + "/" + part(t.GetVolume())
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func humanBytes(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}
