package main

import (
	"context"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/alecthomas/kong"

	"github.com/abs-backup/abs/api"
)

// nameKind is a kind of name the master knows, offered by completion.
type nameKind int

const (
	noNames           nameKind = iota
	slaveNames                 // ListSlaves
	serverNames                // the slaves' reaches and ListVolumes
	partitionNames             // likewise
	volumeNames                // likewise
	dumpedVolumeNames          // ListVolumes only: volumes with dumps (restore)
	activeJobNames             // ListJobs: the jobs not ended nor being aborted (abort)
	tapeNames                  // ListTapes: tape labels
)

// kindOf is the kind of names a flag or argument of that name takes, so a
// command added later gets completion from its names alone.
func kindOf(name string) nameKind {
	switch name {
	case "server":
		return serverNames
	case "partition":
		return partitionNames
	case "volume":
		return volumeNames
	case "slave":
		return slaveNames
	case "job":
		return activeJobNames
	case "tape", "label":
		return tapeNames
	}
	return noNames
}

// Completion asks the master with a short timeout and keeps the answers
// (or the failure) a few seconds, so Tab never hangs on a master that is
// down and does not call it at every key.
const (
	namesTimeout = time.Second
	namesTTL     = 5 * time.Second
)

type nameSource int

const (
	srcSlaves nameSource = iota
	srcVolumes
	srcJobs
	srcTapes
	nSources
)

// masterNames fetches and caches the names the master knows.
type masterNames struct {
	g       *Globals
	timeout time.Duration // of one fetch

	mu      sync.Mutex
	client  *operatorClient
	dialErr error
	at      [nSources]time.Time // when each source was fetched (zero: never, or invalidated)
	slaves  []*api.SlaveInfo
	volumes []*api.VolumeInfo
	jobs    []*api.Job
	tapes   []*api.TapeInfo

	// api is the client used (a fake in unit tests); nil: dial g's master.
	api api.OperatorServiceClient
}

func newMasterNames(g *Globals) *masterNames { return &masterNames{g: g, timeout: namesTimeout} }

// invalidate forgets every answer (a command may have changed them).
func (n *masterNames) invalidate() {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.at = [nSources]time.Time{}
}

func (n *masterNames) close() {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.client != nil {
		n.client.Close()
		n.client = nil
	}
}

// operator returns the client, dialing once (lazily: grpc connects on the
// first call).
func (n *masterNames) operator() api.OperatorServiceClient {
	if n.api != nil {
		return n.api
	}
	if n.client == nil && n.dialErr == nil {
		n.client, n.dialErr = n.g.dial()
	}
	if n.client == nil {
		return nil
	}
	return n.client.OperatorServiceClient
}

// fetch refreshes the sources that are stale, together, within n.timeout.
func (n *masterNames) fetch(srcs ...nameSource) {
	n.mu.Lock()
	defer n.mu.Unlock()
	c := n.operator()
	if c == nil {
		return
	}
	now := time.Now()
	var stale []nameSource
	for _, s := range srcs {
		if n.at[s].IsZero() || now.Sub(n.at[s]) > namesTTL {
			stale = append(stale, s)
		}
	}
	if len(stale) == 0 {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), n.timeout)
	defer cancel()
	var wg sync.WaitGroup
	var (
		slaves  *api.ListSlavesResponse
		volumes *api.ListVolumesResponse
		jobs    *api.ListJobsResponse
		tapes   *api.ListTapesResponse
	)
	for _, s := range stale {
		wg.Add(1)
		go func() {
			defer wg.Done()
			switch s {
			case srcSlaves:
				slaves, _ = c.ListSlaves(ctx, &api.ListSlavesRequest{})
			case srcVolumes:
				volumes, _ = c.ListVolumes(ctx, &api.ListVolumesRequest{})
			case srcJobs:
				jobs, _ = c.ListJobs(ctx, &api.ListJobsRequest{})
			case srcTapes:
				tapes, _ = c.ListTapes(ctx, &api.ListTapesRequest{})
			}
		}()
	}
	wg.Wait()
	// A failed call leaves an empty list, kept as long as an answer: the
	// next Tab in a few seconds does not wait again.
	for _, s := range stale {
		n.at[s] = now
		switch s {
		case srcSlaves:
			n.slaves = slaves.GetSlaves()
		case srcVolumes:
			n.volumes = volumes.GetVolumes()
		case srcJobs:
			n.jobs = jobs.GetJobs()
		case srcTapes:
			n.tapes = tapes.GetTapes()
		}
	}
}

// places lists the servers, partitions and volumes the master knows of
// (kind dumpedVolumeNames: only those with dumps) that match filter.
func (n *masterNames) places(kind nameKind, filter place) []place {
	srcs := []nameSource{srcSlaves, srcVolumes}
	if kind == dumpedVolumeNames {
		srcs = srcs[1:]
	}
	n.fetch(srcs...)
	n.mu.Lock()
	defer n.mu.Unlock()
	var all []place
	if kind != dumpedVolumeNames {
		for _, s := range n.slaves {
			for _, t := range s.Reaches {
				all = append(all, place{t.Server, t.Partition, t.Volume})
			}
		}
	}
	for _, v := range n.volumes {
		all = append(all, place{v.Server, v.Partition, v.Volume})
	}
	var out []place
	for _, p := range all {
		if (filter.server == "" || p.server == filter.server) &&
			(filter.partition == "" || p.partition == filter.partition) &&
			(filter.volume == "" || p.volume == filter.volume) {
			out = append(out, p)
		}
	}
	return out
}

