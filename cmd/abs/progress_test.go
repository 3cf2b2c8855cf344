package main

import (
	"testing"
	"time"

	"github.com/abs-backup/abs/api"
)

func TestProgressLine(t *testing.T) {
	for _, tc := range []struct {
		job  *api.Job
		want string
	}{
		{&api.Job{Volumes: 2, Bytes: 10 << 20}, "2 volumes, 10.0 MiB, 1.0 MiB/s, 10s elapsed"},
		{&api.Job{Volumes: 2, Bytes: 10 << 20, ExpectedVolumes: 5, ExpectedBytes: 40 << 20}, "2/5 volumes, 10.0 MiB of ~40.0 MiB, 1.0 MiB/s, 10s elapsed, ~30s left"},
		// past the estimate: no time left is promised
		{&api.Job{Volumes: 6, Bytes: 50 << 20, ExpectedVolumes: 5, ExpectedBytes: 40 << 20}, "6/5 volumes, 50.0 MiB of ~40.0 MiB, 5.0 MiB/s, 10s elapsed"},
	} {
		if got := progressLine(tc.job, 10*time.Second); got != tc.want {
			t.Errorf("progressLine(%+v)\n got %q\nwant %q", tc.job, got, tc.want)
		}
	}
}
