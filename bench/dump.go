package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/abs-backup/abs/cluster"
	"github.com/abs-backup/abs/fixtures"
)

// dumpIncrementals is how many one-file incremental dumps the fixed-cost
// figure is the median of.
const dumpIncrementals = 3

// benchDump measures, on one ~1 GiB volume, a full dump and a restore
// through a real master and slave on loopback (the CLI following each job
// to its end) next to GNU tar creating and extracting an archive of the
// same tree on the same disk, in the same run, under the same page-cache
// conditions (dropped before each timed step where /proc allows it). The
// restore is compared with the volume; a difference fails the bench. Then
// the fixed cost of a job: an incremental dump of one touched small file,
// from exec to exit and as the job's own queued→done time in the catalog.
func benchDump(w io.Writer, dir string) (err error) {
	fmt.Fprintf(w, "\n## dump: one volume of ~1 GiB (fixtures.BenchOptions(1)), abs dump/restore vs GNU tar\n")
	bin, err := filepath.Abs("bin/abs")
	if err != nil {
		return err
	}
	if _, err := os.Stat(bin); err != nil {
		return fmt.Errorf("%s not built (run `make bench`, which builds it): %w", bin, err)
	}
	tarBin, err := exec.LookPath("tar")
	if err != nil {
		return fmt.Errorf("dump bench: the baseline needs GNU tar: %w", err)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	defer os.RemoveAll(dir)

	// The volume (not timed).
	partition := filepath.Join(dir, "vicepa")
	t0 := time.Now()
	vols, err := fixtures.GenerateVolumes(partition, 1, fixtures.BenchOptions(1))
	if err != nil {
		return err
	}
	vol := vols[0]
	volName := filepath.Base(vol)
	size, files := treeBytes(vol)
	fmt.Fprintf(w, "generated %s in %s: %d files, %s of file data (MB/s below: 10^6 bytes of it per second)\n",
		volName, time.Since(t0).Round(time.Millisecond), files, human(size))
	cold := dropCaches()
	if cold {
		fmt.Fprintf(w, "page cache: synced and dropped before every timed step, for tar and abs alike\n")
	} else {
		fmt.Fprintf(w, "page cache: cannot drop it here (/proc/sys/vm/drop_caches not writable): every step runs warm, tar and abs alike\n")
	}
	prep := func() {
		if cold {
			dropCaches()
		}
	}
	mbs := func(d time.Duration) float64 { return float64(size) / 1e6 / d.Seconds() }
	ctx, cancel := context.WithTimeout(context.Background(), 150*time.Second)
	defer cancel()

	// Baselines: tar cf (and the fsync abs does on its cartridge), tar xf.
	archive := filepath.Join(dir, "tar", "out.tar")
	if err := os.MkdirAll(filepath.Dir(archive), 0o755); err != nil {
		return err
	}
	prep()
	tarC, _, err := timeCmd(ctx, nil, tarBin, "cf", archive, "-C", vol, ".")
	if err != nil {
		return err
	}
	t0 = time.Now()
	if err := fsyncFile(archive); err != nil {
		return err
	}
	tarCSync := tarC + time.Since(t0)
	extract := filepath.Join(dir, "tar", "x")
	if err := os.MkdirAll(extract, 0o755); err != nil {
		return err
	}
	prep()
	tarX, _, err := timeCmd(ctx, nil, tarBin, "xf", archive, "-C", extract)
	if err != nil {
		return err
	}
	// The extracted tree stays until abs's restore is done: deleting ~20k
	// files just before it would bill abs, not tar, for them (ext4 without
	// a journal, for one, skips inodes freed in the last minutes when it
	// allocates, so creating files right after deleting many is several
	// times slower). Both restores then run after the same deletions.
	if err := os.Remove(archive); err != nil {
		return err
	}
	defer os.RemoveAll(filepath.Join(dir, "tar"))

	// A realm, a master and a slave with one drive and blank cartridges.
	r, err := startDumpRig(ctx, bin, dir, partition)
	if err != nil {
		return err
	}
	defer r.kill()

	// Full dump, followed to done.
	prep()
	full, res, err := timeCmd(ctx, r.env, bin, "dump", "volume", volName, "--server", "fs1", "--partition", "vicepa", "--level", "full")
	if err != nil {
		return r.explain(fmt.Errorf("abs dump (full): %w", err))
	}
	fullID := queuedID(res)

	// Restore, followed to done, then compared with the volume.
	target := filepath.Join(dir, "restore", volName)
	prep()
	rest, res, err := timeCmd(ctx, r.env, bin, "restore", "volume", volName, "--to", target)
	if err != nil {
		return r.explain(fmt.Errorf("abs restore: %w", err))
	}
	restID := queuedID(res)
	want, err := fixtures.Scan(vol)
	if err != nil {
		return err
	}
	got, err := fixtures.Scan(target)
	if err != nil {
		return fmt.Errorf("dump bench: the restore of %s: %w", volName, err)
	}
	if d := want.Diff(got, fixtures.DiffOptions{MTimePrecision: time.Second}); len(d) > 0 {
		if len(d) > 20 {
			d = append(d[:20], fmt.Sprintf("… and %d more", len(d)-20))
		}
		return fmt.Errorf("dump bench: THE RESTORE OF %s DIFFERS FROM THE VOLUME (%d entries compared):\n%s", volName, len(want), strings.Join(d, "\n"))
	}
	os.RemoveAll(filepath.Join(dir, "restore"))

	// Fixed cost: one small file touched (mtime in the future), incremental.
	small, err := smallFile(vol)
	if err != nil {
		return err
	}
	var incs []time.Duration
	var incIDs []string
	for i := range dumpIncrementals {
		at := time.Now().Add(time.Hour + time.Duration(i)*time.Second).Truncate(time.Second)
		if err := os.Chtimes(small, at, at); err != nil {
			return err
		}
		d, res, err := timeCmd(ctx, r.env, bin, "dump", "volume", volName, "--server", "fs1", "--partition", "vicepa")
		if err != nil {
			return r.explain(fmt.Errorf("abs dump (incremental): %w", err))
		}
		incs = append(incs, d)
		incIDs = append(incIDs, queuedID(res))
	}
	// The CLI's own floor: exec, TLS dial, one RPC, exit.
	var floors []time.Duration
	var list []byte
	for range dumpIncrementals {
		d, res, err := timeCmd(ctx, r.env, bin, "jobs", "--all", "--json")
		if err != nil {
			return r.explain(fmt.Errorf("abs jobs: %w", err))
		}
		floors = append(floors, d)
		list = res.stdout
	}
	masterRSS, slaveRSS := peakRSS(r.master.Process.Pid), peakRSS(r.slave.Process.Pid)

	// The jobs' own durations, from the catalog.
	var jobs []jobTimes
	if err := json.Unmarshal(list, &jobs); err != nil {
		return fmt.Errorf("abs jobs --all --json: %w", err)
	}
	own := func(id string) (time.Duration, int64, error) {
		for _, j := range jobs {
			if j.ID == id {
				if j.State != "done" {
					return 0, 0, fmt.Errorf("job %s is %s, not done", id, j.State)
				}
				q, err1 := time.Parse(time.RFC3339Nano, j.QueuedAt)
				u, err2 := time.Parse(time.RFC3339Nano, j.UpdatedAt)
				if err1 != nil || err2 != nil {
					return 0, 0, fmt.Errorf("job %s: bad times %q %q", id, j.QueuedAt, j.UpdatedAt)
				}
				return u.Sub(q), j.Bytes, nil
			}
		}
		return 0, 0, fmt.Errorf("job %q not in abs jobs --all", id)
	}
	fullOwn, fullBytes, err := own(fullID)
	if err != nil {
		return err
	}
	restOwn, _, err := own(restID)
	if err != nil {
		return err
	}
	var incOwn []time.Duration
	for _, id := range incIDs {
		d, _, err := own(id)
		if err != nil {
			return err
		}
		incOwn = append(incOwn, d)
	}

	dumpRatio, restRatio := float64(tarC)/float64(full), float64(tarX)/float64(rest)
	fmt.Fprintf(w, "\n%-48s %10s %9s\n", fmt.Sprintf("%s, %s", volName, human(size)), "time", "MB/s")
	row := func(label string, d time.Duration, tail string) {
		fmt.Fprintf(w, "%-48s %10s %9.0f%s\n", label, d.Round(time.Millisecond), mbs(d), tail)
	}
	row("baseline: tar cf", tarC, "")
	row("baseline: tar cf + fsync of the archive", tarCSync, "   (abs fsyncs its cartridge)")
	row("abs dump --level full (exec → exit)", full, fmt.Sprintf("   %.2f× of tar   goal ≥ 0.9×: %s", dumpRatio, verdict(dumpRatio >= 0.9)))
	row("  the job itself (queued → done, catalog)", fullOwn, fmt.Sprintf("   %.2f× of tar   (stream %s)", float64(tarC)/float64(fullOwn), human(fullBytes)))
	row("baseline: tar xf", tarX, "")
	row("abs restore (exec → exit)", rest, fmt.Sprintf("   %.2f× of tar   goal ≥ 0.9×: %s", restRatio, verdict(restRatio >= 0.9)))
	row("  the job itself (queued → done, catalog)", restOwn, fmt.Sprintf("   %.2f× of tar", float64(tarX)/float64(restOwn)))
	fmt.Fprintf(w, "restore verified: %d entries identical to the volume (contents, modes, mtimes to the second)\n", len(want))
	fmt.Fprintf(w, "peak RSS (VmHWM, end of section): master %s, slave %s\n", human(masterRSS), human(slaveRSS))

	inc, incJob, floor := median(incs), median(incOwn), median(floors)
	fmt.Fprintf(w, "\n%-48s %10s\n", fmt.Sprintf("fixed cost of a job (median of %d)", dumpIncrementals), "time")
	fmt.Fprintf(w, "%-48s %10s\n", "baseline: abs jobs --all --json (exec → exit)", floor.Round(time.Millisecond))
	fmt.Fprintf(w, "%-48s %10s   goal < 200ms: %s\n", "abs dump, incremental, 1 file (exec → exit)", inc.Round(time.Millisecond), verdict(inc < 200*time.Millisecond))
	fmt.Fprintf(w, "%-48s %10s   goal < 200ms: %s\n", "  the job itself (queued → done, catalog)", incJob.Round(time.Millisecond), verdict(incJob < 200*time.Millisecond))
	if gap := inc - incJob - floor; gap > 250*time.Millisecond {
		fmt.Fprintf(w, "the CLI's follow loop dominates: %s of the %s is neither the job nor CLI start-up (it polls every 500 ms)\n",
			gap.Round(time.Millisecond), inc.Round(time.Millisecond))
	}
	return nil
}

// jobTimes is what the bench reads of `abs jobs --all --json`.
type jobTimes struct {
	ID        string `json:"id"`
	State     string `json:"state"`
	QueuedAt  string `json:"queued_at"`
	UpdatedAt string `json:"updated_at"`
	Bytes     int64  `json:"bytes"`
}

// dumpRig is a master and a slave started from bin/abs.
type dumpRig struct {
	env           []string
	master, slave *exec.Cmd
	logs          []string
}

func startDumpRig(ctx context.Context, bin, dir, partition string) (*dumpRig, error) {
	certs := filepath.Join(dir, "certs")
	ca := filepath.Join(certs, "ca")
	now := time.Now()
	if err := cluster.InitCA(ca, "bench", now); err != nil {
		return nil, err
	}
	for _, id := range []struct {
		role cluster.Role
		name string
	}{{cluster.RoleMaster, "bench-master"}, {cluster.RoleSlave, "tape1"}, {cluster.RoleOperator, "bench-op"}} {
		if err := cluster.Issue(ca, id.role, id.name, filepath.Join(certs, id.name), nil, now); err != nil {
			return nil, err
		}
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	addr := l.Addr().String()
	l.Close()
	clusterSection := fmt.Sprintf("cluster:\n  realm: bench\n  master: %s\n  slaves: [tape1]\n", addr)
	masterCfg := filepath.Join(dir, "master.yaml")
	if err := os.WriteFile(masterCfg, []byte(clusterSection+fmt.Sprintf("node:\n  name: bench-master\n  data: %s\n  listen: %s\n  certs: %s\n",
		filepath.Join(dir, "master"), addr, filepath.Join(certs, "bench-master"))), 0o644); err != nil {
		return nil, err
	}
	library := filepath.Join(dir, "tapes")
	slaveCfg := filepath.Join(dir, "tape1.yaml")
	if err := os.WriteFile(slaveCfg, []byte(clusterSection+fmt.Sprintf(`node:
  name: tape1
  data: %s
  listen: 127.0.0.1:0
  certs: %s
library:
  path: %s
  drives: 1
  capacity: 64GiB
servers:
  fs1:
    vicepa: %s
`, filepath.Join(dir, "slave"), filepath.Join(certs, "tape1"), library, partition)), 0o644); err != nil {
		return nil, err
	}
	// One cartridge per job: a job does not append to another's valid tapes.
	if _, _, err := timeCmd(ctx, nil, bin, "tape", "new", "--library", library, "--count", fmt.Sprint(2+dumpIncrementals+1)); err != nil {
		return nil, err
	}
	r := &dumpRig{env: []string{"ABS_MASTER=" + addr, "ABS_CERTS=" + filepath.Join(certs, "bench-op")}}
	if r.master, err = r.start(ctx, filepath.Join(dir, "master.log"), " serving on ", bin, "master", "--config", masterCfg, "--log-level", "warn"); err != nil {
		r.kill()
		return nil, err
	}
	if r.slave, err = r.start(ctx, filepath.Join(dir, "slave.log"), "registered with "+addr, bin, "slave", "--config", slaveCfg, "--log-level", "warn"); err != nil {
		r.kill()
		return nil, err
	}
	return r, nil
}

// start runs a daemon with its stderr in logPath and waits for a stdout line
// containing ready.
func (r *dumpRig) start(ctx context.Context, logPath, ready, bin string, args ...string) (*exec.Cmd, error) {
	logf, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	r.logs = append(r.logs, logPath)
	cmd := exec.Command(bin, args...)
	cmd.Stderr = logf
	out, err := cmd.StdoutPipe()
	if err != nil {
		logf.Close()
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		logf.Close()
		return nil, err
	}
	logf.Close() // the child has its own descriptor
	lines := make(chan string, 16)
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			select {
			case lines <- sc.Text():
			default: // nobody listens any more; keep draining
			}
		}
		close(lines)
	}()
	timeout := time.After(30 * time.Second)
	for {
		select {
		case line, ok := <-lines:
			if !ok {
				cmd.Wait()
				return nil, r.explain(fmt.Errorf("abs %s exited before printing %q", args[0], ready))
			}
			if strings.Contains(line, ready) {
				return cmd, nil
			}
		case <-timeout:
			cmd.Process.Signal(syscall.SIGKILL)
			cmd.Wait()
			return nil, r.explain(fmt.Errorf("abs %s did not print %q within 30s", args[0], ready))
		case <-ctx.Done():
			cmd.Process.Signal(syscall.SIGKILL)
			cmd.Wait()
			return nil, ctx.Err()
		}
	}
}

