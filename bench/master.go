package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"

	"github.com/abs-backup/abs/api"

	"github.com/abs-backup/abs/cluster"
	"github.com/abs-backup/abs/journal"
	"github.com/abs-backup/abs/master"
	"github.com/abs-backup/abs/statemachine"
)

// benchEvents is the size of the big journal: the issue's "1M events".
const benchEvents = 1_000_000

// benchMaster measures, on a journal of 1M events: the catalog rebuild rate
// (next to a bare scan of the same journal and a scan+decode+apply without
// the catalog), and the time from exec to serving for a master with a live
// catalog (next to a master with an empty journal, same machine, same run).
func benchMaster(w io.Writer, dir string) error {
	fmt.Fprintf(w, "\n## master: catalog rebuild and start-up on a journal of %d events\n", benchEvents)
	data := filepath.Join(dir, "big")
	t0 := time.Now()
	if err := writeBigJournal(filepath.Join(data, master.JournalDir)); err != nil {
		return err
	}
	fmt.Fprintf(w, "wrote the journal in %s (%s on disk)\n", time.Since(t0).Round(time.Millisecond), human(dirSize(filepath.Join(data, master.JournalDir))))

	// Baselines: the journal read alone, and read+decode+apply (no catalog).
	r, err := journal.OpenReader(filepath.Join(data, master.JournalDir))
	if err != nil {
		return err
	}
	t0 = time.Now()
	var n int
	if err := r.Scan(2, func(journal.Record) error { n++; return nil }); err != nil {
		return err
	}
	scan := float64(n) / time.Since(t0).Seconds()
	st := statemachine.NewState(statemachine.JournalInfo{ID: r.Identity().JournalID, Realm: r.Identity().Realm, Mode: r.Identity().Mode})
	t0 = time.Now()
	if err := r.Scan(2, func(rec journal.Record) error {
		evs, err := statemachine.DecodeEvents(rec.Payload)
		if err != nil {
			return err
		}
		st.Apply(rec.Index, evs)
		return nil
	}); err != nil {
		return err
	}
	applyRate := float64(n) / time.Since(t0).Seconds()

	rep, err := master.Rebuild(data)
	if err != nil {
		return err
	}
	rate := float64(rep.Records) / rep.Duration.Seconds()
	fmt.Fprintf(w, "%-44s %12s\n", "", "events/s")
	fmt.Fprintf(w, "%-44s %12.0f\n", "baseline: journal scan (read+verify only)", scan)
	fmt.Fprintf(w, "%-44s %12.0f   %.2f× of scan\n", "baseline: scan + decode + Apply (no catalog)", applyRate, applyRate/scan)
	fmt.Fprintf(w, "%-44s %12.0f   %.2f× of scan   goal > 200000: %s\n", "abs journal rebuild (into Pebble)", rate, rate/scan, verdict(rate > 200000))

	// Start-up: exec → "serving" line, median of 3, big journal vs empty one.
	bin, err := filepath.Abs("bin/abs")
	if err != nil {
		return err
	}
	if _, err := os.Stat(bin); err != nil {
		return fmt.Errorf("%s not built (run `make bench`, which builds it): %w", bin, err)
	}
	certs := filepath.Join(dir, "certs")
	if err := cluster.InitCA(filepath.Join(certs, "ca"), "bench", time.Now()); err != nil {
		return err
	}
	if err := cluster.Issue(filepath.Join(certs, "ca"), cluster.RoleMaster, "bench", filepath.Join(certs, "bench"), nil, time.Now()); err != nil {
		return err
	}
	empty := filepath.Join(dir, "empty")
	measure := func(data string) (time.Duration, int64, error) {
		var times []time.Duration
		var rss int64
		for range 3 {
			d, hwm, err := startToServe(bin, dir, data, filepath.Join(certs, "bench"))
			if err != nil {
				return 0, 0, err
			}
			times = append(times, d)
			rss = max(rss, hwm)
		}
		slices.Sort(times)
		return times[1], rss, nil
	}
	base, baseRSS, err := measure(empty)
	if err != nil {
		return err
	}
	big, bigRSS, err := measure(data)
	if err != nil {
		return err
	}
	if err := benchQueue(w, bin, dir, filepath.Join(certs, "ca"), filepath.Join(certs, "bench")); err != nil {
		return err
	}
	fmt.Fprintf(w, "\n%-44s %12s %12s\n", "start to serving (median of 3)", "time", "peak RSS")
	fmt.Fprintf(w, "%-44s %12s %12s\n", "baseline: master with an empty journal", base.Round(time.Millisecond), human(baseRSS))
	fmt.Fprintf(w, "%-44s %12s %12s   %.2f× of baseline   goal < 1s: %s\n", fmt.Sprintf("master, %d-event journal, live catalog", benchEvents),
		big.Round(time.Millisecond), human(bigRSS), float64(big)/float64(base), verdict(big < time.Second))
	return nil
}

