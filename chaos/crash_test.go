package chaos

import (
	"context"
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/abs-backup/abs/api"
)

// TestMasterCrash is the crash test of the master core: the real `abs
// master` is SIGKILLed at random moments while many concurrent clients queue
// jobs. After each restart every job whose queueing was acknowledged must be
// present; every few kills the data is checked offline (`abs journal
// verify`: the chain verifies and the catalog equals a fresh replay); and
// some kills are followed by a torn, zeroed or garbage tail written onto the
// journal's last segment, which the next start must repair.
func TestMasterCrash(t *testing.T) {
	kills := 50
	if s := os.Getenv("ABS_CRASH_KILLS"); s != "" {
		kills, _ = strconv.Atoi(s)
	}
	if testing.Short() {
		kills = 8
	}
	realm := NewRealm(t)
	m := realm.NewMaster(t, "green-acres")
	m.Start(t)
	client := realm.Operator(t, m.Addr)

	var (
		mu    sync.Mutex
		acked = map[string]string{} // job ID → volume name it was queued for
		seq   atomic.Int64
		stop  = make(chan struct{})
		wg    sync.WaitGroup
		errs  atomic.Int64
		// The clients queue only while the master is up between a restart
		// and the next kill; they pause while the test restarts and checks,
		// so each check's work is bounded by one kill interval.
		running atomic.Bool
	)
	running.Store(true)
	const clients = 32
	for c := 0; c < clients; c++ {
		wg.Add(1)
		go func(c int) {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				if !running.Load() {
					time.Sleep(5 * time.Millisecond)
					continue
				}
				vol := fmt.Sprintf("v%d.%d", c, seq.Add(1))
				ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				job, err := client.Dump(ctx, &api.DumpRequest{Target: &api.Target{Scope: "volume", Server: "fs1", Partition: "vicepa", Volume: vol}, Level: "full"})
				cancel()
				if err != nil {
					// The master is down (or went down mid-call: then the job
					// may or may not exist, and either is correct).
					errs.Add(1)
					time.Sleep(10 * time.Millisecond)
					continue
				}
				mu.Lock()
				acked[job.Id] = vol
				mu.Unlock()
			}
		}(c)
	}
	stopClients := sync.OnceFunc(func() {
		close(stop)
		wg.Wait()
	})
	defer stopClients()

	rng := rand.New(rand.NewPCG(1, uint64(time.Now().UnixNano())))
	tails := []string{"torn", "zeroed", "garbage"}
	repairs := 0
	for i := 1; i <= kills; i++ {
		time.Sleep(time.Duration(20+rng.IntN(250)) * time.Millisecond)
		m.Kill(t) // while the clients are queueing
		running.Store(false)
		mu.Lock()
		want := make(map[string]string, len(acked))
		for id, v := range acked {
			want[id] = v
		}
		mu.Unlock()

		tail := ""
		if i%3 == 0 {
			tail = tails[(i/3)%len(tails)]
			damageTail(t, LastSegment(t, m.Data), tail, rng)
		}
		if i%10 == 0 {
			// Offline check between crashes: chain and catalog vs replay.
			res := Run(t, nil, "journal", "verify", "--data", m.Data)
			if res.Code != 0 {
				t.Fatalf("kill %d: journal verify exit %d:\n%s%s", i, res.Code, res.Stdout, res.Stderr)
			}
			if tail != "" && !strings.Contains(res.Stdout, "torn tail") {
				t.Errorf("kill %d: verify did not report the %s tail:\n%s", i, tail, res.Stdout)
			}
		}
		m.Start(t)
		if tail != "" {
			if !strings.Contains(m.Stderr(), "journal tail repaired") {
				t.Errorf("kill %d: a %s tail was written but the master did not report a repair:\n%s", i, tail, m.Stderr())
			} else {
				repairs++
			}
		}
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		got, err := AllJobs(ctx, client)
		cancel()
		if err != nil {
			t.Fatalf("kill %d: list jobs after restart: %v\n%s", i, err, m.Stderr())
		}
		for id, vol := range want {
			j, ok := got[id]
			if !ok {
				t.Fatalf("kill %d: acknowledged job %s (volume %s) is missing after restart (%d acknowledged, %d listed)", i, id, vol, len(want), len(got))
			}
			if j.Target.GetVolume() != vol {
				t.Fatalf("kill %d: job %s is for volume %s, acknowledged for %s", i, id, j.Target.GetVolume(), vol)
			}
		}
		t.Logf("kill %d (%s tail): %d acknowledged jobs present, %d listed", i, orNone(tail), len(want), len(got))
		running.Store(true)
	}
	stopClients()

	// Final: kill, verify offline, rebuild, verify again, and the rebuilt
	// catalog serves every acknowledged job.
	m.Kill(t)
	if res := Run(t, nil, "journal", "verify", "--data", m.Data); res.Code != 0 {
		t.Fatalf("final verify: exit %d\n%s%s", res.Code, res.Stdout, res.Stderr)
	}
	if res := Run(t, nil, "journal", "rebuild", "--data", m.Data); res.Code != 0 {
		t.Fatalf("rebuild: exit %d\n%s%s", res.Code, res.Stdout, res.Stderr)
	}
	if res := Run(t, nil, "journal", "verify", "--data", m.Data); res.Code != 0 || !strings.Contains(res.Stdout, "(0 behind the journal)") {
		t.Fatalf("verify after rebuild: exit %d\n%s%s", res.Code, res.Stdout, res.Stderr)
	}
	m.Start(t)
	defer m.Kill(t)
	got, err := AllJobs(context.Background(), client)
	if err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	for id := range acked {
		if _, ok := got[id]; !ok {
			t.Fatalf("after rebuild: acknowledged job %s missing", id)
		}
	}
	if len(acked) < kills*5 {
		t.Fatalf("only %d jobs were acknowledged over %d kills: the load did not reach the master", len(acked), kills)
	}
	if repairs == 0 && kills >= 3 {
		t.Fatal("no tail repair happened")
	}
	t.Logf("%d kills, %d tail repairs, %d jobs acknowledged, %d calls failed while the master was down", kills, repairs, len(acked), errs.Load())
}

func orNone(s string) string {
	if s == "" {
		return "no"
	}
	return s
}

// damageTail writes damage after the last record, as a crash mid-write or a
// filesystem that extended the file without its data would.
func damageTail(t *testing.T, seg, kind string, rng *rand.Rand) {
	t.Helper()
	switch kind {
	case "torn":
		// The start of a record that never finished: a length prefix that
		// promises more bytes than follow, then a plausible header.
		b := binary.AppendUvarint(nil, 300)
		b = append(b, 'A', 'J', 1, 2)
		b = append(b, make([]byte, 40)...)
		AppendTo(t, seg, b)
	case "zeroed":
		AppendTo(t, seg, make([]byte, 4096))
	case "garbage":
		b := make([]byte, 64+rng.IntN(200))
		for i := range b {
			b[i] = byte(rng.UintN(256))
		}
		AppendTo(t, seg, b)
	}
}
