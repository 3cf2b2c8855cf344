package main

import (
	"bufio"
	_ "embed"
	"fmt"
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
	return `Runs the whole story of a master in a temporary directory, with the real
binary as separate processes: makes a realm CA and certificates, starts a
master on loopback, queues dumps (no slave yet: they wait, visibly), aborts
one, kills the master with SIGKILL, restarts it and shows that every
acknowledged job is still there, verifies the journal and the catalog, and
shows a few metrics. Then it cleans up.`
}

// demo narrates each step and runs the abs binary itself for each command,
// so what it prints is exactly what an operator would see.
type demo struct {
	self, dir string
	env       []string
	master    *exec.Cmd
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
	fmt.Fprintf(d.out, "\ndemo finished in %s: every acknowledged job survived SIGKILL; the journal chain and the catalog verified.\n",
		time.Since(start).Round(time.Millisecond))
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

func (d *demo) run() error {
	d.step("a realm CA and certificates for the master and an operator (in %s)", d.dir)
	ca := filepath.Join(d.dir, "ca")
	if _, err := d.abs("certs", "init-ca", "--dir", ca, "--realm", "athena"); err != nil {
		return err
	}
	if _, err := d.abs("certs", "issue", "--ca", ca, "--role", "master", "--name", "green-acres", "--dir", filepath.Join(d.dir, "certs", "green-acres")); err != nil {
		return err
	}
	if _, err := d.abs("certs", "issue", "--ca", ca, "--role", "operator", "--name", "alice", "--dir", filepath.Join(d.dir, "certs", "alice")); err != nil {
		return err
	}
	port, err := freePort()
	if err != nil {
		return err
	}
	mport, err := freePort()
	if err != nil {
		return err
	}
	cfg := strings.NewReplacer("{{DIR}}", d.dir, "{{PORT}}", strconv.Itoa(port), "{{METRICS}}", strconv.Itoa(mport)).Replace(demoConfig)
	cfgPath := filepath.Join(d.dir, "master.yaml")
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o644); err != nil {
		return err
	}
	d.env = []string{"ABS_MASTER=127.0.0.1:" + strconv.Itoa(port), "ABS_CERTS=" + filepath.Join(d.dir, "certs", "alice")}

	d.step("start the master (config %s)", cfgPath)
	fmt.Fprint(d.out, cfg)
	if err := d.startMaster(cfgPath); err != nil {
		return err
	}
	d.step("queue dumps; no media slave has registered, so they wait and say why")
	var ids []string
	for _, args := range [][]string{
		{"dump", "volume", "user.alice", "--server", "fs1", "--partition", "vicepa", "--level", "full", "--detach"},
		{"dump", "partition", "vicepb", "--server", "fs1", "--detach"},
		{"dump", "server", "fs2", "--level", "incremental", "--detach"},
	} {
		out, err := d.abs(args...)
		if err != nil {
			return err
		}
		ids = append(ids, strings.TrimSpace(out))
	}
	if _, err := d.abs("jobs"); err != nil {
		return err
	}
	d.step("abort one; a bad request is refused and changes nothing")
	if _, err := d.abs("abort", ids[1]); err != nil {
		return err
	}
	if _, err := d.abs("dump", "volume", "bad/name", "--detach"); err == nil {
		return fmt.Errorf("a bad volume name was accepted")
	}
	d.step("kill -9 the master, restart it: every acknowledged job is still there")
	d.stopMaster()
	if err := d.startMaster(cfgPath); err != nil {
		return err
	}
	out, err := d.abs("jobs", "--all")
	if err != nil {
		return err
	}
	for _, id := range ids {
		if !strings.Contains(out, id) {
			return fmt.Errorf("job %s lost after SIGKILL", id)
		}
	}
	if _, err := d.abs("status"); err != nil {
		return err
	}
	d.step("a few metrics from http://%s/metrics", d.metrics)
	if err := d.showMetrics(); err != nil {
		return err
	}
	d.step("stop the master (SIGKILL again) and check its data offline")
	d.stopMaster()
	if _, err := d.abs("journal", "verify", "--config", cfgPath); err != nil {
		return err
	}
	if _, err := d.abs("journal", "rebuild", "--config", cfgPath); err != nil {
		return err
	}
	_, err = d.abs("journal", "verify", "--config", cfgPath)
	return err
}

func (d *demo) startMaster(cfgPath string) error {
	cmd := exec.Command(d.self, "master", "--config", cfgPath, "--log-level", "warn")
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return err
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		return err
	}
	d.master = cmd
	ready := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			select {
			case ready <- sc.Text():
			default:
			}
		}
	}()
	select {
	case line := <-ready:
		fmt.Fprintf(d.out, "%s (pid %d)\n", line, cmd.Process.Pid)
		// "abs master NODE serving on ADDR (metrics ADDR)"
		f := strings.Fields(line)
		if len(f) >= 7 {
			d.addr, d.metrics = f[5], strings.TrimSuffix(f[7], ")")
		}
		return nil
	case <-time.After(30 * time.Second):
		return fmt.Errorf("the master did not start within 30s")
	}
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
		for _, p := range []string{"abs_jobs{", "abs_master_epoch ", "abs_journal_last_index ", "abs_catalog_applied_index ", "abs_journal_fsync_duration_seconds_count"} {
			if strings.HasPrefix(line, p) {
				fmt.Fprintln(d.out, line)
			}
		}
	}
	return sc.Err()
}
