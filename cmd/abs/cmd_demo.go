package main

import (
	"bufio"
	_ "embed"

	"fmt"
	"github.com/abs-backup/abs/fixtures"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

//go:embed demo.yaml
var demoConfig string

type demoCmd struct {
	Keep bool `help:"Keep the temporary directory (and print where it is)."`
}

func (c *demoCmd) Help() string {
	return `Runs the whole story in a temporary directory, with the real binary as
separate processes on loopback: a realm CA and certificates; a master and two
media slaves with file-backed tape libraries; generated volumes (the fixtures
generator, seeded); full dumps, changes, an incremental; a restore verified
identical; the volume report and the tapes; SIGKILL of the master and a
restart that keeps everything; the master lost: a crippled master, the slaves
re-pointed, a dump and a restore by tape and file from its dump log, then abs
merge back into the normal master; a cartridge read with no daemon; the
journal and catalog verified offline. Then it cleans up.`
}

// demo narrates each step and runs the abs binary itself for each command,
// so what it prints is exactly what an operator would see.
type demo struct {
	self, dir string
	env       []string
	master    *exec.Cmd
	slaves    []*exec.Cmd
	slaveRegs []chan string // each slave's "registered with" lines
	addr      string
	metrics   string
	out       io.Writer
}

func (c *demoCmd) Run() error {
	self, err := os.Executable()
	if err != nil {
		return err
	}
	dir, err := os.MkdirTemp("", "abs-demo-")
	if err != nil {
		return err
	}
	d := &demo{self: self, dir: dir, out: os.Stdout}
	defer func() {
		d.stopSlaves()
		d.stopMaster()
		if c.Keep {
			fmt.Fprintf(d.out, "\nkept %s\n", dir)
			return
		}
		os.RemoveAll(dir)
	}()
	start := time.Now()
	if err := d.run(); err != nil {
		return fail(exitFailed, "demo failed: %v (files in %s)", err, dir)
	}
	fmt.Fprintf(d.out, "\ndemo finished in %s: volumes dumped (full, incremental) to file-backed tapes by two slaves,\n"+
		"a volume restored identical, everything kept across SIGKILL, a crippled master's dump merged back,\n"+
		"journal and catalog verified. Files were in %s.\n",
		time.Since(start).Round(time.Millisecond), d.dir)
	return nil
}

func (d *demo) step(format string, args ...any) {
	fmt.Fprintf(d.out, "\n== "+format+"\n", args...)
}

// abs runs the binary with args, echoing the command line and its output.
func (d *demo) abs(args ...string) (string, error) {
	fmt.Fprintf(d.out, "$ abs %s\n", strings.Join(args, " "))
	cmd := exec.Command(d.self, args...)
	cmd.Env = append(os.Environ(), d.env...)
	out, err := cmd.CombinedOutput()
	d.out.Write(out)
	if err != nil {
		return string(out), fmt.Errorf("abs %s: %w", strings.Join(args, " "), err)
	}
	return string(out), nil
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// demoConfigs splits the embedded file into the master's and each
// slave's config: the shared cluster section, then each node's own part.
func demoConfigs(dir string, port, mport int) map[string]string {
	text := strings.NewReplacer("{{DIR}}", dir, "{{PORT}}", strconv.Itoa(port), "{{METRICS}}", strconv.Itoa(mport)).Replace(demoConfig)
	parts := strings.Split(text, "\n---")
	out := map[string]string{}
	for _, p := range parts[1:] {
		name, body, _ := strings.Cut(p, "\n")
		out[name] = parts[0] + "\n" + body
	}
	return out
}

func (d *demo) run() error {
	d.step("a realm CA and certificates for a master, two slaves and an operator (in %s)", d.dir)
	ca := filepath.Join(d.dir, "ca")
	if _, err := d.abs("certs", "init-ca", "--dir", ca, "--realm", "athena"); err != nil {
		return err
	}
	for _, id := range [][2]string{{"master", "green-acres"}, {"slave", "tape1"}, {"slave", "tape2"}, {"operator", "alice"}} {
		if _, err := d.abs("certs", "issue", "--ca", ca, "--role", id[0], "--name", id[1], "--dir", filepath.Join(d.dir, "certs", id[1])); err != nil {
			return err
		}
	}
	port, err := freePort()
	if err != nil {
		return err
	}
	mport, err := freePort()
	if err != nil {
		return err
	}
	cfgs := demoConfigs(d.dir, port, mport)
	paths := map[string]string{}
	for name, body := range cfgs {
		paths[name] = filepath.Join(d.dir, name+".yaml")
		if err := os.WriteFile(paths[name], []byte(body), 0o644); err != nil {
			return err
		}
	}
	d.env = []string{"ABS_MASTER=127.0.0.1:" + strconv.Itoa(port), "ABS_CERTS=" + filepath.Join(d.dir, "certs", "alice")}

	d.step("generate volumes to back up (seeded, deterministic): fs1/vicepa and fs2/vicepb")
	opts := fixtures.TreeOptions{Seed: 1, Files: 120, Dirs: 15, Large: 1, LargeSize: 2 << 20}
	vicepa, err := fixtures.GenerateVolumes(filepath.Join(d.dir, "fs1", "vicepa"), 3, opts)
	if err != nil {
		return err
	}
	opts.Seed = 2
	if _, err := fixtures.GenerateVolumes(filepath.Join(d.dir, "fs2", "vicepb"), 2, opts); err != nil {
		return err
	}
	fmt.Fprintf(d.out, "fs1/vicepa: %d volumes; fs2/vicepb: 2 volumes\n", len(vicepa))
	// External names (the stickers) are unique in a realm: one prefix per library.
	for lib, prefix := range map[string]string{"tapes1": "A", "tapes2": "B"} {
		if _, err := d.abs("tape", "new", "--library", filepath.Join(d.dir, lib), "--count", "4", "--prefix", prefix); err != nil {
			return err
		}
	}

	d.step("start the master and two media slaves")
	fmt.Fprintln(d.out, strings.TrimSpace(cfgs["master"]))
	if err := d.startMaster(paths["master"]); err != nil {
		return err
	}
	for _, name := range []string{"tape1", "tape2"} {
		if err := d.startSlave(name, paths[name]); err != nil {
			return err
		}
	}
	if _, err := d.abs("slaves"); err != nil {
		return err
	}

	d.step("full dumps: a partition on tape1, a whole server on tape2 (each followed to its end)")
	if _, err := d.abs("dump", "partition", "vicepa", "--server", "fs1", "--level", "full"); err != nil {
		return err
	}
	if _, err := d.abs("dump", "server", "fs2", "--level", "full"); err != nil {
		return err
	}
	d.step("change files in fs1/vicepa, then an incremental dump (the default level)")
	for i, v := range vicepa {
		muts, err := fixtures.Mutate(v, uint64(i+10), 8, time.Now().Add(2*time.Second))
		if err != nil {
			return err
		}
		fmt.Fprintf(d.out, "%s: %d changes (e.g. %s)\n", filepath.Base(v), len(muts), muts[0])
	}
	if _, err := d.abs("dump", "partition", "vicepa", "--server", "fs1"); err != nil {
		return err
	}
	d.step("the volume report (one line per dump, grep-able) and the tapes")
	if _, err := d.abs("report"); err != nil {
		return err
	}
	if _, err := d.abs("tapes"); err != nil {
		return err
	}

	d.step("restore user.v001 (full + incremental, planned from the catalog) and compare")
	target := filepath.Join(d.dir, "restored", "user.v001")
	if _, err := d.abs("restore", "volume", "user.v001", "--server", "fs1", "--partition", "vicepa", "--to", target); err != nil {
		return err
	}
	if err := d.sameTree(vicepa[0], target); err != nil {
		return err
	}

	d.step("a bad request is refused and changes nothing")
	if _, err := d.abs("dump", "volume", "bad/name", "--detach"); err == nil {
		return fmt.Errorf("a bad volume name was accepted")
	}

	d.step("a few metrics from http://%s/metrics", d.metrics)
	if err := d.showMetrics(); err != nil {
		return err
	}

	d.step("kill -9 the master, restart it: every job, dump and tape is still there")
	d.stopMaster()
	if err := d.startMaster(paths["master"]); err != nil {
		return err
	}
	if _, err := d.abs("jobs", "--all"); err != nil {
		return err
	}
	if _, err := d.abs("status"); err != nil {
		return err
	}
	if err := d.crippledEpisode(paths, port, mport, vicepa[1]); err != nil {
		return err
	}
	d.step("the last-resort path: read a cartridge with no daemon at all")
	if _, err := d.abs("tape", "ls", filepath.Join(d.dir, "tapes1", "A00001.tape")); err != nil {
		return err
	}
	d.step("stop everything (SIGKILL) and check the master's data offline")
	d.stopSlaves()
	d.stopMaster()
	_, err = d.abs("journal", "verify", "--config", paths["master"])
	return err
}

// crippledEpisode: the master's host is lost; a crippled master takes over
// at another address, the slaves follow it, a dump and a restore by tape
// and file happen there; then back to normal with abs merge.
func (d *demo) crippledEpisode(paths map[string]string, port, mport int, vol string) error {
	d.step("disaster: the master is gone (kill -9). A crippled master starts on another data directory and port;\n" +
		"   the slaves follow it (their config's master:, then SIGHUP)")
	d.stopMaster()
	cport, err := freePort()
	if err != nil {
		return err
	}
	cmport, err := freePort()
	if err != nil {
		return err
	}
	crippled := demoConfigs(d.dir, cport, cmport)
	spare := strings.Replace(crippled["master"], "data: "+d.dir+"/master", "data: "+d.dir+"/spare", 1)
	spareCfg := filepath.Join(d.dir, "spare.yaml")
	if err := os.WriteFile(spareCfg, []byte(spare), 0o644); err != nil {
		return err
	}
	if err := d.startMasterArgs(spareCfg, "--crippled"); err != nil {
		return err
	}
	normalEnv := d.env
	d.env = []string{"ABS_MASTER=127.0.0.1:" + strconv.Itoa(cport), normalEnv[1]}
	if err := d.repoint(paths, crippled); err != nil {
		return err
	}
	name := filepath.Base(vol)
	if _, err := d.abs("dump", "volume", name, "--server", "fs1", "--partition", "vicepa", "--level", "full"); err != nil {
		return err
	}
	dumpLog := filepath.Join(d.dir, "spare", "dumplog")
	b, err := os.ReadFile(dumpLog)
	if err != nil {
		return err
	}
	fmt.Fprintf(d.out, "$ grep %s %s\n%s", name, dumpLog, b)
	f := strings.Split(strings.TrimSpace(string(b)), "\t")
	if len(f) != 9 {
		return fmt.Errorf("the dump log line has %d columns, want 9: %q", len(f), b)
	}
	target := filepath.Join(d.dir, "restored-crippled", name)
	if _, err := d.abs("restore", "volume", name, "--server", "fs1", "--partition", "vicepa", "--to", target, "--tape", f[2], "--file", f[6]); err != nil {
		return err
	}
	if err := d.sameTree(vol, target); err != nil {
		return err
	}

	d.step("back to normal: stop the crippled master, merge its journal into the (stopped) normal master's,\n" +
		"   start the normal master and point the slaves back at it")
	d.stopMaster()
	if _, err := d.abs("merge", "--from", filepath.Join(d.dir, "spare"), "--into", filepath.Join(d.dir, "master")); err != nil {
		return err
	}
	if _, err := d.abs("merge", "--from", filepath.Join(d.dir, "spare"), "--into", filepath.Join(d.dir, "master")); err != nil {
		return err
	}
	if err := d.startMaster(paths["master"]); err != nil {
		return err
	}
	d.env = normalEnv
	if err := d.repoint(paths, demoConfigs(d.dir, port, mport)); err != nil {
		return err
	}
	out, err := d.abs("report", "--volume", name)
	if err != nil {
		return err
	}
	if !strings.Contains(out, strings.TrimSpace(string(b))) {
		return fmt.Errorf("the merged report lacks the crippled-mode dump %q", b)
	}
	return nil
}

// repoint rewrites the slaves' configs and sends them SIGHUP, then waits
// until each has registered with the master d.env names.
func (d *demo) repoint(paths, cfgs map[string]string) error {
	addr := strings.TrimPrefix(d.env[0], "ABS_MASTER=")
	for i, name := range []string{"tape1", "tape2"} {
		if err := os.WriteFile(paths[name], []byte(cfgs[name]), 0o644); err != nil {
			return err
		}
		fmt.Fprintf(d.out, "kill -HUP %d   # %s now names master %s\n", d.slaves[i].Process.Pid, name, addr)
		d.slaves[i].Process.Signal(syscall.SIGHUP)
	}
	for i := range d.slaves {
		for registered := false; !registered; {
			select {
			case line := <-d.slaveRegs[i]:
				if registered = strings.Contains(line, "registered with "+addr); registered {
					fmt.Fprintln(d.out, line)
				}
			case <-time.After(30 * time.Second):
				return fmt.Errorf("slave %d did not register with %s within 30s", i+1, addr)
			}
		}
	}
	return nil
}

// sameTree checks that a restored tree equals the live one.
func (d *demo) sameTree(live, restored string) error {
	want, err := fixtures.Scan(live)
	if err != nil {
		return err
	}
	got, err := fixtures.Scan(restored)
	if err != nil {
		return err
	}
	if diff := want.Diff(got, fixtures.DiffOptions{MTimePrecision: time.Second}); len(diff) > 0 {
		return fmt.Errorf("the restored volume differs:\n%s", strings.Join(diff, "\n"))
	}
	fmt.Fprintf(d.out, "restored tree is identical to the live volume: %d entries\n", len(want))
	return nil
}

// startSlave starts a slave and waits until it has registered.
func (d *demo) startSlave(name, cfgPath string) error {
	cmd, line, lines, err := d.spawn("registered with", "slave", "--config", cfgPath, "--log-level", "warn")
	if err != nil {
		return fmt.Errorf("slave %s: %w", name, err)
	}
	d.slaves = append(d.slaves, cmd)
	d.slaveRegs = append(d.slaveRegs, lines)
	fmt.Fprintf(d.out, "%s (pid %d)\n", line, cmd.Process.Pid)
	return nil
}

// spawn starts the binary with args and waits (30 s at most) for a line of
// its standard output that contains want; later such lines come on the
// channel it returns.
func (d *demo) spawn(want string, args ...string) (*exec.Cmd, string, chan string, error) {
	cmd := exec.Command(d.self, args...)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, "", nil, err
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		return nil, "", nil, err
	}
	lines := make(chan string, 16)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			if strings.Contains(sc.Text(), want) {
				select {
				case lines <- sc.Text():
				default:
				}
			}
		}
	}()
	select {
	case line := <-lines:
		return cmd, line, lines, nil
	case <-time.After(30 * time.Second):
		cmd.Process.Kill()
		cmd.Wait()
		return nil, "", nil, fmt.Errorf("no %q within 30s", want)
	}
}