// writeBigJournal writes benchEvents events as one-event records: job
// queued, then aborted, so the state stays small as a real master's does.
func writeBigJournal(dir string) error {
	now := time.Now()
	id, err := journal.NewIdentity("bench", "normal", now)
	if err != nil {
		return err
	}
	j, err := journal.Create(dir, id, journal.Options{})
	if err != nil {
		return err
	}
	defer j.Close()
	st := statemachine.NewState(statemachine.JournalInfo{ID: id.JournalID, Realm: id.Realm, Mode: id.Mode})
	var last *journal.Future
	submit := func(cmd statemachine.Command) error {
		evs, err := statemachine.Decide(st, cmd, now)
		if err != nil {
			return err
		}
		p, err := statemachine.EncodeEvents(evs)
		if err != nil {
			return err
		}
		last = j.Submit(journal.Entry{Type: journal.TypeEvents, Epoch: 1, Time: now.UnixNano(), Payload: p})
		st.Apply(st.Applied+1, evs)
		return nil
	}
	if err := submit(statemachine.StartMaster{Node: "bench", Addr: "127.0.0.1:1"}); err != nil {
		return err
	}
	for i := 1; i < benchEvents; i += 2 {
		if err := submit(statemachine.QueueDump{Target: statemachine.Target{Scope: statemachine.ScopeVolume, Server: "fs1", Partition: "vicepa",
			Volume: fmt.Sprintf("user.u%07d", i)}, Level: statemachine.LevelFull, By: "bench"}); err != nil {
			return err
		}
		if err := submit(statemachine.AbortJob{ID: st.ActiveJobs()[0].ID, By: "bench"}); err != nil {
			return err
		}
		if i%100_000 == 1 {
			if _, err := last.Wait(); err != nil { // bound the queue
				return err
			}
		}
	}
	_, err = last.Wait()
	return err
}

// startToServe starts a master on data and returns the time from exec to
// its "serving" line, and its peak RSS then.
func startToServe(bin, dir, data, certs string) (time.Duration, int64, error) {
	cfg := filepath.Join(dir, "bench.yaml")
	body := fmt.Sprintf("cluster:\n  realm: bench\n  master: 127.0.0.1:7400\nnode:\n  name: bench\n  data: %s\n  listen: 127.0.0.1:0\n  certs: %s\n", data, certs)
	if err := os.WriteFile(cfg, []byte(body), 0o644); err != nil {
		return 0, 0, err
	}
	cmd := exec.Command(bin, "master", "--config", cfg, "--log-level", "error")
	out, err := cmd.StdoutPipe()
	if err != nil {
		return 0, 0, err
	}
	cmd.Stderr = os.Stderr
	start := time.Now()
	if err := cmd.Start(); err != nil {
		return 0, 0, err
	}
	defer func() {
		cmd.Process.Signal(syscall.SIGKILL)
		cmd.Wait()
	}()
	sc := bufio.NewScanner(out)
	for sc.Scan() {
		if strings.Contains(sc.Text(), " serving on ") {
			return time.Since(start), peakRSS(cmd.Process.Pid), nil
		}
	}
	return 0, 0, fmt.Errorf("master on %s exited before serving", data)
}

// peakRSS reads VmHWM from /proc (0 where there is none).
func peakRSS(pid int) int64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			var kb int64
			fmt.Sscanf(strings.TrimSpace(rest), "%d", &kb)
			return kb << 10
		}
	}
	return 0
}

func dirSize(dir string) int64 {
	var n int64
	filepath.Walk(dir, func(_ string, fi os.FileInfo, err error) error {
		if err == nil && fi.Mode().IsRegular() {
			n += fi.Size()
		}
		return nil
	})
	return n
}

func human(n int64) string {
	switch {
	case n >= 1<<30:
		return fmt.Sprintf("%.1f GiB", float64(n)/(1<<30))
	case n >= 1<<20:
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%.1f KiB", float64(n)/(1<<10))
	}
	return fmt.Sprintf("%d B", n)
}