// kill stops both daemons with SIGKILL and reaps them.
func (r *dumpRig) kill() {
	for _, c := range []*exec.Cmd{r.slave, r.master} {
		if c != nil && c.Process != nil {
			c.Process.Signal(syscall.SIGKILL)
			c.Wait()
		}
	}
	r.slave, r.master = nil, nil
}

// explain adds the tails of the daemons' logs to err.
func (r *dumpRig) explain(err error) error {
	var b strings.Builder
	b.WriteString(err.Error())
	for _, p := range r.logs {
		data, _ := os.ReadFile(p)
		if len(data) > 4000 {
			data = data[len(data)-4000:]
		}
		fmt.Fprintf(&b, "\n--- %s (tail):\n%s", filepath.Base(p), data)
	}
	return fmt.Errorf("%s", b.String())
}

type cmdResult struct{ stdout, stderr []byte }

// timeCmd runs a command to completion and returns the time from exec to
// exit; a non-zero exit is an error carrying its output.
func timeCmd(ctx context.Context, env []string, name string, args ...string) (time.Duration, cmdResult, error) {
	cmd := exec.CommandContext(ctx, name, args...)
	if env != nil {
		cmd.Env = append(os.Environ(), env...)
	}
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	t0 := time.Now()
	err := cmd.Run()
	d := time.Since(t0)
	res := cmdResult{out.Bytes(), errb.Bytes()}
	if err != nil {
		return d, res, fmt.Errorf("%s %s: %v\n%s%s", filepath.Base(name), strings.Join(args, " "), err, out.Bytes(), errb.Bytes())
	}
	return d, res, nil
}