func (d *demo) stopSlaves() {
	for _, cmd := range d.slaves {
		fmt.Fprintf(d.out, "kill -9 %d\n", cmd.Process.Pid)
		cmd.Process.Signal(syscall.SIGKILL)
		cmd.Wait()
	}
	d.slaves, d.slaveRegs = nil, nil
}

func (d *demo) startMaster(cfgPath string) error {
	return d.startMasterArgs(cfgPath)
}

func (d *demo) startMasterArgs(cfgPath string, extra ...string) error {
	cmd, line, _, err := d.spawn(" serving on ", append([]string{"master", "--config", cfgPath, "--log-level", "warn"}, extra...)...)
	if err != nil {
		return fmt.Errorf("master: %w", err)
	}
	d.master = cmd
	fmt.Fprintf(d.out, "%s (pid %d)\n", line, cmd.Process.Pid)
	// "abs master NODE serving on ADDR (metrics ADDR)"
	if f := strings.Fields(line); len(f) >= 7 {
		d.addr, d.metrics = f[5], strings.TrimSuffix(f[7], ")")
	}
	return nil
}

func (d *demo) stopMaster() {
	if d.master == nil {
		return
	}
	fmt.Fprintf(d.out, "kill -9 %d\n", d.master.Process.Pid)
	d.master.Process.Signal(syscall.SIGKILL)
	d.master.Wait()
	d.master = nil
}

func (d *demo) showMetrics() error {
	resp, err := http.Get("http://" + d.metrics + "/metrics")
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		line := sc.Text()
		for _, p := range []string{"abs_jobs{", "abs_master_epoch ", "abs_journal_last_index ", "abs_catalog_applied_index ", "abs_dump_records_total", "abs_tapes{"} {
			if strings.HasPrefix(line, p) {
				fmt.Fprintln(d.out, line)
			}
		}
	}
	return sc.Err()
}
