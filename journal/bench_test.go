package journal

import (
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"
)

// benchJournal builds (once per size) a closed journal of n records with
// 100-byte payloads, appended in large group commits.
// They live in benchRoot, which TestMain removes.
var (
	benchDirs     sync.Map
	benchRoot     string
	benchRootOnce sync.Once
)

func benchJournalDir(b *testing.B, n int) string {
	if d, ok := benchDirs.Load(n); ok {
		return d.(string)
	}
	benchRootOnce.Do(func() {
		var err error
		if benchRoot, err = os.MkdirTemp("", "journal-bench"); err != nil {
			panic(err)
		}
	})
	dir := filepath.Join(benchRoot, fmt.Sprint(n))
	j, err := Create(dir, testIdentity, Options{Fatal: func(err error) { panic(err) }})
	if err != nil {
		b.Fatal(err)
	}
	payload := make([]byte, 100)
	var fs []*Future
	for i := 0; i < n-1; i++ {
		fs = append(fs, j.Submit(Entry{Type: TypeEvents, Epoch: 1, Time: int64(i), Payload: payload}))
		if len(fs) == 8192 {
			fs[len(fs)-1].Wait()
			fs = fs[:0]
		}
	}
	if err := j.Close(); err != nil {
		b.Fatal(err)
	}
	benchDirs.Store(n, dir)
	return dir
}

// BenchmarkOpen measures Open's full verification (every segment, the whole
// chain) of a 200k-record journal, from the page cache.
func BenchmarkOpen(b *testing.B) {
	const n = 200_000
	dir := benchJournalDir(b, n)
	b.ResetTimer()
	for b.Loop() {
		j, err := Open(dir, Options{})
		if err != nil {
			b.Fatal(err)
		}
		j.Close()
	}
	b.ReportMetric(float64(n)*float64(b.N)/b.Elapsed().Seconds(), "records/s")
}

// BenchmarkScan measures Reader.Scan over a 200k-record journal.
func BenchmarkScan(b *testing.B) {
	const n = 200_000
	dir := benchJournalDir(b, n)
	r, err := OpenReader(dir)
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		count := 0
		if err := r.Scan(1, func(Record) error { count++; return nil }); err != nil || count != n {
			b.Fatal(err, count)
		}
	}
	b.ReportMetric(float64(n)*float64(b.N)/b.Elapsed().Seconds(), "records/s")
}

// BenchmarkAppendParallel measures durable appends from many goroutines.
func BenchmarkAppendParallel(b *testing.B) {
	j, err := Create(b.TempDir(), testIdentity, Options{Fatal: func(err error) { panic(err) }})
	if err != nil {
		b.Fatal(err)
	}
	defer j.Close()
	payload := make([]byte, 100)
	b.SetParallelism(16)
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := j.Append(Entry{Type: TypeEvents, Payload: payload}); err != nil {
				b.Error(err)
				return
			}
		}
	})
}

func BenchmarkDecodeRecord(b *testing.B) {
	rec := EncodeRecord(nil, Record{Index: 5, Type: TypeEvents, Payload: make([]byte, 100)})
	b.SetBytes(int64(len(rec)))
	for b.Loop() {
		if _, err := DecodeRecord(rec); err != nil {
			b.Fatal(err)
		}
	}
}