// queuedID reads the job ID from the CLI's "queued ID: …" line.
func queuedID(res cmdResult) string {
	for _, line := range strings.Split(string(res.stderr), "\n") {
		if rest, ok := strings.CutPrefix(line, "queued "); ok {
			id, _, _ := strings.Cut(rest, ":")
			return id
		}
	}
	return ""
}

// dropCaches writes back dirty pages and drops the page cache; false where
// that is not allowed.
func dropCaches() bool {
	syscall.Sync()
	return os.WriteFile("/proc/sys/vm/drop_caches", []byte("3\n"), 0o200) == nil
}

func fsyncFile(p string) error {
	f, err := os.OpenFile(p, os.O_RDWR, 0)
	if err != nil {
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// treeBytes is the size of the regular files under root, and their count.
func treeBytes(root string) (int64, int) {
	var n int64
	var files int
	filepath.WalkDir(root, func(_ string, d fs.DirEntry, err error) error {
		if err == nil && d.Type().IsRegular() {
			if fi, err := d.Info(); err == nil {
				n += fi.Size()
				files++
			}
		}
		return nil
	})
	return n, files
}

// smallFile is the first non-empty regular file of at most 4 KiB under root.
func smallFile(root string) (string, error) {
	found := ""
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil || found != "" {
			return err
		}
		if d.Type().IsRegular() {
			if fi, err := d.Info(); err == nil && fi.Size() > 0 && fi.Size() <= 4096 {
				found = p
				return filepath.SkipAll
			}
		}
		return nil
	})
	if err == nil && found == "" {
		err = fmt.Errorf("dump bench: no small file in %s", root)
	}
	return found, err
}

func median(ds []time.Duration) time.Duration {
	s := slices.Clone(ds)
	slices.Sort(s)
	return s[len(s)/2]
}