// list returns the names of kind the master knows, sorted; server,
// partition and volume names only where they match filter in the other
// two fields.
func (n *masterNames) list(kind nameKind, filter place) []string {
	var out []string
	switch kind {
	case noNames:
		return nil
	case serverNames, partitionNames, volumeNames, dumpedVolumeNames:
		f := filter
		switch kind {
		case serverNames:
			f.server = ""
		case partitionNames:
			f.partition = ""
		default:
			f.volume = ""
		}
		for _, p := range n.places(kind, f) {
			switch kind {
			case serverNames:
				out = append(out, p.server)
			case partitionNames:
				out = append(out, p.partition)
			default:
				out = append(out, p.volume)
			}
		}
	case slaveNames:
		n.fetch(srcSlaves)
		n.mu.Lock()
		for _, s := range n.slaves {
			out = append(out, s.Name)
		}
		n.mu.Unlock()
	case activeJobNames:
		n.fetch(srcJobs)
		n.mu.Lock()
		for _, j := range n.jobs {
			if !j.AbortRequested {
				out = append(out, j.Id)
			}
		}
		n.mu.Unlock()
	case tapeNames:
		n.fetch(srcTapes)
		n.mu.Lock()
		for _, t := range n.tapes {
			out = append(out, t.Label)
		}
		n.mu.Unlock()
	}
	return sortedUnique(out)
}

func sortedUnique(in []string) []string {
	sort.Strings(in)
	var out []string
	for _, s := range in {
		if s != "" && (len(out) == 0 || out[len(out)-1] != s) {
			out = append(out, s)
		}
	}
	return out
}

// withPrefix keeps the candidates that start with prefix, each followed by
// suffix.
func withPrefix(cands []string, prefix, suffix string) []string {
	var out []string
	for _, c := range cands {
		if strings.HasPrefix(c, prefix) {
			out = append(out, c+suffix)
		}
	}
	return out
}

// complete is the line editor's completer: it completes the word under the
// cursor (liner.WordCompleter).
func (sh *shell) complete(line string, pos int) (head string, completions []string, tail string) {
	r := []rune(line)
	if pos > len(r) {
		pos = len(r)
	}
	before := string(r[:pos])
	tail = string(r[pos:])
	start := strings.LastIndexAny(before, " \t") + 1
	head, cur := before[:start], before[start:]
	words := strings.Fields(head)
	if len(words) > 0 && words[0] == "abs" {
		words = words[1:]
	}
	return head, sh.candidates(words, cur), tail
}

// candidates are the completions of cur after words: a subcommand, a flag,
// a flag's value or a positional argument, read against the kong tree.
func (sh *shell) candidates(words []string, cur string) []string {
	root := sh.tree.Model.Node
	li := analyze(root, words)
	switch {
	case li.pending != nil:
		return withPrefix(sh.flagValues(li, li.pending), cur, " ")
	case strings.HasPrefix(cur, "--") && strings.Contains(cur, "="):
		name, val, _ := strings.Cut(cur[2:], "=")
		f := findFlag(li.node, func(f *kong.Flag) bool { return f.Name == name })
		if f == nil {
			return nil
		}
		var out []string
		for _, v := range withPrefix(sh.flagValues(li, f), val, " ") {
			out = append(out, "--"+name+"="+v)
		}
		return out
	case strings.HasPrefix(cur, "-"):
		var names []string
		for n := li.node; n != nil; n = n.Parent {
			for _, f := range n.Flags {
				if _, given := li.flags[f.Name]; f.Hidden || (given && !f.IsCumulative()) {
					continue
				}
				names = append(names, "--"+f.Name)
			}
		}
		return withPrefix(sortedUnique(names), cur, " ")
	case len(li.args) == 0 && len(li.node.Children) > 0:
		return withPrefix(childNames(li.node), cur, " ")
	case li.path == "help":
		// help takes a command's words.
		n := root
		for _, w := range li.args {
			if n = findChild(n, w); n == nil {
				return nil
			}
		}
		return withPrefix(childNames(n), cur, " ")
	case len(li.args) < len(li.node.Positional):
		_, kind := positionalAsk(li.path, li.node.Positional[len(li.args)])
		return withPrefix(sh.names.list(kind, li.known()), cur, " ")
	}
	return nil
}

// flagValues are the values a flag takes: its enum, or the names of its kind.
func (sh *shell) flagValues(li lineInfo, f *kong.Flag) []string {
	if f.Enum != "" {
		return f.EnumSlice()
	}
	return sh.names.list(kindOf(f.Name), li.known())
}

func childNames(n *kong.Node) []string {
	var out []string
	for _, c := range n.Children {
		if !c.Hidden {
			out = append(out, c.Name)
			out = append(out, c.Aliases...)
		}
	}
	return sortedUnique(out)
}
