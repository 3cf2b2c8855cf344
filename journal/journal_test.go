package journal

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

func TestCreateAppendReopen(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "a", "b", "journal")
	j, err := Create(dir, testIdentity, testOptions(t, 0))
	if err != nil {
		t.Fatal(err)
	}
	if j.LastIndex() != 1 || j.Identity() != testIdentity || j.Dir() != dir || j.Repaired() != nil {
		t.Fatalf("fresh journal: last %d id %+v dir %s", j.LastIndex(), j.Identity(), j.Dir())
	}
	for i := uint64(2); i <= 10; i++ {
		if idx, err := j.Append(eventsEntry(i)); err != nil || idx != i {
			t.Fatalf("append: %d, %v", idx, err)
		}
	}
	if err := j.Close(); err != nil {
		t.Fatal(err)
	}
	if err := j.Close(); !errors.Is(err, ErrClosed) {
		t.Fatalf("second Close: %v", err)
	}
	if _, err := j.Append(eventsEntry(11)); !errors.Is(err, ErrClosed) {
		t.Fatalf("append after close: %v", err)
	}
	checkRecords(t, dir, 10)

	j, err = Open(dir, testOptions(t, 0))
	if err != nil {
		t.Fatal(err)
	}
	if j.LastIndex() != 10 || j.Identity() != testIdentity || j.Repaired() != nil {
		t.Fatalf("reopened: last %d id %+v repaired %v", j.LastIndex(), j.Identity(), j.Repaired())
	}
	if idx, err := j.Append(eventsEntry(11)); err != nil || idx != 11 {
		t.Fatalf("append after reopen: %d, %v", idx, err)
	}
	j.Close()
	checkRecords(t, dir, 11)
	// A journal copied without its LOCK file opens (and gets one).
	os.Remove(filepath.Join(dir, "LOCK"))
	j, err = Open(dir, testOptions(t, 0))
	if err != nil {
		t.Fatal(err)
	}
	j.Close()
	lock := mustRead(t, filepath.Join(dir, "LOCK"))
	if string(lock) != fmt.Sprintf("%d\n", os.Getpid()) {
		t.Fatalf("LOCK holds %q", lock)
	}
}

func TestCreateRefusesExisting(t *testing.T) {
	dir := t.TempDir()
	buildJournal(t, dir, 0, 3)
	before := snapshotDir(t, dir)
	if _, err := Create(dir, testIdentity, testOptions(t, 0)); !errors.Is(err, ErrExist) {
		t.Fatalf("Create on a journal: %v", err)
	}
	if d := diffSnapshots(before, snapshotDir(t, dir)); d != "[]" {
		t.Fatalf("refused Create changed the directory: %s", d)
	}
	bad := testIdentity
	bad.Mode = "limping"
	if _, err := Create(t.TempDir(), bad, testOptions(t, 0)); err == nil {
		t.Fatal("Create accepted a bad mode")
	}
	bad = testIdentity
	bad.JournalID = "00112233445566778899AABBCCDDEEFF"
	if _, err := Create(t.TempDir(), bad, testOptions(t, 0)); err == nil {
		t.Fatal("Create accepted an uppercase id")
	}
}

func TestOpenNotExist(t *testing.T) {
	missing := filepath.Join(t.TempDir(), "missing")
	if _, err := Open(missing, testOptions(t, 0)); !errors.Is(err, ErrNotExist) {
		t.Fatalf("Open of a missing dir: %v", err)
	}
	if _, err := os.Stat(missing); !errors.Is(err, os.ErrNotExist) {
		t.Fatal("Open created the directory")
	}
	empty := t.TempDir()
	if _, err := Open(empty, testOptions(t, 0)); !errors.Is(err, ErrNotExist) {
		t.Fatalf("Open of an empty dir: %v", err)
	}
	if ents, _ := os.ReadDir(empty); len(ents) != 0 {
		t.Fatalf("Open wrote into an empty dir: %v", ents)
	}
	if _, err := OpenReader(empty); !errors.Is(err, ErrNotExist) {
		t.Fatalf("OpenReader of an empty dir: %v", err)
	}
}

func TestNewIdentity(t *testing.T) {
	now := time.Unix(5, 6)
	a, err := NewIdentity("realm", ModeCrippled, now)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := NewIdentity("realm", ModeCrippled, now)
	if a.JournalID == b.JournalID || len(a.JournalID) != 32 || a.Created != now.UnixNano() || a.Mode != ModeCrippled {
		t.Fatalf("identities %+v %+v", a, b)
	}
	if err := a.validate(); err != nil {
		t.Fatal(err)
	}
	if _, err := NewIdentity("", ModeNormal, now); err == nil {
		t.Fatal("empty realm accepted")
	}
	if _, err := NewIdentity("r", "other", now); err == nil {
		t.Fatal("bad mode accepted")
	}
}