// benchQueue measures acknowledged dump requests per second through a real
// master process (gRPC over mutual TLS, commit loop, journal, catalog) with
// 128 concurrent clients, next to raw durable journal appends with 128
// concurrent proposers in the same run.
func benchQueue(w io.Writer, bin, dir, ca, masterCerts string) error {
	const clients, seconds = 128, 3
	opCerts := filepath.Join(dir, "certs", "operator")
	if err := cluster.Issue(ca, cluster.RoleOperator, "bench-op", opCerts, nil, time.Now()); err != nil {
		return err
	}
	creds, err := cluster.LoadCredentials(opCerts)
	if err != nil {
		return err
	}
	data := filepath.Join(dir, "queue")
	cfg := filepath.Join(dir, "queue.yaml")
	body := fmt.Sprintf("cluster:\n  realm: bench\n  master: 127.0.0.1:7400\nnode:\n  name: bench\n  data: %s\n  listen: 127.0.0.1:0\n  certs: %s\n", data, masterCerts)
	if err := os.WriteFile(cfg, []byte(body), 0o644); err != nil {
		return err
	}
	cmd := exec.Command(bin, "master", "--config", cfg, "--log-level", "error")
	out, err := cmd.StdoutPipe()
	if err != nil {
		return err
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		return err
	}
	defer func() {
		cmd.Process.Signal(syscall.SIGKILL)
		cmd.Wait()
	}()
	sc := bufio.NewScanner(out)
	addr := ""
	for sc.Scan() {
		if f := strings.Fields(sc.Text()); len(f) > 5 && f[4] == "on" {
			addr = f[5]
			break
		}
	}
	if addr == "" {
		return fmt.Errorf("queue bench: the master did not serve")
	}
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(credentials.NewTLS(creds.ClientTLS(cluster.RoleMaster))))
	if err != nil {
		return err
	}
	defer conn.Close()
	client := api.NewOperatorServiceClient(conn)
	var acked atomic.Int64
	var firstErr atomic.Value
	deadline := time.Now().Add(seconds * time.Second)
	var wg sync.WaitGroup
	for c := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; time.Now().Before(deadline); i++ {
				_, err := client.Dump(context.Background(), &api.DumpRequest{Target: &api.Target{Scope: "volume", Server: "fs1", Partition: "vicepa", Volume: fmt.Sprintf("v%d.%d", c, i)}})
				if err != nil {
					firstErr.CompareAndSwap(nil, err)
					return
				}
				acked.Add(1)
			}
		}()
	}
	wg.Wait()
	if err, _ := firstErr.Load().(error); err != nil {
		return fmt.Errorf("queue bench: %w", err)
	}
	rate := float64(acked.Load()) / seconds
	// Baseline in the same run: raw durable journal appends, 128 proposers.
	base, err := journalAppendRate(filepath.Join(dir, "queue-baseline"), clients, seconds*time.Second)
	if err != nil {
		return err
	}
	fmt.Fprintf(w, "\n%-44s %12s\n", fmt.Sprintf("durable dump requests, %d concurrent clients", clients), "per second")
	fmt.Fprintf(w, "%-44s %12.0f\n", "baseline: journal.Append, same concurrency", base)
	fmt.Fprintf(w, "%-44s %12.0f   %.2f× of baseline (gRPC + mTLS + decide + catalog)\n", "abs dump through the master (acknowledged)", rate, rate/base)
	return nil
}

// journalAppendRate is durable appends/s of ~100-byte entries by n
// concurrent proposers for d.
func journalAppendRate(dir string, n int, d time.Duration) (float64, error) {
	id, err := journal.NewIdentity("bench", "normal", time.Now())
	if err != nil {
		return 0, err
	}
	j, err := journal.Create(dir, id, journal.Options{})
	if err != nil {
		return 0, err
	}
	defer j.Close()
	payload := make([]byte, 100)
	var count atomic.Int64
	deadline := time.Now().Add(d)
	var wg sync.WaitGroup
	for range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for time.Now().Before(deadline) {
				if _, err := j.Append(journal.Entry{Type: journal.TypeEvents, Epoch: 1, Time: 1, Payload: payload}); err != nil {
					return
				}
				count.Add(1)
			}
		}()
	}
	wg.Wait()
	return float64(count.Load()) / d.Seconds(), nil
}
