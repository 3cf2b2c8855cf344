package statemachine

import (
	"bufio"
	"bytes"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"
)

var update = flag.Bool("update", false, "rewrite golden files in testdata/")

// TestScripts runs every testdata/script/*.txt: one command a line, fed
// through Decide, the events encoded, decoded and applied, exactly as the
// master's commit loop does; the transcript (events, refusals, effects,
// records, state) must equal the .golden file beside it. `go test -update`
// rewrites the golden files; review their diff like code.
func TestScripts(t *testing.T) {
	files, err := filepath.Glob("testdata/script/*.txt")
	if err != nil || len(files) == 0 {
		t.Fatalf("no scripts: %v", err)
	}
	for _, f := range files {
		t.Run(strings.TrimSuffix(filepath.Base(f), ".txt"), func(t *testing.T) {
			got := runScript(t, f)
			golden := strings.TrimSuffix(f, ".txt") + ".golden"
			if *update {
				if err := os.WriteFile(golden, got, 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("%v (run with -update to create it)", err)
			}
			if !bytes.Equal(got, want) {
				t.Errorf("transcript differs from %s (run `go test ./statemachine -update` and review the diff)\n--- got:\n%s", golden, got)
			}
		})
	}
}

// scriptJournal is the journal identity every script runs in.
var scriptJournal = JournalInfo{ID: "0123456789abcdef0123456789abcdef", Realm: "athena", Mode: "normal"}

func runScript(t *testing.T, path string) []byte {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	s := NewState(scriptJournal)
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	var out bytes.Buffer
	sc := bufio.NewScanner(f)
	for line := 1; sc.Scan(); line++ {
		text := strings.TrimSpace(sc.Text())
		if text == "" || strings.HasPrefix(text, "#") {
			continue
		}
		fmt.Fprintf(&out, "> %s\n", text)
		verb, args := parseLine(text)
		switch verb {
		case "time":
			now, err = time.Parse(time.RFC3339, args["_"])
			if err != nil {
				t.Fatalf("%s:%d: %v", path, line, err)
			}
			continue
		case "crippled": // the script runs in a crippled journal (first line only)
			if s.Applied != 1 {
				t.Fatalf("%s:%d: crippled must come first", path, line)
			}
			s = NewState(JournalInfo{ID: "fedcba9876543210fedcba9876543210", Realm: "athena", Mode: "crippled"})
			continue
		case "advance":
			d, err := time.ParseDuration(args["_"])
			if err != nil {
				t.Fatalf("%s:%d: %v", path, line, err)
			}
			now = now.Add(d)
			continue
		case "state":
			writeState(&out, s)
			continue
		case "validatetape":
			v, why := s.ValidateTape(JobID(args["id"]), args["label"])
			fmt.Fprintf(&out, "  verdict %s (writable %v): %s\n", v, v.Writable(), why)
			continue
		case "estimate":
			j, ok := s.Job(JobID(args["id"]))
			vols, bytes := s.Estimate(j)
			fmt.Fprintf(&out, "  estimate (job known %v): %d volumes, %d bytes\n", ok, vols, bytes)
			continue
		case "pending":
			for _, e := range Pending(s) {
				fmt.Fprintf(&out, "  pending %s\n", fmtEffect(e))
			}
			continue
		}
		cmd, err := scriptCommand(verb, args)
		if err != nil {
			t.Fatalf("%s:%d: %v", path, line, err)
		}
		before, _ := s.Snapshot()
		evs, err := Decide(s, cmd, now)
		after, _ := s.Snapshot()
		if !bytes.Equal(before, after) {
			t.Fatalf("%s:%d: Decide changed the state", path, line)
		}
		if err != nil {
			r, ok := AsRefusal(err)
			if !ok {
				t.Fatalf("%s:%d: Decide returned a non-refusal error: %v", path, line, err)
			}
			if len(evs) != 0 {
				t.Fatalf("%s:%d: refusal with events", path, line)
			}
			fmt.Fprintf(&out, "  refused (%s): %s\n", r.Code, r.Msg)
			continue
		}
		if len(evs) == 0 {
			fmt.Fprintf(&out, "  no events\n")
			continue
		}
		// Round-trip through the codec, as the journal would.
		payload, err := EncodeEvents(evs)
		if err != nil {
			t.Fatal(err)
		}
		decoded, err := DecodeEvents(payload)
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range decoded {
			fmt.Fprintf(&out, "  event %s\n", fmtValue(e))
		}
		res := s.Apply(s.Applied+1, decoded)
		for _, e := range res.Effects {
			fmt.Fprintf(&out, "  effect %s\n", fmtEffect(e))
		}
		for _, r := range res.Records {
			fmt.Fprintf(&out, "  record %s\n", fmtValue(r))
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return out.Bytes()
}

// parseLine splits "verb k=v k=v" (a bare word after the verb is "_").
func parseLine(text string) (string, map[string]string) {
	fields := strings.Fields(text)
	args := map[string]string{}
	for _, f := range fields[1:] {
		k, v, ok := strings.Cut(f, "=")
		if !ok {
			args["_"] = f
			continue
		}
		args[k] = v
	}
	return fields[0], args
}

func scriptCommand(verb string, a map[string]string) (Command, error) {
	num := func(k string) uint64 {
		n, _ := strconv.ParseUint(a[k], 10, 64)
		return n
	}
	switch verb {
	case "start":
		return StartMaster{Node: a["node"], Addr: a["addr"], Disaster: a["disaster"] == "true"}, nil
	case "dump":
		scope, err := ParseScope(a["scope"])
		if a["scope"] == "bogus" {
			scope, err = 9, nil
		}
		if err != nil {
			return nil, err
		}
		level, err := ParseLevel(a["level"])
		if a["level"] == "bogus" {
			level, err = 7, nil
		}
		if err != nil {
			return nil, err
		}
		return QueueDump{Target: Target{Scope: scope, Server: a["server"], Partition: a["partition"], Volume: a["volume"]}, Level: level, By: a["by"]}, nil
	case "abort":
		return AbortJob{ID: JobID(a["id"]), By: a["by"]}, nil
	case "restore": // plan=DATE:INCR,DATE:INCR… on tape L1
		c := QueueRestore{Target: Target{Scope: ScopeVolume, Server: a["server"], Partition: a["partition"], Volume: a["volume"]},
			To: a["to"], Slave: a["slave"], By: a["by"]}
		for _, step := range strings.Split(a["plan"], ",") {
			var date, incr int64
			fmt.Sscanf(step, "%d:%d", &date, &incr)
			vol := a["volume"]
			if a["planvolume"] != "" {
				vol = a["planvolume"]
			}
			c.Plan = append(c.Plan, Dump{Volume: vol, Server: a["server"], Partition: a["partition"], DumpDate: date, IncrementDate: incr, Tapes: []string{"L1"}})
		}
		return c, nil
	case "register":
		sl := Slave{Name: a["name"], Addr: a["addr"], Drives: int(num("drives")), LastSeq: num("seq")}
		if r := a["reaches"]; r != "" {
			for _, part := range strings.Split(r, ",") {
				sl.Reaches = append(sl.Reaches, scriptTarget(part))
			}
		}
		c := RegisterSlave{Slave: sl}
		if id := a["job"]; id != "" { // one job the slave has in progress
			sj := SlaveJob{ID: JobID(id), Kind: KindDump, Target: scriptTarget(a["target"]), Origin: a["origin"],
				Volumes: int(num("volumes")), Bytes: int64(num("bytes"))}
			if a["kind"] == "restore" {
				sj.Kind = KindRestore
				sj.Restore = &RestoreSpec{To: "/restore", Plan: []Dump{{Volume: sj.Target.Volume, Server: sj.Target.Server, Partition: sj.Target.Partition, DumpDate: 1, Tapes: []string{"L1"}}}}
			}
			if a["kind"] == "bogus" {
				sj.Kind = 9
			}
			sj.Level, _ = ParseLevel(a["level"])
			if t := a["tapes"]; t != "" { // LABEL:FILES,…
				for _, part := range strings.Split(t, ",") {
					label, files, _ := strings.Cut(part, ":")
					n, _ := strconv.Atoi(files)
					sj.Tapes = append(sj.Tapes, HeldTape{Label: label, Files: n})
				}
			}
			c.Jobs = append(c.Jobs, sj)
		}
		return c, nil
	case "schedule":
		return Schedule{}, nil
	case "genlabel":
		return GenLabel{Slave: a["slave"], Job: JobID(a["id"]), Name: a["name"]}, nil
	case "validatelabel":
		return ValidateLabel{Slave: a["slave"], Job: JobID(a["id"]), Label: a["label"]}, nil
	case "report":
		r := Report{Slave: a["slave"], Seq: num("seq"), ID: JobID(a["id"]), Volumes: int(num("volumes")), Bytes: int64(num("bytes")), Why: a["why"]}
		switch a["end"] {
		case "":
		case "done":
			r.End = StateDone
		case "failed":
			r.End = StateFailed
		case "aborted":
			r.End = StateAborted
		case "queued":
			r.End = StateQueued
		default:
			return nil, fmt.Errorf("bad end %q", a["end"])
		}
		if v := a["dump"]; v != "" { // dump=server/partition/volume
			p := strings.Split(v, "/")
			if len(p) != 3 {
				return nil, fmt.Errorf("dump=%s is not server/partition/volume", v)
			}
			r.Dump = &Dump{Server: p[0], Partition: p[1], Volume: p[2], DumpDate: int64(num("date")), IncrementDate: int64(num("incr")),
				Tapes: strings.Split(a["tapes"], ","), File: int(num("file")), Bytes: int64(num("bytes")), SHA256: a["sha256"]}
		}
		return r, nil
	}
	return nil, fmt.Errorf("unknown script verb %q", verb)
}

// scriptTarget reads server, server/partition or server/partition/volume.
func scriptTarget(s string) Target {
	p := strings.Split(s, "/")
	t := Target{Scope: ScopeServer, Server: p[0]}
	switch len(p) {
	case 2:
		t.Scope, t.Partition = ScopePartition, p[1]
	case 3:
		t.Scope, t.Partition, t.Volume = ScopeVolume, p[1], p[2]
	}
	return t
}

func fmtValue(v any) string {
	return strings.ReplaceAll(fmt.Sprintf("%T%+v", v, v), "_msgpack:{} ", "")
}

func fmtEffect(e Effect) string {
	switch e := e.(type) {
	case DispatchJob:
		return fmt.Sprintf("DispatchJob{job:%s slave:%s}", e.Job.ID, e.Slave)
	case SendAbort:
		return fmt.Sprintf("SendAbort{job:%s slave:%s}", e.Job, e.Slave)
	}
	return fmtValue(e)
}

func writeState(out *bytes.Buffer, s *State) {
	fmt.Fprintf(out, "  applied=%d epoch=%d next_job=%d queued=%d\n", s.Applied, s.Master.Epoch, s.NextJob, s.Queued)
	for _, j := range s.ActiveJobs() {
		fmt.Fprintf(out, "  job %s %s %s %s slave=%q why=%q abort=%v\n", j.ID, j.Kind, j.Target, j.State, j.Slave, s.Waiting(j), j.AbortRequested)
	}
	for _, j := range s.Recent {
		fmt.Fprintf(out, "  ended %s %s why=%q\n", j.ID, j.State, j.Why)
	}
	var names []string
	for n := range s.Slaves {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		fmt.Fprintf(out, "  slave %s seq=%d\n", n, s.Slaves[n].LastSeq)
	}
	var vols []string
	for k := range s.Volumes {
		vols = append(vols, k)
	}
	sort.Strings(vols)
	for _, k := range vols {
		v := s.Volumes[k]
		fmt.Fprintf(out, "  volume %s dumps=%d last_full=%d last=%d\n", k, v.Dumps, v.LastFull, v.LastDump)
	}
	c := s.JobCounts()
	fmt.Fprintf(out, "  counts")
	for _, st := range JobStates {
		fmt.Fprintf(out, " %s=%d", st, c[st])
	}
	fmt.Fprintln(out)
}