func TestSubmitRefusals(t *testing.T) {
	j, err := Create(t.TempDir(), testIdentity, testOptions(t, 0))
	if err != nil {
		t.Fatal(err)
	}
	defer j.Close()
	if _, err := j.Append(Entry{Type: TypeIdentity}); err == nil {
		t.Fatal("identity entry accepted")
	}
	if _, err := j.Append(Entry{}); err == nil {
		t.Fatal("entry without type accepted")
	}
	if _, err := j.Append(Entry{Type: TypeEvents, Payload: make([]byte, MaxPayload+1)}); err == nil {
		t.Fatal("oversized payload accepted")
	}
	// Refusals consume no index: indices stay predictable.
	for i := uint64(2); i < 6; i++ {
		f := j.Submit(eventsEntry(i))
		if idx, err := f.Wait(); err != nil || idx != i {
			t.Fatalf("got %d %v, want %d", idx, err, i)
		}
	}
}

// TestConcurrentAppend appends from many goroutines at once, with segments
// small enough that group commits cross them, and checks every index is
// unique and contiguous and every payload readable, by a Reader and after
// reopening.
func TestConcurrentAppend(t *testing.T) {
	const workers, each = 64, 200
	dir := t.TempDir()
	var obs countingObserver
	opts := testOptions(t, 16<<10)
	opts.Observer = &obs
	j, err := Create(dir, testIdentity, opts)
	if err != nil {
		t.Fatal(err)
	}
	got := make([][]uint64, workers)
	payloads := sync.Map{}
	var wg sync.WaitGroup
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for k := range each {
				p := fmt.Appendf(nil, "w%02d-k%03d", w, k)
				idx, err := j.Append(Entry{Type: TypeEvents, Epoch: 1, Time: int64(k), Payload: p})
				if err != nil {
					t.Error(err)
					return
				}
				payloads.Store(idx, p)
				got[w] = append(got[w], idx)
			}
		}()
	}
	wg.Wait()
	var all []uint64
	for _, g := range got {
		// One submitter's indices increase.
		if !sort.SliceIsSorted(g, func(a, b int) bool { return g[a] < g[b] }) {
			t.Fatal("indices of one goroutine are not increasing")
		}
		all = append(all, g...)
	}
	sort.Slice(all, func(a, b int) bool { return all[a] < all[b] })
	for i, idx := range all {
		if idx != uint64(i+2) {
			t.Fatalf("indices not contiguous: position %d has %d", i, idx)
		}
	}
	last := uint64(workers*each + 1)
	if j.LastIndex() != last {
		t.Fatalf("LastIndex %d, want %d", j.LastIndex(), last)
	}
	if r := obs.records.Load(); r != workers*each {
		t.Fatalf("observer saw %d records", r)
	}
	if b := obs.batches.Load(); b >= workers*each {
		t.Logf("no batching happened (%d batches)", b)
	}
	check := func(r *Reader) {
		t.Helper()
		n := uint64(0)
		err := r.Scan(2, func(rec Record) error {
			want, _ := payloads.Load(rec.Index)
			if !bytes.Equal(rec.Payload, want.([]byte)) {
				return fmt.Errorf("index %d: payload %q, want %q", rec.Index, rec.Payload, want)
			}
			n++
			return nil
		})
		if err != nil || n != workers*each {
			t.Fatalf("scan: %d records, %v", n, err)
		}
	}
	r, err := OpenReader(dir)
	if err != nil {
		t.Fatal(err)
	}
	check(r) // beside the open writer
	if err := j.Close(); err != nil {
		t.Fatal(err)
	}
	if size, last2 := obs.size.Load(), obs.last.Load(); last2 != last || size != dirSegmentBytes(t, dir) {
		t.Fatalf("observer size %d last %d; files hold %d", size, last2, dirSegmentBytes(t, dir))
	}
	j, err = Open(dir, testOptions(t, 16<<10))
	if err != nil {
		t.Fatal(err)
	}
	defer j.Close()
	if j.LastIndex() != last {
		t.Fatalf("reopened LastIndex %d", j.LastIndex())
	}
	r, err = OpenReader(dir)
	if err != nil {
		t.Fatal(err)
	}
	check(r)
	if rep, err := r.Verify(); err != nil || rep.Records != last || rep.Segments < 2 {
		t.Fatalf("verify: %+v %v", rep, err)
	}
}

