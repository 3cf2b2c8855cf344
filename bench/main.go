// Command bench prints abs's speed and memory figures, each next to a
// baseline measured in the same run on the same disk, as ratios. `make
// bench` runs it from the repository root (it starts bin/abs). Goals are
// printed beside the figures; a missed goal is reported, not hidden.
package main

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"runtime/pprof"
	"time"
)

func main() {
	dirFlag := flag.String("dir", "", "scratch directory (default: a temporary one, removed afterwards)")
	only := flag.String("only", "", "run one section: journal, master, merge or dump")
	cpuProfile := flag.String("cpuprofile", "", "write a CPU profile of the run to this file")
	flag.Parse()
	if *cpuProfile != "" {
		f, err := os.Create(*cpuProfile)
		if err != nil {
			fatal(err)
		}
		if err := pprof.StartCPUProfile(f); err != nil {
			fatal(err)
		}
		defer pprof.StopCPUProfile()
	}
	dir := *dirFlag
	if dir == "" {
		d, err := os.MkdirTemp("", "abs-bench-")
		if err != nil {
			fatal(err)
		}
		defer os.RemoveAll(d)
		dir = d
	}
	start := time.Now()
	fmt.Printf("abs bench — %s, scratch in %s\n", time.Now().Format(time.RFC3339), dir)
	if *only == "" || *only == "journal" {
		if err := benchJournal(os.Stdout, filepath.Join(dir, "journal")); err != nil {
			fatal(err)
		}
	}
	if *only == "" || *only == "master" {
		if err := benchMaster(os.Stdout, filepath.Join(dir, "master")); err != nil {
			fatal(err)
		}
	}
	if *only == "" || *only == "merge" {
		if err := benchMerge(os.Stdout, filepath.Join(dir, "merge")); err != nil {
			fatal(err)
		}
	}
	if *only == "" || *only == "dump" {
		if err := benchDump(os.Stdout, filepath.Join(dir, "dump")); err != nil {
			fatal(err)
		}
	}
	fmt.Printf("\nbench finished in %s\n", time.Since(start).Round(time.Millisecond))
}

func fatal(err error) {
	fmt.Fprintf(os.Stderr, "bench: %v\n", err)
	os.Exit(1)
}

// verdict says whether a goal was met.
func verdict(ok bool) string {
	if ok {
		return "met"
	}
	return "MISSED"
}