type countingObserver struct {
	records, batches atomic.Int64
	size             atomic.Int64
	last             atomic.Uint64
}

func (o *countingObserver) Appended(records, bytes int, write, fsync time.Duration) {
	o.records.Add(int64(records))
	o.batches.Add(1)
}

func (o *countingObserver) Size(bytes int64, last uint64) {
	o.size.Store(bytes)
	o.last.Store(last)
}

func dirSegmentBytes(t *testing.T, dir string) int64 {
	var n int64
	for _, name := range segmentFiles(t, dir) {
		fi, err := os.Stat(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		n += fi.Size()
	}
	return n
}

// TestFuturesResolvedOnlyAfterSync blocks the writer between its write and
// its fsync and checks that no future of that batch is done until the fsync
// is over.
func TestFuturesResolvedOnlyAfterSync(t *testing.T) {
	var (
		batch       atomic.Int32
		firstGate   = make(chan struct{})
		atFirst     = make(chan struct{})
		atWrite     = make(chan struct{})
		writeGate   = make(chan struct{})
		futures     []*Future
		doneAtSync  atomic.Int32
		syncReached atomic.Bool
	)
	hooks := &Hooks{
		BeforeWrite: func() {
			if batch.Add(1) == 1 {
				close(atFirst)
				<-firstGate // hold the first batch so the others queue up
			}
		},
		AfterWrite: func() {
			if batch.Load() == 2 {
				close(atWrite)
				<-writeGate
			}
		},
		AfterSync: func() {
			if batch.Load() == 2 {
				syncReached.Store(true)
				for _, f := range futures {
					select {
					case <-f.Done():
						doneAtSync.Add(1)
					default:
					}
				}
			}
		},
	}
	opts := testOptions(t, 0)
	opts.Hooks = hooks
	j, err := Create(t.TempDir(), testIdentity, opts)
	if err != nil {
		t.Fatal(err)
	}
	defer j.Close()
	var once sync.Once
	release := func() { once.Do(func() { close(writeGate) }) }
	defer release() // before Close, if the test fails early
	first := j.Submit(eventsEntry(2))
	<-atFirst
	for i := uint64(3); i < 103; i++ {
		futures = append(futures, j.Submit(eventsEntry(i)))
	}
	close(firstGate)
	if _, err := first.Wait(); err != nil {
		t.Fatal(err)
	}
	<-atWrite
	time.Sleep(20 * time.Millisecond) // give a wrong implementation time to resolve
	for _, f := range futures {
		select {
		case <-f.Done():
			t.Fatal("a future is done after the write but before the fsync")
		default:
		}
	}
	release()
	for i, f := range futures {
		idx, err := f.Wait()
		if err != nil || idx != uint64(i+3) {
			t.Fatalf("future %d: %d %v", i, idx, err)
		}
	}
	if !syncReached.Load() || doneAtSync.Load() != 0 {
		t.Fatalf("at AfterSync: reached %v, %d futures already done", syncReached.Load(), doneAtSync.Load())
	}
	if b := batch.Load(); b != 2 {
		t.Fatalf("%d batches, want 2 (the queued entries were not group-committed)", b)
	}
}

// TestSegments uses tiny segments: every segment file that appears is
// announced by exactly one directory fsync, everything stays readable, and
// reopening with other segment sizes (including the "already over size"
// rule of wal) keeps the prediction of wal's cycles exact.
func TestSegments(t *testing.T) {
	dir := t.TempDir()
	var dirSyncs atomic.Int32
	opts := testOptions(t, 1024)
	opts.Hooks = &Hooks{AfterDirSync: func() { dirSyncs.Add(1) }}
	j, err := Create(dir, testIdentity, opts)
	if err != nil {
		t.Fatal(err)
	}
	next := uint64(2)
	appendN := func(j *Journal, n int) {
		for range n {
			if idx, err := j.Append(eventsEntry(next)); err != nil || idx != next {
				t.Fatalf("append: %d %v", idx, err)
			}
			next++
		}
	}
	appendN(j, 300)
	j.Close()
	segs := segmentFiles(t, dir)
	if len(segs) < 20 {
		t.Fatalf("only %d segments", len(segs))
	}
	if int(dirSyncs.Load()) != len(segs) {
		t.Fatalf("%d directory fsyncs for %d segments", dirSyncs.Load(), len(segs))
	}
	checkRecords(t, dir, next-1)

	// Reopen with sizes around the last segment's current size: below it
	// (wal cycles before the next batch), equal, just above, and far above.
	for _, delta := range []int{-1, 0, 1, 1 << 20} {
		lastSize := int(fileSize(t, filepath.Join(dir, segs[len(segs)-1])))
		if lastSize == 0 {
			appendOne := opts
			appendOne.SegmentSize = 1 << 20
			j, err := Open(dir, appendOne)
			if err != nil {
				t.Fatal(err)
			}
			appendN(j, 1)
			j.Close()
			lastSize = int(fileSize(t, filepath.Join(dir, segs[len(segs)-1])))
		}
		o := opts
		o.SegmentSize = lastSize + delta
		before := dirSyncs.Load()
		n0 := len(segmentFiles(t, dir))
		j, err := Open(dir, o)
		if err != nil {
			t.Fatal(err)
		}
		appendN(j, 3)
		// And one big batch that spans several segments.
		var fs []*Future
		for range 40 {
			fs = append(fs, j.Submit(eventsEntry(next)))
			next++
		}
		for _, f := range fs {
			if _, err := f.Wait(); err != nil {
				t.Fatal(err)
			}
		}
		j.Close()
		segs = segmentFiles(t, dir)
		if added, syncs := len(segs)-n0, int(dirSyncs.Load()-before); added > 0 && syncs == 0 || added == 0 && syncs != 0 {
			t.Fatalf("delta %d: %d new segments, %d directory fsyncs", delta, added, syncs)
		}
		checkRecords(t, dir, next-1)
	}
	r, err := OpenReader(dir)
	if err != nil {
		t.Fatal(err)
	}
	rep, err := r.Verify()
	if err != nil || rep.Segments != len(segs) || rep.Records != next-1 || rep.Tail != nil || rep.Bytes != dirSegmentBytes(t, dir) {
		t.Fatalf("verify: %+v, %v (%d segments)", rep, err, len(segs))
	}
}

// TestCyclePrediction checks, batch by batch, that the segments the writer
// predicts are exactly those wal creates.
func TestCyclePrediction(t *testing.T) {
	dir := t.TempDir()
	var j *Journal
	var mismatch atomic.Value
	seen := map[string]bool{}
	check := func() {
		// Called after the fsync of every batch (writer goroutine).
		names := segmentFiles(t, dir)
		predicted := map[string]bool{}
		for _, idx := range j.newSegs {
			predicted[segmentName(idx)] = true
		}
		for _, n := range names {
			if !seen[n] && !predicted[n] {
				mismatch.Store("wal created " + n + " unpredicted")
			}
			seen[n] = true
		}
		for n := range predicted {
			if !seen[n] {
				mismatch.Store("predicted " + n + " missing")
			}
		}
	}
	opts := testOptions(t, 700)
	opts.Hooks = &Hooks{AfterSync: check}
	seen[segmentName(1)] = true
	j, err := Create(dir, testIdentity, opts)
	if err != nil {
		t.Fatal(err)
	}
	next := uint64(2)
	for round := range 60 {
		var fs []*Future
		for range 1 + round%9 {
			fs = append(fs, j.Submit(eventsEntry(next)))
			next++
		}
		for _, f := range fs {
			if _, err := f.Wait(); err != nil {
				t.Fatal(err)
			}
		}
	}
	j.Close()
	if m := mismatch.Load(); m != nil {
		t.Fatal(m)
	}
	checkRecords(t, dir, next-1)
}

func fileSize(t *testing.T, p string) int64 {
	fi, err := os.Stat(p)
	if err != nil {
		t.Fatal(err)
	}
	return fi.Size()
}

// TestFatal injects a write, fsync or directory fsync error: Fatal is called
// once, the batch in flight and everything queued fail with ErrFailed, later
// appends fail at once, Close releases the lock, and the journal reopens.
func TestFatal(t *testing.T) {
	for _, point := range []string{"write", "sync", "dirsync"} {
		t.Run(point, func(t *testing.T) {
			dir := t.TempDir()
			var (
				rec     fatalRecorder
				armed   atomic.Bool
				gate    = make(chan struct{})
				atGate  = make(chan struct{}, 1)
				boom    = errors.New("injected " + point + " error")
				segSize = 0
			)
			if point == "dirsync" {
				segSize = 1 // every batch starts a segment
			}
			opts := Options{SegmentSize: segSize, Fatal: rec.fatal}
			opts.failpoint = func(p string) error {
				if armed.Load() && p == point {
					return boom
				}
				return nil
			}
			opts.Hooks = &Hooks{BeforeWrite: func() {
				if armed.Load() {
					atGate <- struct{}{}
					<-gate
				}
			}}
			j, err := Create(dir, testIdentity, opts)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := j.Append(eventsEntry(2)); err != nil {
				t.Fatal(err)
			}
			armed.Store(true)
			inFlight := j.Submit(eventsEntry(3))
			<-atGate
			var queued []*Future
			for i := uint64(4); i < 20; i++ {
				queued = append(queued, j.Submit(eventsEntry(i)))
			}
			close(gate)
			for _, f := range append([]*Future{inFlight}, queued...) {
				if _, err := f.Wait(); !errors.Is(err, ErrFailed) || !errors.Is(err, boom) {
					t.Fatalf("future error %v, want ErrFailed wrapping the cause", err)
				}
			}
			if _, err := j.Append(eventsEntry(20)); !errors.Is(err, ErrFailed) {
				t.Fatalf("append after failure: %v", err)
			}
			if n := rec.calls.Load(); n != 1 {
				t.Fatalf("Fatal called %d times", n)
			}
			if err := *rec.last.Load(); !errors.Is(err, boom) {
				t.Fatalf("Fatal got %v", err)
			}
			if j.LastIndex() != 2 {
				t.Fatalf("LastIndex moved to %d on failure", j.LastIndex())
			}
			if err := j.Close(); !errors.Is(err, ErrFailed) {
				t.Fatalf("Close after failure: %v", err)
			}
			// The lock is released; what reached the disk is a valid journal.
			j, err = Open(dir, testOptions(t, segSize))
			if err != nil {
				t.Fatal(err)
			}
			if l := j.LastIndex(); l < 2 {
				t.Fatalf("acknowledged record lost: last %d", l)
			}
			j.Close()
		})
	}
}

func TestCloseFlushesQueued(t *testing.T) {
	dir := t.TempDir()
	j, err := Create(dir, testIdentity, testOptions(t, 0))
	if err != nil {
		t.Fatal(err)
	}
	var fs []*Future
	for i := uint64(2); i < 500; i++ {
		fs = append(fs, j.Submit(eventsEntry(i)))
	}
	if err := j.Close(); err != nil {
		t.Fatal(err)
	}
	for i, f := range fs {
		select {
		case <-f.Done():
		default:
			t.Fatal("Close returned with a future pending")
		}
		if idx, err := f.Wait(); err != nil || idx != uint64(i+2) {
			t.Fatalf("future %d: %d %v", i, idx, err)
		}
	}
	checkRecords(t, dir, 499)
}

// TestMixedSubmitAppendClose mixes leading Appends, Submits handled by the
// writer goroutine, and a Close racing with both: every entry either got
// its index durably or ErrClosed, and the indices that succeeded are exactly
// 2..LastIndex.
func TestMixedSubmitAppendClose(t *testing.T) {
	dir := t.TempDir()
	j, err := Create(dir, testIdentity, testOptions(t, 4096))
	if err != nil {
		t.Fatal(err)
	}
	var (
		wg   sync.WaitGroup
		mu   sync.Mutex
		ok   = map[uint64]bool{}
		stop atomic.Bool
	)
	record := func(idx uint64, err error) bool {
		if err != nil {
			if !errors.Is(err, ErrClosed) {
				t.Error(err)
			}
			return false
		}
		mu.Lock()
		defer mu.Unlock()
		if ok[idx] {
			t.Errorf("index %d returned twice", idx)
		}
		ok[idx] = true
		return true
	}
	for g := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for !stop.Load() {
				if g%2 == 0 {
					if !record(j.Append(Entry{Type: TypeEvents, Payload: []byte("a")})) {
						return
					}
				} else {
					var fs []*Future
					for range 5 {
						fs = append(fs, j.Submit(Entry{Type: TypeEvents, Payload: []byte("s")}))
					}
					for _, f := range fs {
						if !record(f.Wait()) {
							return
						}
					}
				}
			}
		}()
	}
	time.Sleep(150 * time.Millisecond)
	if err := j.Close(); err != nil {
		t.Fatal(err)
	}
	stop.Store(true)
	wg.Wait()
	last := j.LastIndex()
	if uint64(len(ok)) != last-1 {
		t.Fatalf("%d successful appends, LastIndex %d", len(ok), last)
	}
	for i := uint64(2); i <= last; i++ {
		if !ok[i] {
			t.Fatalf("index %d missing", i)
		}
	}
	r, err := OpenReader(dir)
	if err != nil {
		t.Fatal(err)
	}
	if rep, err := r.Verify(); err != nil || rep.LastIndex != last {
		t.Fatalf("verify: %+v %v", rep, err)
	}
}
